"""A real-text corpus that needs no download: the Python source of pinned, pure-Python packages.

Every machine where the project's setup ran has these files (the packages are in constraints.txt)
and no one in this project wrote them. A pure-Python wheel (tag `py3-none-any`) ships the same bytes
on every platform, so two machines with the same pins train on the same text; the recipe refuses
packages whose wheel is platform-specific.

    corpus:python/jax,flax,optax            every .py file of those distributions
    corpus:python/jax,flax,optax/4000000    the same, capped at ~4 MB of training text

Recipe (deterministic): the distributions' installed `.py` files (from their RECORD), ordered by the
SHA-1 of "<dist>/<path>" (a fixed pseudo-random order that mixes the packages); a file is held out
for evaluation when that hash's first byte is < 13 (about 5 % of files, whole files: the held-out text
is code the model never saw a line of); each split's files are taken in that order until its cap
(training: MAX_BYTES; held out: MAX_BYTES / 19). The
chosen files are copied into `<root>/<name>-<content hash>/{train,validation}/<dist>/<path>`, which
the local-text TFDS builder (lm.data.tfds_text, split folders) reads as its two splits.

`materialize(source, root) -> Corpus` builds (once, atomically) and describes the corpus; its
`recipe()` (distributions with versions, rule, cap, bytes, files, SHA-256 of the bytes) goes into a
sweep's record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import tempfile
from typing import Any, Sequence

PREFIX = "corpus:"
KIND = "python"
HELD_OUT_BYTE = 13
"""A file is held out when the first byte of its SHA-1 key is below this (13/256 ~ 5 %)."""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What `corpus:python/DISTS[/MAX_BYTES]` names."""

    distributions: tuple[str, ...]
    max_train_bytes: int | None = None

    @property
    def source(self) -> str:
        cap = f"/{self.max_train_bytes}" if self.max_train_bytes else ""
        return f"{PREFIX}{KIND}/{','.join(self.distributions)}{cap}"


@dataclasses.dataclass(frozen=True)
class Corpus:
    """A materialized corpus: its folder, the files of each split and the hash of their bytes."""

    recipe: Recipe
    folder: str
    versions: tuple[tuple[str, str], ...]
    """(distribution, installed version) of each distribution read."""
    train_files: tuple[str, ...]
    validation_files: tuple[str, ...]
    train_bytes: int
    validation_bytes: int
    sha256: str
    """SHA-256 over (split, relative path, bytes) of every chosen file in order."""

    @property
    def glob(self) -> str:
        """The local-text glob that reads this corpus (split folders train/ and validation/)."""
        return os.path.join(self.folder, "**", "*.py")

    def record(self) -> dict[str, Any]:
        """The corpus recipe and content hash, for a sweep's record."""
        return {"source": self.recipe.source, "versions": dict(self.versions),
                "rule": f"*.py of the distributions' RECORD, ordered by sha1('<dist>/<path>'); held out when "
                        f"its first byte < {HELD_OUT_BYTE}; each split in that order up to its cap (held out: cap / 19)",
                "max_train_bytes": self.recipe.max_train_bytes, "train_files": len(self.train_files),
                "validation_files": len(self.validation_files), "train_bytes": self.train_bytes,
                "validation_bytes": self.validation_bytes, "sha256": self.sha256, "folder": self.folder}


def is_corpus_source(source: str) -> bool:
    return source.startswith(PREFIX)


def parse(source: str) -> Recipe:
    """`corpus:python/jax,flax[/MAX_BYTES]` -> Recipe; a clear error for anything else."""
    m = re.fullmatch(r"corpus:python/([A-Za-z0-9_.\-]+(?:,[A-Za-z0-9_.\-]+)*)(?:/([0-9]+))?", source)
    if not m:
        raise ValueError(f"data source {source!r} is not corpus:python/DIST[,DIST...][/MAX_BYTES] "
                         "(e.g. corpus:python/jax,flax,optax/4000000)")
    dists = tuple(m.group(1).split(","))
    if len(set(dists)) != len(dists):
        raise ValueError(f"data source {source!r} names a distribution twice; list each once")
    cap = int(m.group(2)) if m.group(2) else None
    if cap is not None and cap < 1000:
        raise ValueError(f"data source {source!r}: MAX_BYTES={cap} is too small; give at least 1000 bytes")
    return Recipe(dists, cap)


def _key(dist: str, path: str) -> bytes:
    return hashlib.sha1(f"{dist}/{path}".encode()).digest()


def _distribution_files(name: str) -> tuple[str, list[tuple[str, str]]]:
    """(version, [(relative path, absolute path)]) of a pure-Python distribution's installed .py files."""
    import importlib.metadata as md

    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        raise ValueError(f"corpus: distribution {name!r} is not installed; pick pinned packages of "
                         "constraints.txt (e.g. jax, flax, optax) or run the README's setup") from None
    tags = [line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")]
    if not tags or not all(t.endswith("-none-any") for t in tags):
        raise ValueError(f"corpus: {name} {dist.version} is not a pure-Python wheel (tags {tags or 'unknown'}): its "
                         "files may differ between platforms; pick py3-none-any packages such as jax, flax, optax")
    files = sorted((str(f), str(f.locate())) for f in (dist.files or []) if str(f).endswith(".py")
                   and ".dist-info" not in str(f) and not str(f).startswith(".."))
    if not files:
        raise ValueError(f"corpus: {name} {dist.version} installs no .py files; pick another distribution")
    return dist.version, files


def choose(recipe: Recipe) -> tuple[tuple[tuple[str, str], ...], list[tuple[str, str, str, bytes]]]:
    """((dist, version) pairs, [(split, dist, relative path, bytes)]) in the recipe's order."""
    versions, entries = [], []
    for name in recipe.distributions:
        version, files = _distribution_files(name)
        versions.append((name, version))
        entries += [(_key(name, rel), name, rel, path) for rel, path in files]
    cap = {"train": recipe.max_train_bytes, "validation": recipe.max_train_bytes and recipe.max_train_bytes // 19}
    chosen, taken = [], {"train": 0, "validation": 0}
    for key, name, rel, path in sorted(entries):
        split = "validation" if key[0] < HELD_OUT_BYTE else "train"
        if cap[split] is None or taken[split] < cap[split]:
            with open(path, "rb") as f:
                data = f.read()
            chosen.append((split, name, rel, data))
            taken[split] += len(data)
    for split in ("train", "validation"):
        if not any(c[0] == split and c[3].strip() for c in chosen):
            raise ValueError(f"corpus {recipe.source}: the {split} split is empty; add distributions or raise the cap")
    return tuple(versions), chosen


def content_hash(chosen: Sequence[tuple[str, str, str, bytes]]) -> str:
    h = hashlib.sha256()
    for split, name, rel, data in chosen:
        h.update(f"{split}\0{name}/{rel}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def materialize(source: str, root: str) -> Corpus:
    """Choose the files, hash them and copy them (once; atomically) under `root`."""
    recipe = parse(source)
    versions, chosen = choose(recipe)
    digest = content_hash(chosen)
    folder = os.path.join(os.path.abspath(os.path.expanduser(root)), f"python-{digest[:16]}")
    if not os.path.isdir(folder):
        os.makedirs(root, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-corpus-", dir=os.path.dirname(folder))
        try:
            for split, name, rel, data in chosen:
                path = os.path.join(tmp, split, name, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(data)
            os.rename(tmp, folder)          # another process may have won the race: then use its copy
        except OSError:
            if not os.path.isdir(folder):
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    split_files = {s: tuple(os.path.join(folder, s, n, r) for s2, n, r, _ in chosen if s2 == s)
                   for s in ("train", "validation")}
    sizes = {s: sum(len(c[3]) for c in chosen if c[0] == s) for s in ("train", "validation")}
    return Corpus(recipe, folder, versions, split_files["train"], split_files["validation"],
                  sizes["train"], sizes["validation"], digest)
