"""Orbax checkpoints of a run that prove their integrity: train state (params, optimizer state,
step), data position, config, and a checksum manifest.

Orbax writes each step into a temporary folder and renames it when complete, so a crash (even
`kill -9`) mid-save leaves the previous checkpoint intact and the torn one is ignored. Once the
step's folder is final, a small manifest (`lm_manifest.json`: size and SHA-256 of every file in
it) is written beside its items; that seals the checkpoint. Restore verifies the manifest, then
loads; a checkpoint that fails either (flipped bytes, a truncated or deleted file, a missing
manifest) is reported in one line, moved aside to `<run>/corrupt_checkpoints/` (never deleted),
and the next older one is tried. Restore takes the abstract state with its shardings, so arrays
come back already placed on the mesh.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from typing import Any, Callable

import orbax.checkpoint as ocp
from etils import epath

from lm import sigint

MANIFEST = "lm_manifest.json"
CORRUPT_DIR = "corrupt_checkpoints"
RESTARTED_FILE = "restarted.json"
"""In CORRUPT_DIR: the damaged checkpoints a `--restart` has accepted (they no longer stop a run)."""
UNSEALED = "never sealed"


class CorruptCheckpoint(ValueError):
    """A checkpoint failed verification or could not be loaded (the message is the one-line report)."""


def resolve(directory: str | os.PathLike) -> epath.Path:
    """A checkpoint folder as an epath.Path: local paths made absolute, URLs (gs://...) kept as they are."""
    text = os.fspath(directory)
    return epath.Path(text if "://" in text else os.path.abspath(text))


# ---------------------------------------------------------------------------------------------
# The manifest: what a sealed checkpoint holds.

def _files(step_dir: str | epath.Path) -> list[str]:
    """Every file under `step_dir` (relative paths, sorted), the manifest excepted."""
    step_dir = resolve(step_dir)
    out = []
    for root, _, names in step_dir.walk():
        for name in names:
            rel = (root / name).relative_to(step_dir).as_posix()
            if rel != MANIFEST:
                out.append(rel)
    return sorted(out)


def _sha256(path: epath.Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _size(path: epath.Path) -> int:
    return int(path.stat().length)


def write_manifest(step_dir: str | epath.Path) -> None:
    """Seal a final checkpoint folder: {relative path: [size, sha256]} of all its files."""
    from lm.io import atomic_write_json, dumps_strict
    step_dir = resolve(step_dir)
    files = {rel: [_size(step_dir / rel), _sha256(step_dir / rel)] for rel in _files(step_dir)}
    manifest = {"format": 1, "files": files}
    if "://" in str(step_dir):         # an object store: one object write is atomic
        (step_dir / MANIFEST).write_text(dumps_strict(manifest, indent=2, sort_keys=True) + "\n")
    else:
        atomic_write_json(str(step_dir / MANIFEST), manifest)


def verify(step_dir: str | epath.Path) -> str | None:
    """None when every file the manifest lists is there with its size and checksum; else what is
    wrong, naming the file."""
    step_dir = resolve(step_dir)
    if not step_dir.is_dir():
        return "the checkpoint folder is gone"
    try:
        files = json.loads((step_dir / MANIFEST).read_text())["files"]
    except FileNotFoundError:
        return f"{MANIFEST}: missing ({UNSEALED}: the run was stopped while saving it, or the manifest was deleted)"
    except (ValueError, KeyError, TypeError) as e:
        return f"{MANIFEST}: unreadable ({type(e).__name__})"
    if not files:
        return f"{MANIFEST}: lists no files"
    for rel, (size, digest) in sorted(files.items()):
        full = step_dir / rel
        if not full.is_file():
            return f"{rel}: missing"
        actual = _size(full)
        if actual != size:
            return f"{rel}: {actual} bytes, the manifest says {size} (truncated or overwritten)"
        if _sha256(full) != digest:
            return f"{rel}: checksum mismatch (bytes changed since it was written)"
    return None


def move_aside(step_dir: str | epath.Path) -> str:
    """Move a bad checkpoint folder to `<run>/corrupt_checkpoints/<step>-<time>`; returns the new path."""
    step_dir = resolve(step_dir)
    dest = step_dir.parent.parent / CORRUPT_DIR / f"{step_dir.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    step_dir.rename(dest)
    return str(dest)


def newest_meta(directory: str | os.PathLike) -> tuple[int, dict] | None:
    """(step, meta) of the newest checkpoint in `directory` whose metadata (config, step) reads as
    JSON, or None; read-only, nothing verified or moved (what a run folder without config.json
    was trained with)."""
    path = resolve(directory)
    if not path.is_dir():
        return None
    for step in sorted((int(p.name) for p in path.iterdir() if p.name.isdigit()), reverse=True):
        try:
            meta = json.loads((path / str(step) / "meta" / "metadata").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and isinstance(meta.get("config"), dict):
            return step, meta
    return None


def _one_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    return f"{type(e).__name__}: {text[:200]}"


# ---------------------------------------------------------------------------------------------

class Checkpoints:
    """The checkpoints of one run directory: `<out_dir>/checkpoints/<step>/{state,data,meta,lm_manifest.json}`.

    read_only: a reader (lm-sample, another run's init_from) that never writes, seals or moves."""

    def __init__(self, directory: str, keep: int = 2, async_save: bool = True, read_only: bool = False):
        self.path = resolve(directory)
        self.directory = str(self.path)
        self.read_only = read_only
        if read_only:
            import logging
            logging.getLogger("absl").setLevel(logging.ERROR)   # read_only options warn about themselves
            options = ocp.CheckpointManagerOptions(read_only=True)
        else:
            options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                   enable_async_checkpointing=async_save,
                                                   cleanup_tmp_directories=True)
        self.manager = ocp.CheckpointManager(self.path, options=options,
                                             item_names=("state", "data", "meta"))
        self._sealers: list[threading.Thread] = []
        self._seal_errors: list[Exception] = []

    def step_dir(self, step: int) -> epath.Path:
        return self.path / str(step)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any, data_state: dict, meta: dict) -> None:
        """Save (asynchronously where enabled); `data_state` and `meta` must be JSON-able. The
        manifest is written by a helper thread as soon as orbax has renamed the step's folder.
        A Ctrl-C that arrives meanwhile is raised once the save is handed over (`lm.sigint`)."""
        import jax
        with sigint.deferred():
            self.manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=ocp.args.JsonSave(data_state),
                meta=ocp.args.JsonSave(meta)), force=True)
            if jax.process_index() == 0:
                sealer = threading.Thread(target=self._seal_when_final, args=(step,), daemon=True)
                sealer.start()
                self._sealers = [t for t in self._sealers if t.is_alive()] + [sealer]

    def _seal_when_final(self, step: int) -> None:
        folder = self.step_dir(step)
        while not folder.is_dir():                # the rename is orbax's last act on the folder
            if not self.manager.is_saving_in_progress() and not folder.is_dir():
                return                            # the save failed; orbax reports it
            time.sleep(0.005)
        try:
            write_manifest(folder)
        except Exception as e:  # noqa: BLE001 - raised by wait(): the checkpoint stays unsealed (set aside later)
            self._seal_errors.append(e)

    def problem(self, step: int) -> str | None:
        """None for a sealed, intact checkpoint; else what is wrong (see `verify`)."""
        return verify(self.step_dir(step))

    def restore_unverified(self, abstract_state: Any, step: int) -> tuple[Any, dict, dict]:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=ocp.args.JsonRestore(),
            meta=ocp.args.JsonRestore()))
        return restored["state"], restored["data"], restored["meta"]

    def load(self, step: int, loader: Callable[[int], Any]) -> Any:
        """`loader(step)` after the checkpoint verified; CorruptCheckpoint (the one-line report)
        when it fails verification or loading."""
        from lm.distributed import broadcast_json
        import jax
        problem = broadcast_json(self.problem(step) if jax.process_index() == 0 else None)  # one verdict
        if problem is None:
            try:
                return loader(step)
            except Exception as e:  # noqa: BLE001 - any failure to load is a corrupt checkpoint
                problem = f"could not be loaded ({_one_line(e)})"
        raise CorruptCheckpoint(f"checkpoint step {step} in {self.directory} is corrupt: {problem}")

    def restore_newest_good(self, loader: Callable[[int], Any],
                            report: Callable[[str], None]) -> tuple[int, Any] | None:
        """(step, loader(step)) for the newest checkpoint that verifies and loads; each bad one
        on the way is reported in one line and (unless read_only) moved aside. None when none is
        left (a checkpoint-free folder included). Process 0's listing decides; a process that
        sees the folder differently (not one shared filesystem) stops every process with one error."""
        import jax
        from lm.distributed import broadcast_json, check_all_agree
        steps = broadcast_json(self.all_steps())
        check_all_agree(self.all_steps() == steps,
                        f"the checkpoints in {self.directory} differ from the steps {steps} process 0 sees "
                        f"(this process sees {self.all_steps()})",
                        "put the run folder on a filesystem every host shares (NFS, Lustre, a mounted bucket, ...)")
        for step in reversed(steps):
            try:
                return step, self.load(step, loader)
            except CorruptCheckpoint as e:
                message = str(e)
                if UNSEALED in message:      # a kill while saving: normal, the previous one is used
                    message = (f"checkpoint step {step} in {self.directory} was {UNSEALED} (the run was "
                               "stopped while saving it); set aside, resuming from the previous one")
                if not self.read_only and jax.process_index() == 0:
                    message += f"; moved aside to {move_aside(self.step_dir(step))}"
                    self.manager.reload()
                report(message)
        return None

    def damaged_steps(self) -> list[str]:
        """The sealed checkpoints of this run moved aside as damaged (`corrupt_checkpoints/<step>-<time>`)
        that no `--restart` has accepted yet: while there are some and no intact checkpoint, the run
        must not silently start over. Unsealed ones (a kill while saving) are not counted."""
        folder = self.path.parent / CORRUPT_DIR
        if not folder.is_dir():
            return []
        accepted = set(_accepted(folder))
        return sorted(p.name for p in folder.iterdir()
                      if p.is_dir() and (p / MANIFEST).exists() and p.name not in accepted)

    def accept_damaged(self) -> None:
        """`--restart`: the damaged checkpoints moved aside so far no longer stop this run."""
        from lm.io import atomic_write_json
        folder = self.path.parent / CORRUPT_DIR
        if folder.is_dir():
            names = sorted(set(_accepted(folder)) | set(self.damaged_steps()))
            atomic_write_json(str(folder / RESTARTED_FILE), {"accepted": names})

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict, dict]:
        """(state, data_state, meta) at `step` (default: latest), verified. `abstract_state` holds
        jax.ShapeDtypeStruct leaves with shardings, so arrays are restored onto the mesh."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}; train first or check the path")
        return self.load(step, lambda s: self.restore_unverified(abstract_state, s))

    def restore_meta(self, step: int | None = None) -> dict:
        """Only the JSON metadata (config, step) of a checkpoint: no arrays are read."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def wait(self) -> None:
        """Until every save is written and sealed; a save or seal that failed raises here. A
        Ctrl-C that arrives meanwhile is raised after the wait."""
        with sigint.deferred():
            self.manager.wait_until_finished()
            for sealer in self._sealers:
                sealer.join()
        if self._seal_errors:
            raise self._seal_errors.pop(0)

    def close(self) -> None:
        with sigint.deferred():
            self.wait()
            self.manager.close()


def _accepted(folder: epath.Path) -> list[str]:
    try:
        return list(json.loads((folder / RESTARTED_FILE).read_text())["accepted"])
    except (OSError, ValueError, KeyError, TypeError):
        return []

