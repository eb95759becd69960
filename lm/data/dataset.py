"""The `Dataset` interface every data source implements, and the token cache on disk they share.

A Dataset is one split of one source, tokenized and randomly addressable by row: `rows(indices,
length, seed)` is a pure function, so a batch is a pure function of (dataset, seed, step).
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np


class Dataset:
    """One split of one source, tokenized. Subclasses implement `rows`."""

    name: str
    split: str
    vocab_size: int               # ids are in [0, vocab_size)
    eos_id: int | None
    shuffled: bool                # whether the row order depends on the seed (train splits)

    @property
    def entropy_floor(self) -> float | None:
        """Bayes-optimal loss in nats/token (synthetic only; None for text)."""
        return None

    def rows(self, indices: np.ndarray, length: int, seed: int) -> np.ndarray:
        """int32 [len(indices), length]: rows `indices` of this split for a data seed."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        return self.name


def writable(folder: str) -> bool:
    """Whether `folder` exists (created if need be) and this process may write into it."""
    try:
        os.makedirs(folder, exist_ok=True)
        return os.access(folder, os.W_OK)
    except OSError:
        return False


def load_or_encode(path: str, workdir: str | None, encode: Callable[[], np.ndarray]) -> np.ndarray:
    """The array cached at `path` (or in `workdir`/tokens/, memory-mapped), else `encode()` saved to
    the first of the two places that is writable (atomically: a temporary file, then a rename)."""
    candidates = [path] + ([os.path.join(workdir, "tokens", os.path.basename(path))] if workdir else [])
    for candidate in candidates:
        if os.path.isfile(candidate):
            return np.load(candidate, mmap_mode="r")
    tokens = encode()
    for candidate in candidates:
        if writable(os.path.dirname(candidate)):
            tmp = candidate + f".tmp{os.getpid()}.npy"
            np.save(tmp, tokens)
            os.replace(tmp, candidate)
            break
    return tokens
