"""The environment is locked: every installed package is pinned in constraints.txt at the version
installed, pyproject.toml's pins agree with the lock, and every package lm/ and experiments/
import is declared as a dependency (the lock is made by `make lock`)."""

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT.parent / "shared" / "stack-constraints.txt"


def canonical(name: str) -> str:
    """PEP 503 name: lower case, runs of -_. as one dash."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """name -> version of each `name==version` line (comments and blanks skipped)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"{path.name}: {line!r} is not pinned as name==version; regenerate with `make lock`"
            out[canonical(name.split("[")[0])] = version.strip()
    return out


def declared() -> dict[str, str]:
    """name -> version of every requirement in pyproject.toml (dependencies and all extras)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    out = {}
    for req in reqs:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^;\s]+)", req.strip())
        assert m, f"pyproject.toml: {req!r} is not pinned as name==version"
        out[canonical(m.group(1))] = m.group(3)
    return out


def installed() -> dict[str, str]:
    """name -> version of every distribution in this interpreter's environment, lm itself left out."""
    return {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()
            if canonical(d.metadata["Name"]) != "lm"}


def test_every_installed_package_is_locked_at_its_version():
    lock = pins(ROOT / "constraints.txt")
    have = installed()
    unpinned = sorted(f"{n}=={v}" for n, v in have.items() if n not in lock)
    wrong = sorted(f"{n}=={v} (lock {lock[n]})" for n, v in have.items() if n in lock and lock[n] != v)
    assert not unpinned and not wrong, (
        f"installed but not in constraints.txt: {unpinned}; installed at another version: {wrong}. "
        "Rebuild the venv from the lock (make clean-venv && make) or, after changing pyproject.toml, `make lock`")


def test_pyproject_pins_agree_with_the_lock():
    lock = pins(ROOT / "constraints.txt")
    bad = {n: (v, lock.get(n)) for n, v in declared().items() if lock.get(n) != v}
    assert not bad, f"pyproject.toml pins vs constraints.txt (declared, locked): {bad}; run `make lock`"


def test_lock_agrees_with_the_known_good_stack():
    if not STACK.exists():
        pytest.skip(f"{STACK} is absent (the machine's known-good freeze)")
    lock, stack = pins(ROOT / "constraints.txt"), pins(STACK)
    bad = {n: (lock[n], v) for n, v in stack.items() if n in lock and lock[n] != v}
    assert not bad, f"constraints.txt vs {STACK.name} (lock, known good): {bad}"


OWN_INTERPRETER = {"experiments/bench/_torch_worker.py": "torch_compare's own torch venv runs it"}
"""Scripts that the project never imports: another interpreter runs them, with its own packages."""


def imported_modules() -> set[str]:
    """Top-level names of every module imported anywhere in lm/ and experiments/ (OWN_INTERPRETER aside)."""
    names = set()
    for path in [*ROOT.glob("lm/**/*.py"), *ROOT.glob("experiments/**/*.py")]:
        if path.relative_to(ROOT).as_posix() in OWN_INTERPRETER:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"lm", "experiments", "__future__"}


def test_every_imported_package_is_declared():
    """An import that works only because another package happens to pull it in is a missing dependency."""
    providers = metadata.packages_distributions()
    deps = declared()
    missing = {}
    for module in sorted(imported_modules()):
        dists = {canonical(d) for d in providers.get(module, [])} or {canonical(module)}  # an extra not installed
        if not dists & deps.keys():
            missing[module] = sorted(dists)
    assert not missing, f"imported but not declared in pyproject.toml (module: distribution): {missing}"
