"""Batched L-BFGS in JAX: many independent small minimisations advanced in lock-step lanes.

A robust scaling-law fit minimises one small objective (P = 3 to 5 parameters, n = tens to
hundreds of points) from thousands of starts, and a bootstrap refits it on a thousand
resampled data sets. Each problem is tiny, so one problem per call (scipy's way) is all
Python overhead. Here a fixed number of *lanes* each hold one problem, a start
`theta0: [P]` with per-point weights `w: [n]` (ones for a plain fit, bootstrap
multiplicities for a resample). A jitted chunk advances every lane a few steps; between
chunks the host harvests finished lanes and refills them from the queue (and moves the last
few problems to a small batch), so only two shapes are compiled and few lanes idle.

Each step evaluates objective and gradient exactly once per lane: the lane either tries a
new L-BFGS direction or continues its line search, so lanes never wait on each other. The
algorithm is textbook L-BFGS (Nocedal & Wright 2006, Alg. 7.4): two-loop recursion over the
last `memory` pairs, scaled-identity initial Hessian, pairs with s·y <= 0 skipped, and a
weak-Wolfe bracketing line search (Lewis & Overton 2013): a step failing Armijo shrinks by
safeguarded quadratic interpolation, a step failing the curvature condition grows 4x (or
bisects once bracketed). The growth matters: on the flat plateaus of Chinchilla's grid
(e.g. alpha = beta = 0 starts) backtracking alone crawls for thousands of steps where
scipy's Wolfe search escapes in a few. All arithmetic is float64 inside a scoped
`jax.enable_x64`, which never changes the caller's global JAX configuration.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

Objective = Callable[..., jax.Array]
"""objective(theta: [P], w: [n], *data) -> scalar; a module-level (hashable) function."""


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
    chunk: int = 8
    """Steps between host refills."""
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


def _two_loop(g, S, Y, rho, k, memory):
    """L-BFGS direction -H·g for one lane. g: [P]; S, Y: [m, P]; rho: [m]; k: pairs stored."""
    order = (k - 1 - jnp.arange(memory)) % memory  # newest first
    valid = jnp.arange(memory) < k
    Sn, Yn, rn = S[order], Y[order], jnp.where(valid, rho[order], 0.0)

    def first(q, syr):
        s, y, r = syr
        a = r * jnp.dot(s, q)
        return q - a * y, a

    q, alphas = jax.lax.scan(first, g, (Sn, Yn, rn))
    yy = jnp.dot(Yn[0], Yn[0])
    gamma = jnp.where((k > 0) & (yy > 0), jnp.dot(Sn[0], Yn[0]) / jnp.where(yy > 0, yy, 1.0), 1.0)

    def second(r, syra):
        s, y, rr, a = syra
        return r + s * (a - rr * jnp.dot(y, r)), None

    r, _ = jax.lax.scan(second, gamma * q, (Sn, Yn, rn, alphas), reverse=True)
    return -r


_STATE = ("x", "f", "g", "d", "gd", "t", "lo", "hi", "f_lo", "g_lo", "S", "Y", "rho", "k", "it",
          "nls", "fresh", "active", "conv")
_C1, _C2 = 1e-4, 0.9  # Armijo and (weak) Wolfe curvature constants, as scipy's L-BFGS-B


@functools.lru_cache(maxsize=64)
def _compiled_chunk(objective: Objective, memory: int, n_steps: int):
    """Jitted chunk(state, w, data, tol) advancing every lane by n_steps steps.

    tol = [gtol, ftol, max_iter, max_linesearch] is traced, so changing a tolerance does not
    recompile; jit retraces per lane count and data shapes.
    """
    m = memory

    def vg(theta, w, data):
        f_lanes = jax.vmap(objective, in_axes=(0, 0) + (None,) * len(data))

        def total(t):
            f = f_lanes(t, w, *data)
            return jnp.sum(jnp.where(jnp.isfinite(f), f, 0.0)), f

        (_, f), g = jax.value_and_grad(total, has_aux=True)(theta)
        return f, g

    def step(st, w, data, tol):
        gtol, ftol, max_iter, max_ls = tol[0], tol[1], tol[2], tol[3]
        (x, f, g, d, gd, t, lo, hi, f_lo, g_lo, S, Y, rho, k, it, nls, fresh, active, conv) = st
        # Lanes between line searches pick a new direction; fresh lanes evaluate their start.
        new_dir = (nls == 0) & ~fresh
        d_new = jax.vmap(lambda *a: _two_loop(*a, m))(g, S, Y, rho, k)
        gd_new = jnp.sum(g * d_new, axis=1)
        bad = ~(gd_new < 0) | ~jnp.all(jnp.isfinite(d_new), axis=1)
        d_new = jnp.where(bad[:, None], -g, d_new)
        gd_new = jnp.where(bad, -jnp.sum(g * g, axis=1), gd_new)
        gnorm = jnp.sqrt(jnp.sum(g * g, axis=1))
        t_new = jnp.where((k == 0) | bad, jnp.minimum(1.0, 1.0 / jnp.maximum(gnorm, 1e-300)), 1.0)
        d = jnp.where(new_dir[:, None], d_new, d)
        gd = jnp.where(new_dir, gd_new, gd)
        t = jnp.where(new_dir, t_new, jnp.where(fresh, 0.0, t))
        lo = jnp.where(new_dir, 0.0, lo)
        hi = jnp.where(new_dir, jnp.inf, hi)

        xt = x + t[:, None] * d
        ft, gt = vg(xt, w, data)
        searching = active & ~fresh
        armijo = jnp.isfinite(ft) & (ft <= f + _C1 * t * gd)
        curv = jnp.sum(gt * d, axis=1) >= _C2 * gd
        acc = searching & armijo & curv
        too_short = searching & armijo & ~curv  # weak Wolfe fails: expand (bracket from below)
        too_long = searching & ~armijo  # shrink (bracket from above)
        nls = jnp.where(acc, 0, jnp.where(searching, nls + 1, nls))
        # Out of trials: fall back to the best Armijo point found, if any.
        give_up = searching & ~acc & (nls > max_ls)
        lo_new = jnp.where(too_short, t, lo)
        f_lo = jnp.where(too_short, ft, f_lo)
        g_lo = jnp.where(too_short[:, None], gt, g_lo)
        fallback = give_up & (lo_new > 0)
        stuck = give_up & ~(lo_new > 0)
        x_acc = jnp.where(fallback[:, None], x + lo_new[:, None] * d, xt)
        f_acc = jnp.where(fallback, f_lo, ft)
        g_acc = jnp.where(fallback[:, None], g_lo, gt)
        acc = acc | fallback
        # Next trial: safeguarded quadratic interpolation inside [lo, hi], or expansion.
        hi = jnp.where(too_long, t, hi)
        lo = lo_new
        denom = 2.0 * (ft - f - gd * t)
        tq = -gd * t * t / jnp.where(denom > 0, denom, 1.0)
        tq = jnp.where((denom > 0) & jnp.isfinite(tq), tq, 0.5 * (lo + t))
        width = hi - lo
        t_shrink = jnp.clip(tq, lo + 0.1 * width, hi - 0.1 * width)
        t_grow = jnp.where(jnp.isinf(hi), 4.0 * t, 0.5 * (lo + hi))
        t = jnp.where(too_long, t_shrink, jnp.where(too_short, t_grow, t))
        nls = jnp.where(acc, 0, nls)

        s, y = x_acc - x, g_acc - g
        sy = jnp.sum(s * y, axis=1)
        store = acc & (sy > 1e-10 * jnp.sum(y * y, axis=1))
        onehot = (jnp.arange(m)[None, :] == (k % m)[:, None]) & store[:, None]  # [L, m]
        S = jnp.where(onehot[:, :, None], s[:, None, :], S)
        Y = jnp.where(onehot[:, :, None], y[:, None, :], Y)
        rho = jnp.where(onehot, (1.0 / jnp.where(sy > 0, sy, 1.0))[:, None], rho)
        k = k + store.astype(k.dtype)
        small_g = jnp.max(jnp.abs(g_acc), axis=1) <= gtol
        small_f = (f - f_acc) <= ftol * jnp.maximum(jnp.abs(f), jnp.abs(f_acc))
        done = acc & (small_g | small_f)
        start = fresh & active
        take = acc | start
        x = jnp.where(take[:, None], x_acc, x)
        g = jnp.where(take[:, None], g_acc, g)
        f = jnp.where(take, f_acc, f)
        it = it + acc.astype(it.dtype)
        start_ok = jnp.isfinite(ft)
        start_conv = start & start_ok & (jnp.max(jnp.abs(gt), axis=1) <= gtol)
        conv = conv | done | start_conv
        active = active & ~done & ~stuck & (it < max_iter) & ~(start & ~start_ok) & ~start_conv
        fresh = jnp.zeros_like(fresh)
        return (x, f, g, d, gd, t, lo, hi, f_lo, g_lo, S, Y, rho, k, it, nls, fresh, active, conv)

    def chunk(st, w, data, tol):
        return jax.lax.fori_loop(0, n_steps, lambda _, s: step(s, w, data, tol), st)

    return jax.jit(chunk)


def _pad_points(weights: np.ndarray, data: tuple) -> tuple[np.ndarray, tuple]:
    """Pad the point axis to a power of two (>= 64) with zero-weight copies of the last point.

    Per-point arrays are those in `data` whose first axis matches the weights' last axis.
    Padded points add nothing to any objective of the form sum_i w_i h_i, and data sets of
    similar size then share one compiled shape.
    """
    n = weights.shape[-1]
    size = max(64, 2 ** int(np.ceil(np.log2(max(n, 1)))))
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
    The jitted step is cached per (objective, memory, chunk) and traced for two lane counts
    (opts.lanes, and opts.lanes // 16 for small batches and the tail) and per padded size.
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
    # Two lane counts only (opts.lanes, and `small` for small batches and the tail), so few
    # shapes are ever compiled; compiling costs more than idle lanes.
    small = max(8, opts.lanes // 16)
    L, m = (small if B <= small else opts.lanes), opts.memory
    out = BatchResult(theta0.copy(), np.full(B, np.inf), np.zeros(B, np.int64), np.zeros(B, bool))
    shapes = dict(x=(P,), f=(), g=(P,), d=(P,), gd=(), t=(), lo=(), hi=(), f_lo=(), g_lo=(P,),
                  S=(m, P), Y=(m, P), rho=(m,))
    st = {key: np.zeros((L,) + shapes[key]) for key in shapes}
    st.update({key: np.zeros(L, np.int64) for key in ("k", "it", "nls")})
    st.update({key: np.zeros(L, bool) for key in ("fresh", "active", "conv")})
    W = np.ones((L, n))
    lane_task = np.full(L, -1)
    next_task = 0
    with jax.enable_x64(True):
        chunk = _compiled_chunk(objective, opts.memory, opts.chunk)
        tol = jnp.asarray([opts.gtol, opts.ftol, opts.max_iter, opts.max_linesearch], dtype=jnp.float64)
        data_j = tuple(jnp.asarray(a) for a in data)
        while True:
            free = np.flatnonzero(~st["active"])
            harvest = free[lane_task[free] >= 0]
            tasks = lane_task[harvest]
            out.theta[tasks], out.value[tasks] = st["x"][harvest], st["f"][harvest]
            out.n_iter[tasks], out.converged[tasks] = st["it"][harvest], st["conv"][harvest]
            lane_task[harvest] = -1
            n_new = min(len(free), B - next_task)
            if n_new > 0:
                lanes = free[:n_new]
                tasks = np.arange(next_task, next_task + n_new)
                next_task += n_new
                lane_task[lanes] = tasks
                W[lanes] = weights if shared_w else weights[tasks]
                for key in st:
                    st[key][lanes] = 0
                st["x"][lanes] = theta0[tasks]
                st["f"][lanes] = np.inf
                st["fresh"][lanes] = st["active"][lanes] = True
            n_active = int(st["active"].sum())
            if n_active == 0:
                break
            if next_task == B and n_active <= small < len(lane_task):
                # The queue is empty and few problems remain: move them to `small` lanes so
                # the tail stops paying for idle ones (one more compiled shape).
                keep = np.concatenate([np.flatnonzero(st["active"]), np.flatnonzero(~st["active"])])[:small]
                st = {key: v[keep] for key, v in st.items()}
                W, lane_task = W[keep], lane_task[keep]
            state = tuple(jnp.asarray(st[key]) for key in _STATE)
            state = chunk(state, jnp.asarray(W), data_j, tol)
            st = {key: np.array(a) for key, a in zip(_STATE, state)}
    return out
