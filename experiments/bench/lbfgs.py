"""The hand-written batched L-BFGS (lm/scaling/optimize.py) against `optax.lbfgs` under `jax.vmap`,
on the same objective: Approach 3's Huber fit of Epoch's 240 Chinchilla points from the 4,500-start
grid, float64. Prints, for each: warm wall time (best of --repeats, compilation excluded), the best
objective reached, the fitted (E, A, B, alpha, beta), and how many starts converged.

    python -m experiments.bench.lbfgs [--repeats 3] [--max-iter 1000] [--every 10]

optax runs every start for the same number of iterations inside one `lax.while_loop` (a vmapped
loop stops when the last lane has converged), with its default zoom line search; a lane counts as
converged when max |gradient| <= 1e-8 or its objective stopped moving (relative 1e-12).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "epoch_chinchilla_svg_extracted_data.csv"


def _epoch_points(path: Path):
    from experiments.bench.fit import load

    N, D, L = load(path)
    return np.log(N), np.log(D), np.log(L)


def optax_fit(starts: np.ndarray, data: tuple, max_iter: int):
    """(theta [S, 5], value [S], converged [S]) from optax.lbfgs on every start (vmapped)."""
    import optax

    from lm.scaling.fit import jax_chinchilla_objective

    lN, lD, lL, delta = data
    w = jnp.ones_like(lN)
    fun = lambda theta: jax_chinchilla_objective(theta, w, lN, lD, lL, delta)
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fun)

    def solve(theta0):
        def cond(carry):
            _, state, it, done = carry
            return (it < max_iter) & ~done

        def body(carry):
            theta, state, it, _ = carry
            value, grad = value_and_grad(theta, state=state)
            updates, state = opt.update(grad, state, theta, value=value, grad=grad, value_fn=fun)
            new = optax.apply_updates(theta, updates)
            new_value = fun(new)
            done = (jnp.max(jnp.abs(grad)) <= 1e-8) | (jnp.abs(value - new_value) <= 1e-12 * jnp.abs(value))
            return new, state, it + 1, done

        theta, _, _, done = jax.lax.while_loop(cond, body, (theta0, opt.init(theta0), 0, False))
        return theta, fun(theta), done

    return jax.jit(jax.vmap(solve))(jnp.asarray(starts))


def best_of(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return out, min(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-iter", type=int, default=1000)
    p.add_argument("--every", type=int, default=1, help="use every k-th grid start (both fitters)")
    args = p.parse_args(argv)
    from lm.scaling.fit import chinchilla_grid, fit_chinchilla
    from lm.scaling.laws import ChinchillaLaw

    lN, lD, lL = _epoch_points(args.data)
    N, D, L = np.exp(lN), np.exp(lD), np.exp(lL)
    starts = chinchilla_grid()[::args.every]
    fit_chinchilla(N, D, L, starts=starts)                    # compile
    ours, t_ours = best_of(lambda: fit_chinchilla(N, D, L, starts=starts), args.repeats)
    with jax.enable_x64(True):
        data = tuple(jnp.asarray(x, jnp.float64) for x in (lN, lD, lL, 1e-3))
        optax_fit(starts, data, args.max_iter)                # compile
        (theta, value, done), t_optax = best_of(lambda: optax_fit(starts, data, args.max_iter), args.repeats)
        theta, value, done = np.asarray(theta), np.asarray(value), np.asarray(done)
    finite = np.isfinite(value)
    best = int(np.argmin(np.where(finite, value, np.inf)))
    law_optax = ChinchillaLaw.from_log(*theta[best])
    row = lambda law: {k: round(float(getattr(law, k)), 4) for k in ("E", "A", "B", "alpha", "beta")}
    print(json.dumps({"fitter": "lm.scaling.optimize (hand-written, lanes)", "seconds_warm": round(t_ours, 3),
                      "objective": float(ours.objective), "law": row(ours.law),
                      "converged": f"{ours.n_converged}/{ours.n_starts}"}))
    print(json.dumps({"fitter": "optax.lbfgs under jax.vmap", "seconds_warm": round(t_optax, 3),
                      "objective": float(value[best]), "law": row(law_optax),
                      "converged": f"{int(done.sum())}/{len(done)}", "finite": int(finite.sum())}))
    print(json.dumps({"optax_over_hand_written_time": round(t_optax / t_ours, 2),
                      "objective_difference": float(value[best] - ours.objective)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
