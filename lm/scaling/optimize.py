"""Batched L-BFGS in JAX: many independent small minimisations advanced in lock-step lanes.

A robust scaling-law fit minimises one small objective (P = 3 to 5 parameters, n = tens to
hundreds of points) from thousands of starts, and a bootstrap refits it on a thousand
resampled data sets. Each problem is tiny, so one problem per call (scipy's way) is all
Python overhead. Here a fixed number of *lanes* each hold one problem, a start
`theta0: [P]` with per-point weights `w: [n]` (ones for a plain fit, bootstrap
multiplicities for a resample). A jitted chunk advances every lane a few steps; between
chunks the host harvests finished lanes and refills them from the queue (and moves the last
few problems to fewer lanes), so only a few shapes are compiled and few lanes idle.

The step itself (L-BFGS with a weak-Wolfe line search, one objective and gradient per lane per
step) is in lm/scaling/lbfgs.py. All arithmetic is float64 inside a scoped
`jax.enable_x64`, which never changes the caller's global JAX configuration.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from lm.scaling.lbfgs import Lanes, Objective, compiled_chunk


@dataclass(frozen=True)
class LBFGSOptions:
    """Stopping rules and batch sizes of `minimize_batch`."""

    max_iter: int = 1000
    """Accepted steps per problem before it is stopped as not converged."""
    gtol: float = 1e-10
    """Converged when max |gradient| <= gtol (objective units per parameter unit)."""
    ftol: float = 1e-9
    """Converged when one step decreases f by <= ftol * |f| (relative, unlike scipy's)."""
    memory: int = 10
    """(s, y) pairs kept, as scipy's L-BFGS-B default."""
    lanes: int = 512
    """Problems advanced together."""
    chunk: int = 32
    """Steps between host refills. Results do not depend on it (a stopped lane stays put); 32 rather
    than 8 saves host round trips: Approach 3's grid fit of 6 points 2.06 -> 1.50 CPU-s, of Epoch's
    240 points 3.8 -> 3.1 CPU-s (BENCHMARKS.md, "Small jobs, second pass")."""
    max_linesearch: int = 30
    """Consecutive rejected trials before a problem is stopped as stuck."""


@dataclass(frozen=True)
class BatchResult:
    """`minimize_batch` results, one row per problem, in input order."""

    theta: np.ndarray
    """[B, P] final parameters."""
    value: np.ndarray
    """[B] final objective (inf where the start itself was not finite)."""
    n_iter: np.ndarray
    """[B] accepted steps."""
    converged: np.ndarray
    """[B] bool: gtol or ftol was met (not max_iter, not a stuck line search)."""


TAIL_MIN_POINTS = 128
"""From this many (padded) points on, batches of at most lanes // 4 problems run in lanes // 4 lanes,
and a bigger batch's last problems move there."""

MIN_PADDED_POINTS = 16
"""The smallest padded point axis: tables of up to 16 points (a small sweep's runs, the subsets its
forecasts fit) share one compiled shape, and a step on 16 points costs ~55 % of one on 64."""


def _pad_points(weights: np.ndarray, data: tuple) -> tuple[np.ndarray, tuple]:
    """Pad the point axis to a power of two (>= MIN_PADDED_POINTS) with zero-weight copies of the
    last point.

    Per-point arrays are those in `data` whose first axis matches the weights' last axis.
    Padded points add nothing to any objective of the form sum_i w_i h_i, and data sets of
    similar size then share one compiled shape.
    """
    n = weights.shape[-1]
    size = max(MIN_PADDED_POINTS, 2 ** int(np.ceil(np.log2(max(n, 1)))))
    pad = size - n
    if pad == 0:
        return weights, tuple(np.asarray(a, dtype=np.float64) for a in data)
    widths = [(0, 0)] * (weights.ndim - 1) + [(0, pad)]
    weights = np.pad(weights, widths)  # zeros
    out = []
    for a in data:
        a = np.asarray(a, dtype=np.float64)
        out.append(np.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1), mode="edge")
                   if a.ndim >= 1 and a.shape[0] == n else a)
    return weights, tuple(out)


def _lane_counts(B: int, n: int, opts: LBFGSOptions) -> tuple[int, int, bool]:
    """(lanes to start with, `mid` lanes, whether a big batch's tail moves to `mid` lanes) for B
    problems on n padded points.

    Few lane counts, so few shapes are ever compiled (compiling one costs ~2 CPU-s): `small` for
    batches of <= small problems; on few points (n < TAIL_MIN_POINTS) opts.lanes for the rest, tail
    included: a step of idle lanes is cheap there (~0.8 ms at 512 x 64 on a 2-core AVX-512 CPU). On
    many points a step costs ~lanes x points, so batches of <= mid problems (VPNLS's 65 starts, a
    walk-forward's 128) run in `mid` lanes and a big batch's tail moves there once the queue is
    empty: one more shape, 4x fewer idle lanes."""
    small, mid = max(8, opts.lanes // 16), opts.lanes // 4
    move_tail = n >= TAIL_MIN_POINTS
    return (small if B <= small else mid if move_tail and B <= mid else opts.lanes), mid, move_tail


def minimize_batch(
    objective: Objective,
    theta0: np.ndarray,
    weights: np.ndarray,
    data: tuple[np.ndarray, ...],
    opts: LBFGSOptions = LBFGSOptions(),
) -> BatchResult:
    """Minimise objective(theta, w, *data) independently for each start (and weight row).

    theta0: [B, P] starts. weights: [B, n] per-problem point weights, or [n] shared by all.
    data: arrays passed unchanged to every problem (e.g. log N, log D, log loss: each [n]).
    The jitted step is cached per (objective, memory, chunk) and traced per lane count (opts.lanes,
    opts.lanes // 16 for small batches, and on >= TAIL_MIN_POINTS points opts.lanes // 4 for batches
    that fit it and for a big batch's tail) and per padded size.
    Returns results in input order; no problem's result depends on the lane it ran in.
    """
    theta0 = np.asarray(theta0, dtype=np.float64)
    if theta0.ndim != 2:
        raise ValueError(f"theta0 must be [B, P], got shape {theta0.shape}")
    B, P = theta0.shape
    weights = np.asarray(weights, dtype=np.float64)
    shared_w = weights.ndim == 1
    weights, data = _pad_points(weights, data)
    n = weights.shape[-1]
    L, mid, move_tail = _lane_counts(B, n, opts)
    m = opts.memory
    out = BatchResult(theta0.copy(), np.full(B, np.inf), np.zeros(B, np.int64), np.zeros(B, bool))
    st, W, lane_task = _empty_lanes(L, P, m), np.ones((L, n)), np.full(L, -1)
    next_task, ready_lanes = 0, 0
    with jax.enable_x64(True):
        chunk = compiled_chunk(objective, opts.memory, opts.chunk)
        tol, data_j = _tolerances(opts), tuple(jnp.asarray(a) for a in data)
        while True:
            free = _harvest(st, lane_task, out)
            n_new = min(len(free), B - next_task)
            if n_new > 0:
                lanes, tasks = free[:n_new], np.arange(next_task, next_task + n_new)
                next_task += n_new
                lane_task[lanes] = tasks
                W[lanes] = weights if shared_w else weights[tasks]
                _fill(st, lanes, theta0[tasks])
            n_active = int(st["active"].sum())
            if n_active == 0:
                break
            if move_tail and next_task == B and n_active <= mid < len(lane_task):
                # The queue is empty and few problems remain: move them to `mid` lanes so the
                # tail stops paying for idle ones (the shape that batches of <= mid problems use).
                keep = np.concatenate([np.flatnonzero(st["active"]), np.flatnonzero(~st["active"])])[:mid]
                st = {key: v[keep] for key, v in st.items()}
                W, lane_task = W[keep], lane_task[keep]
            args = (Lanes(**{key: jnp.asarray(v) for key, v in st.items()}), jnp.asarray(W), data_j, tol)
            if ready_lanes != len(lane_task):  # once per shape: wait for (or run) its compilation
                chunk.ready(*args)
                ready_lanes = len(lane_task)
            st = {key: np.array(a) for key, a in chunk.fn(*args)._asdict().items()}
    return out


def compile_ahead(objective: Objective, n_problems: int, n_params: int, n_points: int, data: tuple,
                  opts: LBFGSOptions = LBFGSOptions()) -> threading.Thread:
    """Start compiling, in a background thread, the programs `minimize_batch(objective, theta0
    [n_problems, n_params], weights [n_points], data, opts)` will run (data: its arrays, or any of
    the same shapes), and return the thread. Compiling (~1.5 CPU-s a program) then overlaps other
    work on another core; minimize_batch waits for a program still being compiled instead of
    compiling it again, and runs the same program either way (its results do not change).
    A failure here is left for minimize_batch to meet and report."""
    weights, data = _pad_points(np.ones(n_points), data)
    n = weights.shape[-1]
    L, mid, move_tail = _lane_counts(n_problems, n, opts)

    def run():
        try:
            with jax.enable_x64(True):
                chunk = compiled_chunk(objective, opts.memory, opts.chunk)
                data_j = tuple(jnp.asarray(a) for a in data)
                for lanes in [L] + ([mid] if move_tail and mid < L else []):
                    st = _empty_lanes(lanes, n_params, opts.memory)
                    chunk.ready(Lanes(**{key: jnp.asarray(v) for key, v in st.items()}),
                                jnp.asarray(np.ones((lanes, n))), data_j, _tolerances(opts))
        except Exception:  # noqa: BLE001 - minimize_batch compiles (and raises) itself
            pass

    thread = threading.Thread(target=run, name="lbfgs-compile-ahead")
    thread.start()
    return thread


def _tolerances(opts: LBFGSOptions) -> jax.Array:
    return jnp.asarray([opts.gtol, opts.ftol, opts.max_iter, opts.max_linesearch], dtype=jnp.float64)


def _empty_lanes(L: int, P: int, m: int) -> dict[str, np.ndarray]:
    """Host copy of a Lanes state of L idle lanes (numpy arrays by field name)."""
    shapes = dict(x=(P,), f=(), g=(P,), d=(P,), gd=(), t=(), lo=(), hi=(), f_lo=(), g_lo=(P,),
                  S=(m, P), Y=(m, P), rho=(m,))
    st = {key: np.zeros((L,) + shapes[key]) for key in shapes}
    st.update({key: np.zeros(L, np.int64) for key in ("k", "it", "nls")})
    st.update({key: np.zeros(L, bool) for key in ("fresh", "active", "conv")})
    return {key: st[key] for key in Lanes._fields}


def _harvest(st: dict[str, np.ndarray], lane_task: np.ndarray, out: BatchResult) -> np.ndarray:
    """Copy the results of lanes that stopped into `out` (by task), free them; returns the free lanes."""
    free = np.flatnonzero(~st["active"])
    harvest = free[lane_task[free] >= 0]
    tasks = lane_task[harvest]
    out.theta[tasks], out.value[tasks] = st["x"][harvest], st["f"][harvest]
    out.n_iter[tasks], out.converged[tasks] = st["it"][harvest], st["conv"][harvest]
    lane_task[harvest] = -1
    return free


def _fill(st: dict[str, np.ndarray], lanes: np.ndarray, theta0: np.ndarray) -> None:
    """Start new problems in `lanes` at theta0: [len(lanes), P] (evaluated by the next step)."""
    for key in st:
        st[key][lanes] = 0
    st["x"][lanes] = theta0
    st["f"][lanes] = np.inf
    st["fresh"][lanes] = st["active"][lanes] = True
