"""Will a run fit? A per-device memory estimate checked before anything compiles.

The estimate (bytes per device): parameters, gradients and AdamW's two moments in float32,
sharded over fsdp * tensor; activations kept for the backward pass of one micro-batch (per
layer: the residual stream and the block's intermediates, the attention scores; all of them,
or only the block inputs with remat) and the logits with their softmax and gradient. It is an
order-of-magnitude figure meant to refuse runs that cannot fit (a 1e9 vocabulary, a batch far too
big, 10,000 layers), not to tune the last gigabyte. A run whose estimate exceeds the available
memory is refused (a host that swaps makes no progress and prints nothing for many minutes);
TrainConfig.allow_swap lets it through. A sweep is checked before its workers start, with the
runs that train at the same time on one host sharing its RAM.
"""

from __future__ import annotations

import dataclasses

from lm.config import TrainConfig
from lm.precision import dtype_name

GIB = 1024 ** 3


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per device by part, and what one device (or, on CPU, the host's RAM) offers."""

    params: float
    gradients: float
    optimizer: float
    activations: float
    devices: int
    """Devices of this process that share the `available` pool (CPU: all local devices share RAM)."""
    available: float | None
    """Bytes available to those devices together (None: unknown, nothing is refused)."""
    where: str

    @property
    def per_device(self) -> float:
        return self.params + self.gradients + self.optimizer + self.activations

    @property
    def needed(self) -> float:
        return self.per_device * self.devices

    def fits(self) -> bool:
        return self.available is None or self.needed <= self.available

    def describe(self) -> str:
        parts = ", ".join(f"{k} {getattr(self, k) / GIB:.3g}" for k in ("params", "gradients", "optimizer",
                                                                          "activations"))
        return (f"about {self.per_device / GIB:.3g} GiB per device ({parts} GiB) x {self.devices} device(s) = "
                f"{self.needed / GIB:.3g} GiB, but {self.where} has {self.available / GIB:.3g} GiB")


def _activation_bytes(cfg: TrainConfig, batch_per_device: float, tensor: int) -> float:
    m = cfg.model
    tokens = batch_per_device * cfg.data.seq_len
    width = 2 if dtype_name(m) == "bfloat16" else 4
    per_layer = tokens * (8 * m.d_model + 2 * m.ff_size / tensor) * width
    scores = batch_per_device * m.n_heads / tensor * cfg.data.seq_len ** 2 * 4 * 2
    layers = m.n_layers + m.n_encoder_layers
    kept = tokens * m.d_model * width * layers + per_layer + scores if m.remat else (per_layer + scores) * layers
    logits = tokens * m.vocab_size / tensor * 4 * 3
    return kept + logits


def _available(devices) -> tuple[float | None, int, str]:
    """(bytes, devices sharing them, where) for the local devices."""
    first = devices[0]
    stats = None
    try:
        stats = first.memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory stats
        pass
    if stats and stats.get("bytes_limit"):
        return float(stats["bytes_limit"]), 1, f"one {first.device_kind} device"
    try:
        import psutil
        return float(psutil.virtual_memory().available), len(devices), "this host's available RAM"
    except ImportError:
        return None, len(devices), "unknown"


def estimate(cfg: TrainConfig, n_devices: int, local_devices=None, concurrent: int = 1) -> MemoryEstimate:
    """Per-device bytes of `cfg` on a mesh of `n_devices` (local_devices: jax.local_devices());
    `concurrent` runs of it at once on this host (sweep workers) share the host's RAM."""
    import jax

    from lm import flops as flops_lib
    data, fsdp, tensor = cfg.mesh.shape(n_devices)
    n = flops_lib.param_counts(cfg.model).total
    shard = fsdp * tensor
    micro = cfg.batch_size / cfg.optim.grad_accum / (data * fsdp)
    available, sharing, where = _available(local_devices or jax.local_devices())
    if where == "this host's available RAM" and concurrent > 1:
        sharing, where = sharing * concurrent, f"this host's available RAM (for {concurrent} runs at once)"
    return MemoryEstimate(params=4.0 * n / shard, gradients=4.0 * n / shard, optimizer=8.0 * n / shard,
                          activations=_activation_bytes(cfg, micro, tensor), devices=sharing,
                          available=available, where=where)


def check_fits(cfg: TrainConfig, n_devices: int, local_devices=None, concurrent: int = 1) -> MemoryEstimate:
    """Refuse (ValueError with the figures) a run whose estimate exceeds the available memory,
    unless cfg.allow_swap."""
    est = estimate(cfg, n_devices, local_devices, concurrent)
    if not est.fits() and not cfg.allow_swap:
        raise ValueError(f"the run cannot fit in memory: it needs {est.describe()}; shrink the model "
                         "(vocab_size, d_model, n_layers), the batch (batch_size, or optim.grad_accum), "
                         "set model.remat=true, shard over more devices (mesh.fsdp / mesh.tensor), or set "
                         "allow_swap=true to run it on swap (slow)")
    return est
