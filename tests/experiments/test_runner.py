"""The runner: rows per finished run, skip/resume/retry on re-runs, diverged runs, WSD branches,
refusing to mix sweeps, and the submitit back-end through its local executor."""

import json
import os

import numpy as np
import pytest

from experiments import results as results_lib
from experiments import backends, runner, worker
from experiments.configs import replace
from experiments.results import load_results, read_rows, results_path
from experiments.sweep_sections import WSDConfig
from lm import flops as flops_lib
from lm.config import OptimConfig
from lm.io import read_jsonl

WSD_VS_COSINE_NATS = 0.3
"""A cooldown and its cosine twin (same N, D) end this close. Measured on these tiny runs
(2026-11-30): -0.04 nats at 101 steps, -0.21 at 50 (a 50-step cosine spends 10 % in warmup and
anneals all the way); the cooldown's own learning rate and its gain over the trunk are checked exactly."""


def test_inline_sweep_rows_then_rerun_skips(tiny):
    cfg = tiny(targets=(5e3,))
    outcome = runner.run_sweep(cfg)
    assert sorted(outcome.trained) == sorted(r.run_id for r in runner.prepare(cfg).runs)
    assert not outcome.failed and not outcome.blocked
    frame = load_results(cfg.directory)
    assert len(frame) == 2 and set(frame["status"]) == {"completed"}
    for column in ("run_id", "budget", "N", "N_nonembed", "D", "C", "loss", "status", "wall_s", "mfu",
                   "eval_curve", "config", "tokens_per_param", *(f"C_{c}" for c in flops_lib.CONVENTIONS)):
        assert column in frame.columns, column
    # The 6n convention with N counted by hand for the shape the plan picks (d16-L1: 2 heads of 8,
    # SwiGLU d_ff 64, RMSNorm, no biases, untied unembedding over a vocabulary of 64):
    # attention 4*16*16 + MLP 3*16*64 + norms (2+1)*16 + unembedding 16*64 = 5168.
    assert set(frame["shape"]) == {"d16-L1"} and (frame["N_nonembed"] == 5168).all()
    assert (frame["D"] == frame["steps"] * 8 * 32).all()                                # batch 8 x seq 32
    np.testing.assert_allclose(frame["C"], 6 * 5168 * frame["D"])
    np.testing.assert_allclose(frame["C"], frame["budget"], rtol=0.1)
    assert all(len(curve) == 2 and curve[-1]["eval_loss"] == loss
               for curve, loss in zip(frame["eval_curve"], frame["loss"]))
    assert (frame["loss"] < np.log(64)).all()
    before = open(results_path(cfg.directory)).read()
    again = runner.run_sweep(cfg)
    assert again.trained == [] and again.recorded == []
    assert open(results_path(cfg.directory)).read() == before


def test_a_finished_run_missing_from_the_table_is_recorded_without_training(tiny):
    cfg = tiny(budgets=(4e8,), targets=(5e3,))
    runner.run_sweep(cfg)
    os.remove(results_path(cfg.directory))          # e.g. killed between result.json and the append
    again = runner.run_sweep(cfg)
    assert again.trained == [] and len(again.recorded) == 1 and len(read_rows(cfg.directory)) == 1


def test_a_torn_metrics_line_from_a_kill_does_not_break_the_resume(tiny):
    cfg = tiny(budgets=(4e8,), targets=(5e3,))
    runner.run_sweep(cfg)
    run_dir = os.path.join(cfg.directory, "runs", "cos-C4e8-d16-L1")
    expected = read_rows(cfg.directory)[0]["loss"]
    os.remove(results_path(cfg.directory))
    os.remove(os.path.join(run_dir, "result.json"))            # as if killed before the end ...
    with open(os.path.join(run_dir, "metrics.jsonl"), "a") as f:
        f.write('{"step": 50, "lo')                             # ... in the middle of a log line
    again = runner.run_sweep(cfg)
    assert again.trained == ["cos-C4e8-d16-L1"] and read_rows(cfg.directory)[0]["loss"] == expected


def test_failures_are_retried_up_to_the_limit_and_never_stop_the_sweep(tiny, monkeypatch):
    cfg = tiny(budgets=(4e8, 8e8, 1.2e9), targets=(5e3,))
    real = backends.train_run
    calls = {}

    def flaky(config, *args, **kw):
        run_id = os.path.basename(config["out_dir"])
        calls[run_id] = calls.get(run_id, 0) + 1
        if run_id.endswith("d16-L1") and run_id.startswith("cos-C4e8"):
            return {"ok": False, "error": "RuntimeError: always broken"}
        if run_id.startswith("cos-C8e8-d16") and calls[run_id] == 1:
            return {"ok": False, "error": "worker process died (exit code -9)"}
        return real(config, *args, **kw)

    monkeypatch.setattr(backends, "train_run", flaky)
    outcome = runner.run_sweep(cfg)
    broken = "cos-C4e8-d16-L1"
    assert set(outcome.failed) == {broken} and calls[broken] == cfg.exec.max_retries + 1
    assert calls["cos-C8e8-d16-L1"] == 2 and len(outcome.trained) == 2
    assert len(runner.failures(os.path.join(cfg.directory, "runs", broken))) == 3
    # A re-run skips the exhausted run; --retry-failed tries it again.
    monkeypatch.setattr(backends, "train_run", real)
    assert set(runner.run_sweep(cfg).failed) == {broken}
    assert runner.run_sweep(cfg, retry_failed=True).trained == [broken]
    assert len(read_rows(cfg.directory)) == 3


def test_diverged_runs_are_recorded_and_left_out_of_fits(tiny):
    cfg = replace(tiny(budgets=(4e8,), targets=(5e3,)),
                  **{"train.optim": OptimConfig(learning_rate=1e12, clip_norm=None, warmup_steps=0)})
    outcome = runner.run_sweep(cfg)
    assert not outcome.failed
    frame = load_results(cfg.directory)
    assert list(frame["status"]) == ["diverged"] and frame["loss"].isna().all()
    assert load_results(cfg.directory, fit_only=True).empty
    assert runner.run_sweep(cfg).trained == []          # not retried
    from experiments.sweep import report
    with pytest.raises(ValueError, match="every one of the 1 finished runs .* diverged .*NaN/Inf"):
        report(cfg.directory, n_bootstrap=10)


def test_a_run_with_a_corrupt_checkpoint_resumes_from_the_older_one_not_diverged(tiny, tmp_path):
    """Flipped bytes in a run's newest checkpoint once made it 'diverge' (Adam's nu at -2e35), which
    the sweep recorded for good; now the run falls back to the older checkpoint and ends as before."""
    import glob
    import shutil
    cfg = tiny(budgets=(4e8,), targets=(5e3,), checkpoints=3)
    runner.run_sweep(cfg)
    [reference] = load_results(cfg.directory).to_dict("records")
    copy = replace(cfg, out_dir=str(tmp_path / "copy"))
    shutil.copytree(cfg.directory, copy.directory)
    os.remove(results_path(copy.directory))
    run_dir = os.path.join(copy.directory, "runs", reference["run_id"])
    os.remove(os.path.join(run_dir, "result.json"))
    steps = sorted(int(s) for s in os.listdir(os.path.join(run_dir, "checkpoints")) if s.isdigit())
    assert len(steps) >= 2                  # killed before result.json, its last checkpoint rotted:
    state = max(glob.glob(os.path.join(run_dir, "checkpoints", str(steps[-1]), "state", "**", "*"),
                          recursive=True), key=lambda p: os.path.getsize(p) if os.path.isfile(p) else -1)
    data = bytearray(open(state, "rb").read())
    data[len(data) // 2: len(data) // 2 + 300] = bytes(b ^ 0xFF for b in data[len(data) // 2: len(data) // 2 + 300])
    open(state, "wb").write(bytes(data))
    outcome = runner.run_sweep(copy)
    assert outcome.trained == [reference["run_id"]] and not outcome.failed
    [row] = load_results(copy.directory).to_dict("records")
    assert row["status"] == "completed" and row["loss"] == reference["loss"]
    result = json.load(open(os.path.join(run_dir, "result.json")))
    assert result["resumed_from"] == steps[-2] and f"checkpoint step {steps[-1]}" in result["checkpoint_problems"][0]


def test_refuses_a_different_sweep_in_the_same_folder(tiny, tmp_path):
    cfg = tiny()
    runner.prepare(cfg)
    saved = open(os.path.join(cfg.directory, results_lib.SWEEP_FILE)).read()
    with pytest.raises(ValueError, match=r"different config \(budgets differ\).*--out"):
        runner.prepare(replace(cfg, budgets=(4e8, 1.6e9)))
    assert open(os.path.join(cfg.directory, results_lib.SWEEP_FILE)).read() == saved
    runner.prepare(replace(cfg, **{"exec.workers": 3}))      # how it runs is not part of its identity
    other = tmp_path / "not-a-sweep"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a sweep folder"):
        runner.prepare(replace(cfg, out_dir=str(other)))
    assert os.listdir(other) == ["notes.txt"]


def test_wsd_cooldowns_branch_from_the_trunk(tiny):
    cfg = tiny(targets=(5e3,), wsd=WSDConfig(cooldown_frac=0.25))
    outcome = runner.run_sweep(cfg)
    assert not outcome.failed and not outcome.blocked
    frame = load_results(cfg.directory).set_index("run_id")
    assert list(frame.sort_values("kind")["kind"]) == ["cosine", "cosine", "wsd_constant", "wsd_cooldown", "wsd_cooldown"]
    peak, final = cfg.train.optim.learning_rate, cfg.train.optim.final_lr_frac
    for run_id, row in frame[frame["kind"] == "wsd_cooldown"].iterrows():
        twin = frame.loc[run_id.replace("wsd-", "cos-")]
        assert (row["N"], row["D"]) == (twin["N"], twin["D"])
        result = json.load(open(os.path.join(cfg.directory, "runs", run_id, "result.json")))
        assert result["resumed_from"] == row["branch_step"]
        assert abs(row["loss"] - twin["loss"]) < WSD_VS_COSINE_NATS        # same (N, D), comparable loss
        trunk = {e["step"]: e["eval_loss"] for e in frame.loc[row["parent"], "eval_curve"]}
        assert row["loss"] < trunk[row["branch_step"]]       # the cooldown improves on its branch point
        # After the branch the learning rate follows the cooldown, written out here from the recipe
        # (1 - sqrt decay from the peak at the branch to final x peak at the end; the row of step p
        # logs optimizer step p - 1), independently of lm.optim.
        branch, steps = int(row["branch_step"]), int(row["steps"])
        logged = [r for r in read_jsonl(os.path.join(cfg.directory, "runs", run_id, "metrics.jsonl"))
                  if "lr" in r and r["step"] > branch]
        assert logged and logged[-1]["step"] == steps
        expected = [peak * (final + (1 - final) * (1 - np.sqrt((r["step"] - 1 - branch) / (steps - branch))))
                    for r in logged]
        np.testing.assert_allclose([r["lr"] for r in logged], expected, rtol=1e-5)


@pytest.fixture(scope="module")
def submitit_sweep(tmp_path_factory):
    """A one-run sweep through submitit's local executor, one process per run (float32 compute)."""
    from tiny_sweeps import tiny_config
    cfg = tiny_config(tmp_path_factory.mktemp("submitit"), budgets=(4e8,), targets=(5e3,), backend="submitit",
                      workers=2)
    cfg = replace(cfg, **{"exec.cluster": "local", "exec.poll_s": 0.5, "train.model.compute_dtype": "float32"})
    return cfg, runner.run_sweep(cfg)


def test_submitit_local_executor(submitit_sweep):
    cfg, outcome = submitit_sweep
    assert not outcome.failed, outcome.failed
    frame = load_results(cfg.directory)
    assert len(frame) == 1 and set(frame["status"]) == {"completed"}
    assert os.path.isdir(os.path.join(cfg.directory, "submitit"))


@pytest.mark.slow   # a submitit job of two JAX processes: ~45 s of CPU
def test_submitit_runs_of_two_processes_match_one_process(submitit_sweep, tmp_path):
    """exec.tasks_per_node=2: each run is one submitit job of two JAX processes (the local executor
    sets no SLURM variables: they meet at a coordinator on 127.0.0.1) that split each batch; the
    run's numbers equal the single-process run's to float tolerance."""
    import glob
    import pickle
    cfg, _ = submitit_sweep
    two = replace(cfg, **{"out_dir": str(tmp_path / "two"), "exec.tasks_per_node": 2})
    outcome = runner.run_sweep(two)
    assert not outcome.failed, outcome.failed
    tasks = [pickle.load(open(p, "rb")) for p in sorted(glob.glob(os.path.join(two.directory, "submitit", "*_result.pkl")))]
    assert [(t[1]["process"], t[1]["processes"]) for t in tasks] == [(0, 2), (1, 2)]    # (outcome, result) pairs
    [one_row], [two_row] = load_results(cfg.directory).to_dict("records"), load_results(two.directory).to_dict("records")
    assert two_row["D"] == one_row["D"] and two_row["steps"] == one_row["steps"]
    np.testing.assert_allclose([two_row["loss"], two_row["train_loss"]], [one_row["loss"], one_row["train_loss"]],
                               rtol=1e-5)


def test_multi_process_runs_are_refused_where_they_cannot_run(tiny):
    cfg = tiny(backend="submitit")
    with pytest.raises(ValueError, match="need backend='submitit'"):
        replace(cfg, **{"exec.backend": "pool", "exec.tasks_per_node": 2}).validate()
    with pytest.raises(ValueError, match="a multiple of 3"):
        replace(cfg, **{"exec.tasks_per_node": 3}).validate()
    with pytest.raises(ValueError, match="local executor runs on one node"):
        replace(cfg, **{"exec.cluster": "local", "exec.nodes": 2}).validate()


def test_status_names_a_bad_results_line_and_repair_moves_it_aside(tiny, capsys):
    from experiments import sweep
    cfg = tiny()
    runner.prepare(cfg)
    with open(results_path(cfg.directory), "w") as f:
        f.write('{"loss": 1.0, "status": "completed"}\n{"run_id": "x", "status": "completed"}\n')
    assert sweep.main(["status", cfg.directory]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert f"line 1 has no run_id; run `lm-sweep repair {cfg.directory}`" in line and "delete line 1" in line
    assert sweep.main(["repair", cfg.directory]) == 0
    assert "line 1 has no run_id: moved to" in capsys.readouterr().out
    assert [r["run_id"] for r in read_rows(cfg.directory)] == ["x"]
    assert sweep.main(["status", cfg.directory]) == 0


def test_worker_env_gives_each_worker_one_gpu_without_preallocation():
    base = {"CUDA_VISIBLE_DEVICES": "0,1", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    envs = [worker.worker_env(1, base, index=i) for i in range(3)]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1", "0"]
    assert all(e["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" for e in envs)
    assert envs[0]["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=false"
    again = worker.worker_env(1, envs[1])              # the worker re-applying its own environment
    assert again["CUDA_VISIBLE_DEVICES"] == "1"
    cpu = worker.worker_env(2, {"CUDA_VISIBLE_DEVICES": ""}, index=1)
    assert cpu["CUDA_VISIBLE_DEVICES"] == "" and "XLA_PYTHON_CLIENT_PREALLOCATE" not in cpu
