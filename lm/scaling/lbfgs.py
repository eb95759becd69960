"""The L-BFGS step of `optimize.minimize_batch`: one jitted chunk advancing every lane a few steps.

Each step evaluates objective and gradient exactly once per lane: the lane either tries a
new L-BFGS direction or continues its line search, so lanes never wait on each other. The
algorithm is textbook L-BFGS (Nocedal & Wright 2006, Alg. 7.4): two-loop recursion over the
last `memory` pairs, scaled-identity initial Hessian, pairs with s·y <= 0 skipped, and a
weak-Wolfe bracketing line search (Lewis & Overton 2013): a step failing Armijo shrinks by
safeguarded quadratic interpolation, a step failing the curvature condition grows 4x (or
bisects once bracketed). The growth matters: on the flat plateaus of Chinchilla's grid
(e.g. alpha = beta = 0 starts) backtracking alone crawls for thousands of steps where
scipy's Wolfe search escapes in a few.
"""

from __future__ import annotations

import functools
import threading
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

Objective = Callable[..., jax.Array]
"""objective(theta: [P], w: [n], *data) -> scalar; a module-level (hashable) function."""


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


class Chunk:
    """A jitted chunk and one lock per argument shape: `ready(*args)` compiles the program for
    those shapes once (a call from another thread waits for it instead of compiling it again), and
    the jitted function then runs the compiled program."""

    def __init__(self, fn):
        self.fn = jax.jit(fn)
        self._locks: dict[tuple, threading.Lock] = {}
        self._done: set[tuple] = set()
        self._guard = threading.Lock()

    def ready(self, *args) -> None:
        key = tuple((a.shape, a.dtype) for a in jax.tree_util.tree_leaves(args))
        if key in self._done:
            return
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._done:
                self.fn.lower(*args).compile()
                self._done.add(key)


@functools.lru_cache(maxsize=64)
def compiled_chunk(objective: Objective, memory: int, n_steps: int) -> Chunk:
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

    return Chunk(chunk)
