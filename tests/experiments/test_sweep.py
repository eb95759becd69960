"""`lm-sweep`: the process pool end to end through the CLI, a sweep killed at random moments, bad input."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from experiments.results import results_path
from tiny_sweeps import ROOT, comparable_table, cli_env, run_cli, write_config



def _check_lines(folder):
    """Every complete line is a whole JSON row and no run appears twice."""
    path = results_path(folder)
    if not os.path.exists(path):
        return 0
    data = open(path, "rb").read()
    lines = data.split(b"\n")[:-1]           # an unterminated tail is a torn line (repaired on restart)
    ids = [json.loads(line)["run_id"] for line in lines]
    assert len(ids) == len(set(ids)), f"duplicate rows: {ids}"
    return len(ids)


def _metrics_bytes(folder):
    runs = os.path.join(folder, "runs")
    return sum(os.path.getsize(os.path.join(runs, r, "metrics.jsonl")) for r in os.listdir(runs)
               if os.path.exists(os.path.join(runs, r, "metrics.jsonl"))) if os.path.isdir(runs) else 0


@pytest.mark.slow
def test_sweep_survives_kill_9_at_random_moments(tmp_path):
    """>= 20 SIGKILLs of the sweep at random moments (half anywhere, mostly start-up; half while
    runs train), then a re-run to the end: the table equals an uninterrupted sweep's, with no
    duplicate or torn rows. A killed sweep that reaches its end between two kills (runs are fast)
    is compared with the reference the same way, then started over."""
    config = write_config(tmp_path / "kill.py", budgets=(1.2e10, 1.8e10, 2.4e10, 3e10), targets=(5e3,),
                          min_steps=20, checkpoints=3, backend="pool", workers=2)
    reference, killed = str(tmp_path / "reference"), str(tmp_path / "killed")
    out = run_cli("run", config, "--out", reference, "--no-fit", "--no-progress", timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    expected = comparable_table(reference)
    assert len(expected) == 4
    # The killed sweep finds the reference's programs compiled (the tests' shared compilation
    # cache, exec.compile_cache='user'), as any re-run of a sweep does.

    rng = random.Random(0)
    cmd = [sys.executable, "-m", "experiments.sweep", "run", config, "--out", killed, "--no-fit", "--no-progress"]
    kills, cycle, finished, deadline = 0, 0, 0, time.time() + 240
    while kills < 20 and time.time() < deadline:
        proc = subprocess.Popen(cmd, env=cli_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if cycle % 2 == 0:
            time.sleep(rng.uniform(0.2, 4.0))
        else:                                # wait until some run is training, then a random moment
            before, until = _metrics_bytes(killed), time.time() + 30
            while _metrics_bytes(killed) == before and proc.poll() is None and time.time() < until:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 2.0))
        cycle += 1
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        _check_lines(killed)
        assert proc.returncode in (0, -signal.SIGKILL), f"the sweep failed (exit {proc.returncode})"
        if proc.returncode == 0:             # it finished between two kills: check it, then start over
            assert comparable_table(killed) == expected
            shutil.rmtree(killed)
            finished += 1
    assert kills >= 20, f"only {kills} kills before the deadline"
    final = run_cli("run", config, "--out", killed, "--no-fit", "--no-progress", timeout=240)
    assert final.returncode == 0, final.stderr[-3000:]
    assert _check_lines(killed) == 4
    assert open(results_path(killed), "rb").read().endswith(b"\n")
    assert comparable_table(killed) == expected
    status = run_cli("status", killed)
    assert status.returncode == 0 and "4 runs: 4 completed" in status.stdout, status.stdout + status.stderr
    resumed = [json.load(open(os.path.join(killed, "runs", r, "result.json")))["resumed_from"] for r in expected]
    print(f"{kills} kills in {cycle} starts ({finished} killed sweeps finished between kills and were checked); "
          f"final attempts resumed from steps {resumed}")


def test_cli_plan_status_and_bad_input(tmp_path):
    config = write_config(tmp_path / "tiny.py")
    out = run_cli("plan", config, "--out", str(tmp_path / "s"), "--probe", "1", timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "cos-C4e8-d16-L1" in out.stdout and "est. s" in out.stdout and "worker-minutes" in out.stdout
    assert not os.path.exists(tmp_path / "s" / "sweep.json")    # planning writes no sweep

    out = run_cli("status", str(tmp_path / "nothing"))
    assert out.returncode == 2 and "not a sweep folder" in out.stderr

    bad = tmp_path / "bad.py"
    bad.write_text(open(config).read().replace('targets=(5000.0, 9000.0)', 'targets=(5000.0, 9000.0), rule="golden"'))
    out = run_cli("run", str(bad), "--out", str(tmp_path / "b"))
    assert out.returncode == 2 and "size rule 'golden' is not known" in out.stderr
    assert not os.path.exists(tmp_path / "b")

    infeasible = tmp_path / "infeasible.py"
    infeasible.write_text(open(config).read().replace("budgets=(400000000.0, 800000000.0)", "budgets=(1000.0,)"))
    out = run_cli("run", str(infeasible), "--out", str(tmp_path / "c"))
    assert out.returncode == 2 and "gives its smallest size" in out.stderr and not os.path.exists(tmp_path / "c")


def test_walk_forward_choice_needs_four_budgets_and_keeps_chinchillas_delta_without(tiny, monkeypatch):
    """Fewer than 4 budgets with an observed optimum: no walk-forward, Approach 3 keeps delta 1e-3,
    and the report line says why."""
    import numpy as np
    import pandas as pd

    from experiments.report import walk_forward_choice
    from lm.scaling.laws import ChinchillaLaw
    law = ChinchillaLaw(E=1.3, A=40.0, B=300.0, alpha=0.35, beta=0.40)
    rows = [dict(N=n, D=c / (6 * n), C=c, budget=c, loss=law.loss(n, c / (6 * n)))
            for c in (1e10, 3e10, 1e11) for n in law.optimal(c)[0] * np.geomspace(0.25, 4, 7)]
    out = {}
    choice, cons, lines = walk_forward_choice(pd.DataFrame(rows), None, out)
    assert choice is None and cons.delta == 1e-3 and out["walk_forward"]["chosen"] is None
    assert "Walk-forward model choice: not run (walk-forward needs >= 4 budgets" in lines[0], lines
    # Any other failure of the choice is named and leaves the approaches' fits to run.
    import lm.scaling.walkforward as wf

    def broken(*args, **kwargs):
        raise FloatingPointError("overflow in the frontier fit")
    monkeypatch.setattr(wf, "choose", broken)
    choice, cons, lines = walk_forward_choice(pd.DataFrame(rows), None, out)
    assert choice is None and cons.delta == 1e-3
    assert "not run (FAILED: FloatingPointError: overflow in the frontier fit)" in lines[0], lines


def test_walk_forward_rejects_approach3_on_a_law_of_another_form_and_names_the_e_to_trust():
    """Runs drawn from L = E + (A/N^alpha + B/D^beta)^gamma with gamma = 1.6 (Approach 3's form is
    gamma = 1; the IsoFLOP curves are then wider than its frontier's slope allows, as on the built-in
    language): the walk-forward rejects Approach 3 on its later runs, chooses the frontier law, and
    the report's verdict says why; the chosen law's E is the truth to 1 % and nearer it than
    Approach 3's (measured: 1.3008 and 1.2809 against 1.3)."""
    import numpy as np
    import pandas as pd

    from experiments.report import _a3_verdict, _model_E, walk_forward_choice
    E, A, B, alpha, beta, gamma = 1.3, 40.0, 300.0, 0.5, 0.55, 1.6
    rng = np.random.default_rng(0)
    G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))       # the inner sum's optimum: Chinchilla's
    rows = []
    for c in np.geomspace(1e10, 1e13, 6):
        for n in G * (c / 6) ** (beta / (alpha + beta)) * np.geomspace(1 / 4, 4, 7):
            d = c / (6 * n)
            loss = (E + (A / n ** alpha + B / d ** beta) ** gamma) * np.exp(rng.normal(0, 0.002))
            rows.append(dict(N=n, D=d, C=c, budget=c, loss=loss))
    out = {}
    choice, cons, lines = walk_forward_choice(pd.DataFrame(rows), None, out)
    assert choice.model.candidate.kind == "frontier" and out["walk_forward"]["chosen"] == choice.chosen
    assert "Approach 3's law failed its forecasts of later runs (its 42 later runs miss by more than its spread" \
        in _a3_verdict(choice)
    e_chosen, e_a3 = _model_E(choice.model), _model_E(choice.models[choice.a3_champion().name])
    assert abs(e_chosen - E) < 0.01 * E and abs(e_chosen - E) < abs(e_a3 - E), (e_chosen, e_a3)


def test_report_fits_all_approaches_from_the_table(tmp_path, tiny, capsys):
    """The report on a table drawn from a known law: Approaches 1-3 with intervals, E beside the
    floor, the extrapolation check, the WSD comparison and the plots."""
    import numpy as np

    from experiments import results as results_lib
    from experiments import sweep
    from experiments.configs import replace
    from experiments.results import append_row

    E, A, B, alpha, beta = 1.3, 40.0, 300.0, 0.35, 0.40
    cfg = replace(tiny(), budgets=(1e10, 3e10, 1e11, 3e11))
    results_lib.check_sweep_dir(cfg)
    os.makedirs(cfg.directory)
    with open(os.path.join(cfg.directory, results_lib.SWEEP_FILE), "w") as f:
        json.dump(cfg.identity(), f)
    rng = np.random.default_rng(0)
    n_opt = lambda c: (alpha * A / (beta * B)) ** (1 / (alpha + beta)) * (c / 6) ** (beta / (alpha + beta))
    ladder = n_opt(cfg.budgets[0]) * np.sqrt(2.0) ** np.arange(-4, 12)    # sizes shared by budgets
    for budget in cfg.budgets:
        centre = int(np.argmin(abs(np.log(ladder / n_opt(budget)))))
        for i in range(centre - 3, centre + 4):                            # 7 sizes, sqrt(2) apart
            n = ladder[i]
            d = budget / (6 * n)
            loss = (E + A / n ** alpha + B / d ** beta) * np.exp(rng.normal(0, 0.002))
            for kind in ("cosine", "wsd_cooldown"):
                prefix = "cos" if kind == "cosine" else "wsd"
                append_row(cfg.directory, {
                    "run_id": f"{prefix}-C{budget:.0e}-{i}", "kind": kind, "status": "completed",
                    "budget": budget, "shape": f"s{i}", "N": n * 1.1, "N_nonembed": n, "D": d, "C": budget,
                    "loss": loss + (0.01 if kind != "cosine" else 0.0), "entropy_floor": E,
                    "steps": 100, "branch_step": 80 if kind != "cosine" else None,
                    "eval_curve": [{"step": 1, "tokens": d / 2, "eval_loss": loss + 5.0},   # mid-run: never fitted
                                   {"step": 2, "tokens": d, "eval_loss": loss}]})
    out = sweep.report(cfg.directory, n_bootstrap=20)
    text = capsys.readouterr().out
    for phrase in ("Approach 1: a =", "Approach 2: a =", "Approach 3: a =", "entropy floor = 1.3000",
                   "Extrapolation to C = 3e+11", "WSD cooldowns vs cosine runs at equal (N, D) (28 pairs)",
                   "IsoFLOP minima"):
        assert phrase in text, phrase
    # Tolerances from the noise: each estimate lies within the width of its 95 % bootstrap interval (the
    # runs resampled: what the 0.2 % noise leaves of that estimate) of the truth, and never further
    # than 0.1. Measured (2026-11-30): E 1.364, interval width 0.125; a (Approach 3) off by 0.006,
    # width 0.021; Approach 2 off by 0.002, width 0.038. The held-out budget's loss is forecast
    # within 3 sigma of its noise.
    def near(estimate, truth, lo, hi):
        return abs(estimate - truth) <= min(0.1, hi - lo)

    assert near(out["E"]["value"], E, out["E"]["lo"], out["E"]["hi"]), out["E"]
    # The walk-forward choice on the same table (4 budgets: fit on 3, forecast the 4th) sets Approach
    # 3's Huber delta: the delta of its Approach 3 candidate whose later forecasts missed least.
    from lm.scaling.candidates import DELTAS
    wf = out["walk_forward"]
    assert "Walk-forward model choice (runs table; 1 splits" in text and wf["a3_delta"] in DELTAS, wf
    assert "Approach 3 below is fitted with" in text and out["approach3_objective"]["delta"] == wf["a3_delta"]
    assert wf["chosen"] is not None and f"the walk-forward's choice, {wf['chosen']}" in text, wf
    # The frontier law's E, a second estimate of the same floor, printed beside Approach 3's.
    assert "the frontier law's E = " in text and out["E_frontier"]["lo"] <= out["E_frontier"]["value"] <= out["E_frontier"]["hi"]
    a_true = beta / (alpha + beta)
    assert all(near(row["a"], a_true, row["a_lo"], row["a_hi"]) for row in out["exponents"]), out["exponents"]
    a = {row["approach"]: row["a"] for row in out["exponents"]}
    assert abs(out["extrapolation"]["error"]) < 3 * 0.002 * out["extrapolation"]["observed"]
    assert all(abs(r["delta"] - 0.01) < 1e-9 for r in out["wsd"])
    assert "WSD IsoFLOP sweep (28 cooldowns on" in text and "= 20 % of cosine" in text
    a_wsd = {row["approach"]: row["a"] for row in out["wsd_law"]["exponents"]}
    # The WSD rows are the cosine rows + 0.01 nats: a constant offset moves E, never an exponent.
    assert all(abs(a_wsd[k] - a[k]) < 1e-3 for k in ("Approach 1", "Approach 2", "Approach 3")), (a_wsd, a)
    assert {"isoflops.png", "allocations.png"} <= set(os.listdir(os.path.join(cfg.directory, "plots")))
    assert json.load(open(os.path.join(cfg.directory, "report.json")))["fitted"] == 28
