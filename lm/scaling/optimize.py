"""Batched L-BFGS in JAX: many independent small minimisations advanced in lock-step lanes.

A robust scaling-law fit minimises one small objective (P = 3 to 5 parameters, n = tens to
hundreds of points) from thousands of starts, and a bootstrap refits it on a thousand
resampled data sets. Each problem is tiny, so one problem per call (scipy's way) is all
Python overhead. Here a fixed number of *lanes* each hold one problem, a start
`theta0: [P]` with per-point weights `w: [n]` (ones for a plain fit, bootstrap
multiplicities for a resample). A jitted chunk advances every lane a few steps; between
chunks the host harvests finished lanes and refills them from the queue (and moves the last
few problems to fewer lanes), so only a few shapes are compiled and few lanes idle.

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
from typing import Callable, NamedTuple

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


class Lanes(NamedTuple):
    """The state of every lane (one problem each) between steps, a pytree of arrays.
    L = lanes, P = parameters, m = memory."""

    x: jax.Array
    """[L, P] current point."""
    f: jax.Array
    """[L] objective at x (inf before the start is evaluated)."""
    g: jax.Array
    """[L, P] gradient at x."""
    d: jax.Array
    """[L, P] search direction of the line search in progress."""
    gd: jax.Array
    """[L] g . d at x (negative: a descent direction)."""
    t: jax.Array
    """[L] step length of the next trial point x + t d."""
    lo: jax.Array
    """[L] bracket from below: the largest step known to be too short (Armijo holds, curvature fails)."""
    hi: jax.Array
    """[L] bracket from above: the smallest step known to be too long (Armijo fails); inf = none yet."""
    f_lo: jax.Array
    """[L] objective at x + lo d."""
    g_lo: jax.Array
    """[L, P] gradient at x + lo d."""
    S: jax.Array
    """[L, m, P] ring buffer of the last m accepted steps s = x_new - x."""
    Y: jax.Array
    """[L, m, P] their gradient changes y = g_new - g."""
    rho: jax.Array
    """[L, m] 1 / (s . y) of each stored pair."""
    k: jax.Array
    """[L] int: pairs stored so far (the next one goes to slot k % m)."""
    it: jax.Array
    """[L] int: accepted steps."""
    nls: jax.Array
    """[L] int: consecutive rejected trials of the line search in progress (0 = pick a new direction)."""
    fresh: jax.Array
    """[L] bool: a just-filled lane whose start is evaluated by the next step."""
    active: jax.Array
    """[L] bool: still being minimised."""
    conv: jax.Array
    """[L] bool: stopped by gtol or ftol."""


class _Trial(NamedTuple):
    """What one step's line search made of its trial point, per lane."""

    acc: jax.Array
    """[L] bool: a point was accepted (the trial, or the best Armijo point of a search out of trials)."""
    stuck: jax.Array
    """[L] bool: out of trials with no Armijo point at all."""
    x: jax.Array
    """[L, P] the accepted point (where acc)."""
    f: jax.Array
    """[L] its objective."""
    g: jax.Array
    """[L, P] its gradient."""


_C1, _C2 = 1e-4, 0.9  # Armijo and (weak) Wolfe curvature constants, as scipy's L-BFGS-B


def _new_directions(st: Lanes, m: int) -> Lanes:
    """Lanes between line searches pick a new L-BFGS direction (steepest descent where it is not a
    descent direction) and a first step; fresh lanes try t = 0 (they evaluate their start)."""
    new_dir = (st.nls == 0) & ~st.fresh
    d_new = jax.vmap(lambda *a: _two_loop(*a, m))(st.g, st.S, st.Y, st.rho, st.k)
    gd_new = jnp.sum(st.g * d_new, axis=1)
    bad = ~(gd_new < 0) | ~jnp.all(jnp.isfinite(d_new), axis=1)
    d_new = jnp.where(bad[:, None], -st.g, d_new)
    gd_new = jnp.where(bad, -jnp.sum(st.g * st.g, axis=1), gd_new)
    gnorm = jnp.sqrt(jnp.sum(st.g * st.g, axis=1))
    t_new = jnp.where((st.k == 0) | bad, jnp.minimum(1.0, 1.0 / jnp.maximum(gnorm, 1e-300)), 1.0)
    return st._replace(d=jnp.where(new_dir[:, None], d_new, st.d), gd=jnp.where(new_dir, gd_new, st.gd),
                       t=jnp.where(new_dir, t_new, jnp.where(st.fresh, 0.0, st.t)),
                       lo=jnp.where(new_dir, 0.0, st.lo), hi=jnp.where(new_dir, jnp.inf, st.hi))


def _line_search(st: Lanes, xt, ft, gt, max_ls) -> tuple[Lanes, _Trial]:
    """Judge the trial x + t d (objective ft, gradient gt) by the weak Wolfe conditions; accept it,
    or bracket and pick the next trial (safeguarded quadratic interpolation, or 4x expansion)."""
    x, f, d, gd, t = st.x, st.f, st.d, st.gd, st.t
    searching = st.active & ~st.fresh
    armijo = jnp.isfinite(ft) & (ft <= f + _C1 * t * gd)
    curv = jnp.sum(gt * d, axis=1) >= _C2 * gd
    acc = searching & armijo & curv
    too_short = searching & armijo & ~curv  # weak Wolfe fails: expand (bracket from below)
    too_long = searching & ~armijo  # shrink (bracket from above)
    nls = jnp.where(acc, 0, jnp.where(searching, st.nls + 1, st.nls))
    # Out of trials: fall back to the best Armijo point found, if any.
    give_up = searching & ~acc & (nls > max_ls)
    lo = jnp.where(too_short, t, st.lo)
    f_lo = jnp.where(too_short, ft, st.f_lo)
    g_lo = jnp.where(too_short[:, None], gt, st.g_lo)
    fallback = give_up & (lo > 0)
    trial = _Trial(acc | fallback, give_up & ~(lo > 0), jnp.where(fallback[:, None], x + lo[:, None] * d, xt),
                   jnp.where(fallback, f_lo, ft), jnp.where(fallback[:, None], g_lo, gt))
    # Next trial: safeguarded quadratic interpolation inside [lo, hi], or expansion.
    hi = jnp.where(too_long, t, st.hi)
    denom = 2.0 * (ft - f - gd * t)
    tq = -gd * t * t / jnp.where(denom > 0, denom, 1.0)
    tq = jnp.where((denom > 0) & jnp.isfinite(tq), tq, 0.5 * (lo + t))
    width = hi - lo
    t_shrink = jnp.clip(tq, lo + 0.1 * width, hi - 0.1 * width)
    t_grow = jnp.where(jnp.isinf(hi), 4.0 * t, 0.5 * (lo + hi))
    t = jnp.where(too_long, t_shrink, jnp.where(too_short, t_grow, t))
    return st._replace(t=t, lo=lo, hi=hi, f_lo=f_lo, g_lo=g_lo, nls=jnp.where(trial.acc, 0, nls)), trial


def _remember(st: Lanes, trial: _Trial, m: int) -> Lanes:
    """Store the accepted step's (s, y) pair in the ring buffer, unless s . y is not positive."""
    s, y = trial.x - st.x, trial.g - st.g
    sy = jnp.sum(s * y, axis=1)
    store = trial.acc & (sy > 1e-10 * jnp.sum(y * y, axis=1))
    onehot = (jnp.arange(m)[None, :] == (st.k % m)[:, None]) & store[:, None]  # [L, m]
    return st._replace(S=jnp.where(onehot[:, :, None], s[:, None, :], st.S),
                       Y=jnp.where(onehot[:, :, None], y[:, None, :], st.Y),
                       rho=jnp.where(onehot, (1.0 / jnp.where(sy > 0, sy, 1.0))[:, None], st.rho),
                       k=st.k + store.astype(st.k.dtype))


def _settle(st: Lanes, trial: _Trial, ft, gt, tol) -> Lanes:
    """Move lanes to their accepted points (fresh lanes to their evaluated starts) and stop the
    lanes that converged (gtol, ftol), ran out of steps, got stuck, or started at a non-finite f."""
    gtol, ftol, max_iter = tol[0], tol[1], tol[2]
    small_g = jnp.max(jnp.abs(trial.g), axis=1) <= gtol
    small_f = (st.f - trial.f) <= ftol * jnp.maximum(jnp.abs(st.f), jnp.abs(trial.f))
    done = trial.acc & (small_g | small_f)
    start = st.fresh & st.active
    take = trial.acc | start
    it = st.it + trial.acc.astype(st.it.dtype)
    start_ok = jnp.isfinite(ft)
    start_conv = start & start_ok & (jnp.max(jnp.abs(gt), axis=1) <= gtol)
    return st._replace(
        x=jnp.where(take[:, None], trial.x, st.x), g=jnp.where(take[:, None], trial.g, st.g),
        f=jnp.where(take, trial.f, st.f), it=it, conv=st.conv | done | start_conv,
        active=st.active & ~done & ~trial.stuck & (it < max_iter) & ~(start & ~start_ok) & ~start_conv,
        fresh=jnp.zeros_like(st.fresh))


@functools.lru_cache(maxsize=64)
def _compiled_chunk(objective: Objective, memory: int, n_steps: int):
    """Jitted chunk(state: Lanes, w, data, tol) advancing every lane by n_steps steps.

    tol = [gtol, ftol, max_iter, max_linesearch] is traced, so changing a tolerance does not
    recompile; jit retraces per lane count and data shapes. Each step evaluates the objective and
    its gradient once per lane, at the lane's trial point.
    """
    def vg(theta, w, data):
        f_lanes = jax.vmap(objective, in_axes=(0, 0) + (None,) * len(data))

        def total(t):
            f = f_lanes(t, w, *data)
            return jnp.sum(jnp.where(jnp.isfinite(f), f, 0.0)), f

        (_, f), g = jax.value_and_grad(total, has_aux=True)(theta)
        return f, g

    def step(st: Lanes, w, data, tol) -> Lanes:
        st = _new_directions(st, memory)
        xt = st.x + st.t[:, None] * st.d
        ft, gt = vg(xt, w, data)
        st, trial = _line_search(st, xt, ft, gt, tol[3])
        return _settle(_remember(st, trial, memory), trial, ft, gt, tol)

    def chunk(st, w, data, tol):
        return jax.lax.fori_loop(0, n_steps, lambda _, s: step(s, w, data, tol), st)

    return jax.jit(chunk)


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
    next_task = 0
    with jax.enable_x64(True):
        chunk = _compiled_chunk(objective, opts.memory, opts.chunk)
        tol = jnp.asarray([opts.gtol, opts.ftol, opts.max_iter, opts.max_linesearch], dtype=jnp.float64)
        data_j = tuple(jnp.asarray(a) for a in data)
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
            state = chunk(Lanes(**{key: jnp.asarray(v) for key, v in st.items()}), jnp.asarray(W), data_j, tol)
            st = {key: np.array(a) for key, a in state._asdict().items()}
    return out


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
