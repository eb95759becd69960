"""A sweep folder's records: a damaged sweep.json is one line naming the file and the fix; a fit
never writes into a folder another process holds; the files are as readable as the umask says
(issue 25 items 7 and 8, issue 24 item 2)."""

import os
import stat

import pytest

from experiments import results as results_lib
from experiments import sweep as sweep_cli
from experiments.plan import make_plan
from lm.lock import FolderLock
from tiny_sweeps import tiny_config


def _recorded(tmp_path):
    cfg = tiny_config(tmp_path)
    results_lib.record_sweep(cfg, make_plan(cfg))
    return cfg


@pytest.mark.parametrize("text, what", [(b"garbage", "not valid JSON"), (b'{"name": "tin', "not valid JSON"),
                                        (b"", "empty"), (b"[1, 2]", "JSON list"), (b'"x"', "JSON str")])
def test_a_damaged_sweep_json_names_the_file_the_problem_and_the_fix(tmp_path, capsys, text, what):
    cfg = _recorded(tmp_path)
    path = os.path.join(cfg.directory, results_lib.SWEEP_FILE)
    with open(path, "wb") as f:
        f.write(text)
    for argv in (["status", cfg.directory], ["fit", cfg.directory]):
        assert sweep_cli.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and path in err and what in err and "--out" in err, err
    with pytest.raises(ValueError, match="sweep.json .*" + what):
        results_lib.check_sweep_dir(cfg)                       # what `lm-sweep run` checks first


def test_fit_refuses_a_sweep_folder_another_process_holds(tmp_path, capsys):
    cfg = _recorded(tmp_path)
    with FolderLock(cfg.directory, "sweep folder"):
        before = sorted(os.listdir(cfg.directory))
        assert sweep_cli.main(["fit", cfg.directory]) == 2
        assert sorted(os.listdir(cfg.directory)) == before      # no report written
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"sweep folder {cfg.directory} is in use by pid {os.getpid()}" in err, err


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_sweep_records_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        cfg = _recorded(tmp_path)
        from lm.io import atomic_write_bytes, atomic_write_json
        atomic_write_json(os.path.join(cfg.directory, "report.json"), {"a": 1})
        atomic_write_bytes(os.path.join(cfg.directory, "tokenizer.model"), b"\0")
    finally:
        os.umask(old)
    for name in (results_lib.SWEEP_FILE, results_lib.PLAN_FILE, "report.json", "tokenizer.model"):
        assert stat.S_IMODE(os.stat(os.path.join(cfg.directory, name)).st_mode) == mode, name
