"""XLA CPU flags, one at a time: the training step with each flag against the same step without it.

XLA reads its flags when the backend starts, so each measurement is a fresh process running
`experiments.bench.step` (one size, one dtype); the variants alternate (baseline, flag 1, baseline,
flag 2, ...) and each flag is compared with the baseline runs around it, so slow drifts of a
shared machine's load cancel. The figure per flag: its step tokens/s over the mean of the
neighbouring baselines' (> 1: faster), and both processes' fractions of their own f32 matmul rate.
Flags are added to whatever XLA_FLAGS the caller set; lm.xla_env's pinned flags are left out
(LM_NO_PINNED_XLA_FLAGS=1), so the baseline is XLA's defaults.

    python -m experiments.bench.flags                       # the candidate list below, d256 float32
    python -m experiments.bench.flags --sizes 512 --flags=--xla_cpu_enable_fast_math=true
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CANDIDATES = (                         # the CPU flags of jaxlib 0.10.2 that could move a step
    "--xla_cpu_enable_fast_math=true",
    "--xla_cpu_prefer_vector_width=512",
    "--xla_cpu_experimental_ynn_fusion_type=dot,eltwise,reduce",
    "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "--xla_cpu_use_onednn=true",
    "--xla_cpu_opt_preset=CPU_OPT_PRESET_FAST_RUNTIME",
)


def run_bench(flag: str | None, args: argparse.Namespace) -> dict:
    """One `experiments.bench.step` process with `flag` added to XLA_FLAGS: its (only) row."""
    env = dict(os.environ, LM_NO_PINNED_XLA_FLAGS="1")
    env["XLA_FLAGS"] = " ".join(f for f in (env.get("XLA_FLAGS", ""), flag or "") if f)
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, "-m", "experiments.bench.step", "--sizes", args.sizes, "--dtypes", args.dtype,
               "--layers", str(args.layers), "--steps", str(args.steps), "--json", out.name]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            return {"flag": flag, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
        with open(out.name) as f:
            rows = json.load(f)["rows"]
    return {"flag": flag, "tokens_per_s": rows[0]["tokens_per_s"], "frac": rows[0]["frac_of_best_f32_matmul"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flags", help="comma-separated flags to try (default: CANDIDATES)")
    parser.add_argument("--sizes", default="256", help="d_model (one)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    flags = args.flags.split(",") if args.flags else list(CANDIDATES)
    base = [run_bench(None, args)]
    print(json.dumps(base[0]), flush=True)
    rows = []
    for flag in flags:
        row = run_bench(flag, args)
        base.append(run_bench(None, args))
        if "error" not in row:
            ref = (base[-2]["tokens_per_s"] + base[-1]["tokens_per_s"]) / 2
            row.update(vs_baseline=round(row["tokens_per_s"] / ref, 3),
                       baseline_frac=round((base[-2]["frac"] + base[-1]["frac"]) / 2, 3))
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"# d{args.sizes} L{args.layers} {args.dtype}, XLA_FLAGS base={os.environ.get('XLA_FLAGS', '')!r}; "
          f"baseline tokens/s {[b['tokens_per_s'] for b in base]}")
    for row in rows:
        print(f"#   {row['flag']:<75} " + (f"x{row['vs_baseline']:.3f} (frac {row['frac']:.3f} vs {row['baseline_frac']:.3f})"
                                          if "error" not in row else row["error"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"baselines": base, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
