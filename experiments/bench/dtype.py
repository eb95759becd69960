"""Which compute dtype to set on this machine: the table behind compute_dtype='auto' beside a timing probe.

`compute_dtype="auto"` is decided by a table of the platform and the CPU's flags (lm.precision,
deterministic). This benchmark runs, on request, the timing probe a run never runs (forward +
backward of one MLP block at the run's shapes in both dtypes, alternated, best of 3) and prints its
recommendation beside the table's. Its answer depends on the load at that moment: to use it, set
`model.compute_dtype` to the recommended dtype explicitly; a disagreement with the table on a quiet
machine is worth a new row of lm.precision.CPU_TABLE (with its measurement in BENCHMARKS.md).

    python -m experiments.bench.dtype                          # d_model 64, 256, 512, batch 16 x 256
    python -m experiments.bench.dtype --sizes 8,80 --tokens 512  # the default sweep's shapes
"""

from __future__ import annotations

import argparse
import json
import os

import jax

from lm import precision


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,256,512", help="d_model values, comma separated")
    parser.add_argument("--tokens", type=int, default=16 * 256, help="tokens per step (batch x seq)")
    args = parser.parse_args(argv)
    platform = jax.default_backend()
    print(json.dumps({"platform": platform, "load": os.getloadavg(),
                      "cpu_table_flags": sorted(precision.cpu_flags() & precision.TABLE_FLAGS)}))
    for d in (int(s) for s in args.sizes.split(",")):
        table = precision.table_choice(platform, d)
        probe = precision.probe(args.tokens, d, 4 * d, platform)
        t = probe.probe
        print(json.dumps({"d_model": d, "table": table.dtype, "rule": (table.cpu or {}).get("rule"),
                          "probe": probe.dtype, "probe_f32_ms": round(t["float32_s"] * 1e3, 2),
                          "probe_bf16_ms": round(t["bfloat16_s"] * 1e3, 2), "rows": t["rows"]}), flush=True)


if __name__ == "__main__":
    main()
