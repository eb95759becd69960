"""Device mesh and the one table that maps logical axis names onto it.

Every parameter names its axes (`embed`, `mlp`, `heads`, ...; see lm.model). `RULES` maps each
logical name to a mesh axis (`data`, `fsdp`, `tensor`) or to None (replicated). Changing a run's
parallelism is a MeshConfig change; no model code knows about devices.

- data:   batch split; parameters replicated.
- fsdp:   batch split; parameters and optimizer state split along `embed` (ZeRO-3 style).
- tensor: heads, kv heads, MLP width and vocabulary split (Megatron style).

Activations take names from the same table through `constrain` (batch, length, embed, heads,
vocab): the residual stream [batch, length, embed] is split over the batch axes only (embed's
`fsdp` is taken by batch), the logits [batch, length, vocab] also over `tensor`. `with_mesh` makes
the mesh visible to `constrain` while a step is traced; without one `constrain` does nothing.

A dimension that the mesh axis does not divide evenly is replicated instead of failing (a 1-kv-head
model under tensor=2, say); `describe_fallbacks` lists where that happened.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lm.config import MeshConfig

RULES: dict[str, str | tuple[str, ...] | None] = {
    "batch": ("data", "fsdp"),
    "vocab": "tensor",
    "embed": "fsdp",
    "heads": "tensor",
    "kv_heads": "tensor",
    "mlp": "tensor",
    "head_dim": None,
    "layers": None,
    "seq": None,
    "length": None,
}


def make_mesh(cfg: MeshConfig, devices: list[jax.Device] | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh over `devices` (default: all devices of all processes)."""
    devices = list(jax.devices() if devices is None else devices)
    shape = cfg.shape(len(devices))
    try:
        from jax.experimental import mesh_utils
        array = mesh_utils.create_device_mesh(shape, devices=devices)
    except (ValueError, NotImplementedError, AssertionError):
        array = np.asarray(devices).reshape(shape)
    return Mesh(array, cfg.axis_names)


def _mesh_axis_size(mesh: Mesh, axes: str | tuple[str, ...] | None) -> int:
    if axes is None:
        return 1
    names = (axes,) if isinstance(axes, str) else axes
    return int(np.prod([mesh.shape[a] for a in names]))


def logical_to_spec(logical: P, shape: tuple[int, ...], mesh: Mesh,
                    rules: dict[str, Any] = RULES) -> P:
    """PartitionSpec of mesh axes for one array, replicating dims the mesh cannot split evenly."""
    out, used = [], set()
    for name, size in zip(tuple(logical) + (None,) * (len(shape) - len(logical)), shape):
        axes = rules.get(name) if name is not None else None
        names = () if axes is None else ((axes,) if isinstance(axes, str) else tuple(axes))
        names = tuple(a for a in names if a not in used and mesh.shape[a] > 1)
        if not names or size % _mesh_axis_size(mesh, names):
            out.append(None)
            continue
        used.update(names)
        out.append(names[0] if len(names) == 1 else names)
    return P(*out)


def constrain(x: jax.Array, *logical: str | None) -> jax.Array:
    """`x` with its layout pinned to its logical axis names (one per dimension) through RULES on
    the mesh the function is traced under (see `with_mesh`); `x` unchanged outside one."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    spec = logical_to_spec(P(*logical), x.shape, mesh)
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def splits(logical: str, size: int) -> bool:
    """Whether a dimension of `size` named `logical` is split over devices on the mesh being
    traced (see `with_mesh`); False outside one."""
    mesh = jax.sharding.get_abstract_mesh()
    return not mesh.empty and logical_to_spec(P(logical), (size,), mesh)[0] is not None


def with_mesh(fn: Callable, mesh: Mesh) -> Callable:
    """`fn` traced with `mesh` as the current (abstract) mesh, so `constrain` inside it takes effect."""
    @functools.wraps(fn)
    def traced(*args, **kwargs):
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            return fn(*args, **kwargs)
    return traced


def param_shardings(abstract: Any, logical: Any, mesh: Mesh) -> Any:
    """NamedShardings for a parameter pytree from its shapes and logical axis names."""
    return jax.tree.map(lambda a, spec: NamedSharding(mesh, logical_to_spec(spec, a.shape, mesh)),
                        abstract, logical, is_leaf=lambda x: isinstance(x, P))


def batch_sharding(mesh: Mesh, ndim: int = 2, rules: dict[str, Any] = RULES) -> NamedSharding:
    """Batch arrays [batch, ...]: the batch axis split over the mesh axes RULES maps `batch` to
    (data and fsdp), the other axes replicated."""
    return NamedSharding(mesh, P(rules["batch"], *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def opt_state_shardings(tx: Any, abstract_opt_state: Any, params_shardings: Any, mesh: Mesh) -> Any:
    """Shardings for an optax state: each parameter-shaped leaf (moments) takes its parameter's
    sharding, everything else (step counts, ...) is replicated."""
    import optax

    return optax.tree_map_params(tx, lambda _, sharding: sharding, abstract_opt_state, params_shardings,
                                 transform_non_params=lambda _: replicated(mesh),
                                 is_leaf=lambda x: isinstance(x, NamedSharding))


def per_device_bytes(tree: Any) -> dict[jax.Device, int]:
    """Bytes of `tree`'s arrays resident on each addressable device."""
    sizes: dict[jax.Device, int] = {}
    for leaf in jax.tree.leaves(tree):
        for shard in leaf.addressable_shards:
            sizes[shard.device] = sizes.get(shard.device, 0) + shard.data.nbytes
    return sizes


def describe_fallbacks(abstract: Any, logical: Any, mesh: Mesh) -> list[str]:
    """Parameters whose logical axes could not be split on this mesh (replicated instead)."""
    notes = []
    flat_a = jax.tree_util.tree_flatten_with_path(abstract)[0]
    flat_l = jax.tree.leaves(logical, is_leaf=lambda x: isinstance(x, P))
    for (path, a), spec in zip(flat_a, flat_l):
        got = logical_to_spec(spec, a.shape, mesh)
        for name, size, axes in zip(spec, a.shape, got):
            want = RULES.get(name) if name else None
            if want and axes is None and _mesh_axis_size(mesh, want) > 1:
                notes.append(f"{jax.tree_util.keystr(path)}: {name}={size} not divisible by "
                             f"{want}={_mesh_axis_size(mesh, want)}; replicated")
    return notes
