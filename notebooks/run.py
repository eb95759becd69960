"""Run every notebook headless (`make notebooks-run`): python notebooks/run.py [NAME ...] [--out DIR].

Each notebook runs top to bottom in notebooks/ with its defaults; the executed copy (outputs
included) and its figures go under --out (default build/notebooks/, ignored by git), never
beside the notebook. A notebook whose input is absent is skipped with the reason and the way to
make it; a notebook that fails stops the run with exit code 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

NEEDS = {
    "chinchilla_reproduction": (ROOT.parent / "shared" / "data" / "open_athena_isoflops.csv",
                                "the public data in ../shared/data (README, 'Notebooks')"),
    "data_constrained": (ROOT.parent / "shared" / "data" / "muennighoff2023_datablations_runs.csv",
                         "the public data in ../shared/data (README, 'Notebooks')"),
    "scaling_analysis": (ROOT / "sweeps" / "default" / "report.json", "`make sweep` (a finished sweep writes it)"),
    "model_inspection": (ROOT / "runs" / "default" / "config.json", "`make train`"),
}
"""Notebook -> (the input its defaults read, how to make it)."""


def run(name: str, out: Path) -> None:
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(HERE / f"{name}.ipynb", as_version=4)
    os.environ["LM_NB_OUT"] = str(out / name)  # figures: under out, not in notebooks/
    NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    nbformat.write(nb, out / f"{name}.ipynb")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help=f"notebooks to run (default: all of {', '.join(NEEDS)})")
    p.add_argument("--out", default=str(ROOT / "build" / "notebooks"), help="executed copies and figures")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n.removesuffix(".ipynb") not in NEEDS]
    if unknown:
        p.error(f"unknown notebook(s) {unknown}; choose from {', '.join(NEEDS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.pop("XLA_FLAGS", None)  # the kernels need no simulated devices
    for name in [n.removesuffix(".ipynb") for n in args.names] or list(NEEDS):
        need, how = NEEDS[name]
        if not need.exists():
            print(f"SKIP {name}: {need} is absent; make it with {how}", flush=True)
            continue
        print(f"RUN  {name} ...", flush=True)
        try:
            run(name, out)
        except Exception as e:  # nbclient's CellExecutionError names the cell and the traceback
            print(f"FAIL {name}: {e}", file=sys.stderr)
            return 1
        print(f"OK   {name} -> {out / name}.ipynb", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
