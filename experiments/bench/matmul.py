"""bfloat16 vs float32 matmuls on XLA CPU, per library path, in one process: which kernel XLA emits.

Each case is (path, form, layout, shape): `path` is a set of per-compilation options (no process
restart: `jax.jit(..., compiler_options=...)`): XLA's defaults (YNNPACK dot fusions), YNNPACK for
single dots, no library (XLA's own dot emitter), XNNPACK, oneDNN; `form` is f32 x f32 -> f32,
bf16 x bf16 -> f32 (`preferred_element_type`), bf16 x bf16 -> bf16; `layout` NN ([M,K] @ [K,N]),
NT ([M,K] @ [N,K]^T) or TN ([K,M]^T @ [K,N]); `shape` MxKxN. Rounds alternate over every case; the
figure per case is its best GFLOP/s, and per (path, layout, shape) the bf16 rate over the f32 rate
of the same round (median over rounds: paired, so a shared machine's load moves both alike).
`kernel` says what the compiled HLO runs: 'ynn' / 'xnn' / 'onednn' (a library fusion or custom
call) or 'xla' (XLA's own dot), '+upcast' when the bf16 operands are converted to float32 first.

    python -m experiments.bench.matmul                                  # 2048^3 and a d512 MLP dot
    python -m experiments.bench.matmul --paths xla,no_lib --shapes 4096x256x1024 --layouts NN,NT,TN
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from lm.precision import TABLE_FLAGS, cpu_flags

_NO_YNN = {"xla_cpu_experimental_ynn_fusion_type": ""}
PATHS = {
    "xla": {},                                     # XLA's defaults: YNNPACK dot (+eltwise) fusions
    "ynn_dot": {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"},
    "no_lib": _NO_YNN,                             # XLA's own dot emitter (what lm's train step uses)
    "xnn": {**_NO_YNN, "xla_cpu_use_xnnpack": True, "xla_cpu_experimental_xnn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"},
    "onednn": {**_NO_YNN, "xla_cpu_use_onednn": True, "xla_cpu_experimental_onednn_fusion_type": "LIBRARY_FUSION_TYPE_DOT"},
}
"""Per-compilation XLA options of each path."""
FORMS = {"f32": (jnp.float32, None), "bf16_f32acc": (jnp.bfloat16, jnp.float32), "bf16": (jnp.bfloat16, None)}
"""Operand dtype and preferred_element_type of each form."""
DIMS = {"NN": ((1,), (0,)), "NT": ((1,), (1,)), "TN": ((0,), (0,))}
"""Contracting dims (lhs, rhs) of each layout."""


def operands(layout: str, m: int, k: int, n: int, dtype) -> tuple[jax.Array, jax.Array]:
    """The two operands of an [M,K] x [K,N] product stored in `layout`."""
    rng = np.random.default_rng(0)
    lhs = (m, k) if layout[0] == "N" else (k, m)
    rhs = (k, n) if layout[1] == "N" else (n, k)
    return tuple(jnp.asarray(rng.standard_normal(s, np.float32), dtype) for s in (lhs, rhs))


def kernel_of(hlo: str, form: str) -> str:
    """Which kernel an optimized HLO module runs its dot with (see the module docstring)."""
    kind = next((name for name in ("ynn", "xnn", "onednn") if re.search(rf"{name}[_$a-z]*fusion|__{name}", hlo)),
                "xla")
    upcast = form != "f32" and re.search(r"= f32\[[\d,]+\]\{[\d,]+\} convert\(%param", hlo)
    return kind + ("+upcast" if upcast else "")


def build(path: str, form: str, layout: str, shape: tuple[int, int, int]):
    """(compiled product, its operands, kernel) of one case."""
    dtype, preferred = FORMS[form]
    a, b = operands(layout, *shape, dtype)
    dims = (DIMS[layout], ((), ()))
    fn = jax.jit(lambda x, y: jax.lax.dot_general(x, y, dims, preferred_element_type=preferred),
                 compiler_options=PATHS[path] or None)
    compiled = fn.lower(a, b).compile()
    jax.block_until_ready(compiled(a, b))
    return compiled, (a, b), kernel_of(compiled.as_text(), form)


def timed(compiled, args, repeats: int) -> float:
    """Best seconds of `repeats` calls."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--forms", default=",".join(FORMS))
    parser.add_argument("--layouts", default="NN,NT")
    parser.add_argument("--shapes", default="2048x2048x2048,4096x512x2048", help="MxKxN, comma separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="calls per case per round (best)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    cases = {}
    for path in args.paths.split(","):
        for form in args.forms.split(","):
            for layout in args.layouts.split(","):
                for shape in shapes:
                    try:
                        cases[(path, form, layout, shape)] = build(path, form, layout, shape)
                    except Exception as e:                      # an option this jaxlib lacks
                        print(json.dumps({"path": path, "form": form, "error": str(e).splitlines()[0][:160]}))
    print(json.dumps({"jax": jax.__version__, "devices": str(jax.devices()), "load_before": os.getloadavg(),
                      "cpu_flags": sorted(cpu_flags() & (TABLE_FLAGS | {"avx512_fp16", "amx_tile", "fma"}))}))
    rounds = [{key: timed(c, a, args.repeats) for key, (c, a, _) in cases.items()} for _ in range(args.rounds)]
    rows = []
    for key, (_, _, kernel) in cases.items():
        path, form, layout, (m, k, n) = key
        f32_key = (path, "f32", layout, (m, k, n))
        ratios = [r[f32_key] / r[key] for r in rounds if f32_key in r]
        rows.append({"path": path, "form": form, "layout": layout, "shape": f"{m}x{k}x{n}", "kernel": kernel,
                     "gflops": round(2 * m * k * n / min(r[key] for r in rounds) / 1e9, 1),
                     "vs_f32_same_path": round(statistics.median(ratios), 3) if ratios else None})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"load_after": os.getloadavg()}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
