"""`python -m experiments.bench`: list the benchmarks with the first line of each one's docstring."""

from __future__ import annotations

import ast
from pathlib import Path


def benchmarks() -> dict[str, str]:
    """{module name: first docstring line} for every benchmark module in this package."""
    here = Path(__file__).parent
    out = {}
    for path in sorted(here.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        out[path.stem] = doc.splitlines()[0] if doc else ""
    return out


def main() -> None:
    print("Benchmarks (run one with: python -m experiments.bench.NAME --help):")
    for name, line in benchmarks().items():
        print(f"  {name:13s} {line}")


if __name__ == "__main__":
    main()
