#!/usr/bin/env bash
# The GPU benchmarks of issue 27 (item 4), one prepared script: the 124M and 350M GPT shapes in
# bfloat16 with cuDNN flash attention (experiments.bench.step; MFU against the device's dense bf16
# datasheet peak, lm.flops.PEAK_FLOPS_BF16; target >= 45 % at 350M), then a slice of the default
# sweep through the real pool back-end (experiments.bench.sweep: share of worker time in steps).
#
#   bash experiments/bench/gpu.sh                 # on a machine with a GPU (jax with CUDA installed)
#   LM_GPU_SH_TINY=1 bash experiments/bench/gpu.sh   # the same commands at toy sizes, on any machine
#
# Environment: PYTHON (default: .venv/bin/python when present, else python3; it needs jax with
# CUDA, flax, optax, orbax: nothing is installed here, the device may have no network), OUT (where
# the JSON files go; default a new temporary folder), STEPS (timed steps per model, default 10),
# SWEEP_BUDGETS (default sweep budgets to run, default 2 of them: 1.6e10,4e10; 'none' skips the sweep).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
OUT=${OUT:-$(mktemp -d -t lm-gpu-XXXXXX)}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
TINY=${LM_GPU_SH_TINY:-0}
STEPS=${STEPS:-10}
SWEEP_BUDGETS=${SWEEP_BUDGETS:-1.6e10,4e10}

echo "# $(date -u +%FT%TZ) $(uptime)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader || true
backend=$("$PYTHON" -c 'import jax; print(jax.default_backend(), jax.__version__, jax.devices()[0].device_kind)')
echo "# jax backend, version, device: $backend"
if [[ "$TINY" == 1 ]]; then
  # Toy sizes, CPU allowed: checks that every command below parses and runs.
  M124=(--sizes 64 --layers 2 --seq 64 --batch 4 --vocab 256 --steps 2 --dtypes bfloat16 --attention xla)
  M350=(--sizes 128 --layers 2 --seq 64 --batch 4 --vocab 256 --steps 2 --dtypes bfloat16 --attention xla --peak-flops 1e11)
  M124+=(--peak-flops 1e11)
  SWEEP=(--budgets 1.6e10)
else
  if [[ "${backend%% *}" != gpu && "${backend%% *}" != cuda ]]; then
    echo "gpu.sh: jax's backend is '${backend%% *}', not a GPU; run it where jax sees a CUDA GPU, or set LM_GPU_SH_TINY=1 for the toy run" >&2
    exit 2
  fi
  # GPT-2 small (124M: d768 L12) and medium (350M: d1024 L24) at seq 1024, vocab 50304 (GPT-2's
  # 50257 padded to a multiple of 128). FLOPs count causal attention as half ('6n_attn_causal':
  # what a causal flash kernel executes, as MaxText reports MFU).
  M124=(--sizes 768 --layers 12 --seq 1024 --batch 16 --vocab 50304 --steps "$STEPS" --dtypes bfloat16 --attention cudnn --causal-half)
  M350=(--sizes 1024 --layers 24 --seq 1024 --batch 16 --vocab 50304 --steps "$STEPS" --dtypes bfloat16 --attention cudnn --causal-half)
  SWEEP=(--budgets "$SWEEP_BUDGETS" --warm)
fi

echo "## 124M bf16 cuDNN"
"$PYTHON" -m experiments.bench.step "${M124[@]}" --json "$OUT/step_124m.json"
echo "## 350M bf16 cuDNN"
"$PYTHON" -m experiments.bench.step "${M350[@]}" --json "$OUT/step_350m.json"
if [[ "$SWEEP_BUDGETS" != none ]]; then
  echo "## default sweep slice (share of worker time in steps)"
  "$PYTHON" -m experiments.bench.sweep "${SWEEP[@]}" --json "$OUT/sweep.json"
fi

"$PYTHON" - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
print("## summary (MFU = model FLOPs/s over the dense bf16 datasheet peak)")
for name in ("step_124m", "step_350m"):
    with open(os.path.join(out, name + ".json")) as f:
        run = json.load(f)
    for row in run["rows"]:
        mfu = row["flops_per_step"] / row["step_s"] / run["datasheet_peak"] if run["datasheet_peak"] else float("nan")
        print(f"{name}: d{row['d_model']} L{row['n_layers']} {row['dtype']} {row['attention']}: "
              f"{row['tokens_per_s']} tok/s, step {row['step_s']} s, MFU {mfu:.3f} "
              f"(peak {run['datasheet_peak']:.3g} FLOP/s, {run['convention']})"
              + ("  target >= 0.45" if name == "step_350m" else ""))
sweep = {}
if os.path.exists(os.path.join(out, "sweep.json")):
    with open(os.path.join(out, "sweep.json")) as f:
        sweep = json.load(f)
for label, found in sweep.items():
    s = found["summary"]
    print(f"sweep ({label} compilation cache): {s['runs']} runs, wall {s['wall_s']} s, "
          f"{100 * s['train_fraction']:.1f} % of worker time in steps")
EOF
echo "# files in $OUT; $(uptime)"
