"""A full disk stops lm-train with one line naming the path and the space needed (exit 2), and the
rerun once space is freed ends bit-identical to an uninterrupted run (issue 25 item 6).

As root the run folder is a real tmpfs too small for the run (ENOSPC from orbax's TensorStore
writer at the first checkpoint, or from a later one); elsewhere those tests skip and the OSError
(errno 28) is raised by the metrics file's own append (the Python write path)."""

import dataclasses
import errno
import os
import subprocess

import pytest

from lm.config_io import save_json
from lm.train import main, train
from test_checkpoint_integrity import compile_once, rows_without_timing, tiny  # noqa: F401


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference") / "run"
    assert train(tiny(folder))["status"] == "completed"
    return str(folder)


def _run(tmp_path, run_dir, capsys) -> tuple[int, str]:
    config = tmp_path / f"config-{len(os.listdir(tmp_path))}.json"
    save_json(tiny(run_dir), str(config))
    rc = main(["--config", str(config)])
    return rc, capsys.readouterr().err.strip()


def _same_as_reference(reference, run_dir):
    import json
    assert rows_without_timing(run_dir) == rows_without_timing(reference)
    assert json.load(open(os.path.join(run_dir, "result.json")))["eval_loss"] == \
        json.load(open(os.path.join(reference, "result.json")))["eval_loss"]


@pytest.fixture
def tmpfs(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root (the injected-error test covers the rest)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("size", ["96k", "900k"])     # full at the first checkpoint; at a later one
def test_a_full_disk_is_one_line_and_the_rerun_is_bit_identical(reference, tmp_path, tmpfs, capsys, size):
    subprocess.run(["mount", "-o", f"remount,size={size}", str(tmpfs)], check=True)
    run_dir = str(tmpfs / "run")
    rc, err = _run(tmp_path, run_dir, capsys)
    assert rc == 2 and "\n" not in err, err
    assert err.startswith(f"lm-train: error: disk full writing {run_dir}") and "free on the filesystem" in err
    assert "a checkpoint of this run needs about" in err and "rerun the same command" in err
    subprocess.run(["mount", "-o", "remount,size=64m", str(tmpfs)], check=True)     # space freed
    rc, err = _run(tmp_path, run_dir, capsys)
    assert rc == 0, err
    _same_as_reference(reference, run_dir)


def test_a_full_disk_on_a_python_write_is_one_line_too(reference, tmp_path, capsys, monkeypatch):
    from lm import metrics
    real, calls = metrics.append_jsonl, []

    def append(path, row):
        calls.append(row)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, row)

    monkeypatch.setattr(metrics, "append_jsonl", append)
    run_dir = str(tmp_path / "run")
    rc, err = _run(tmp_path, run_dir, capsys)
    assert rc == 2 and "\n" not in err, err
    assert err.startswith(f"lm-train: error: disk full writing {os.path.join(run_dir, 'metrics.jsonl')}: ")
    monkeypatch.undo()
    rc, err = _run(tmp_path, run_dir, capsys)
    assert rc == 0, err
    _same_as_reference(reference, run_dir)
