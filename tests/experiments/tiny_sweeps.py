"""Tiny sweeps for the tests: models of a few thousand parameters, sequences of 32 tokens, runs of seconds."""

import os
import sys

from experiments.configs import SweepConfig, train_template
from experiments.sweep_sections import ExecConfig, SizeConfig
from lm.config import DataConfig, OptimConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TINY_CONFIG = '''
from experiments.configs import SweepConfig, train_template
from experiments.sweep_sections import ExecConfig, SizeConfig, WSDConfig
from lm.config import DataConfig, OptimConfig

def get_config():
    return SweepConfig(
        name="tiny", budgets={budgets}, convention="6n",
        sizes=SizeConfig(targets={targets}, width_step=8, head_dim=8, min_layers=1, max_layers=2),
        train=train_template(data=DataConfig(seq_len=32), optim=OptimConfig(learning_rate=1e-2, warmup_steps=5),
                             batch_size=8, eval_batches=1),
        min_steps={min_steps}, evals_per_run=2,
        checkpoints_per_run={checkpoints}, wsd={wsd},
        exec=ExecConfig(backend="{backend}", workers={workers}, threads=1, max_retries=2, poll_s=0.1))
'''


def tiny_config(tmp_path, *, budgets=(4e8, 8e8), targets=(5e3, 9e3), min_steps=20, checkpoints=1,
                wsd=None, backend="inline", workers=1, out="sweep") -> SweepConfig:
    """A SweepConfig of a few tiny runs, in tmp_path/out."""
    return SweepConfig(
        name="tiny", budgets=budgets, convention="6n",
        sizes=SizeConfig(targets=targets, width_step=8, head_dim=8, min_layers=1, max_layers=2),
        train=train_template(data=DataConfig(seq_len=32), optim=OptimConfig(learning_rate=1e-2, warmup_steps=5),
                             batch_size=8, eval_batches=1),
        min_steps=min_steps, evals_per_run=2,
        checkpoints_per_run=checkpoints, wsd=wsd,
        exec=ExecConfig(backend=backend, workers=workers, threads=1, max_retries=2, poll_s=0.1),
        out_dir=str(tmp_path / out))


def write_config(path, *, budgets=(4e8, 8e8), targets=(5e3, 9e3), min_steps=20, checkpoints=1, wsd=None,
                 backend="pool", workers=2) -> str:
    """The same tiny sweep as a config file for the CLI."""
    path.write_text(TINY_CONFIG.format(budgets=budgets, targets=targets, min_steps=min_steps,
                                       checkpoints=checkpoints, wsd=wsd, backend=backend, workers=workers))
    return str(path)


def cli_env() -> dict:
    """Environment for `python -m experiments.sweep` subprocesses: one CPU device."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT
    env["XLA_FLAGS"] = ""
    return env


def run_cli(*args, timeout=300):
    import subprocess
    return subprocess.run([sys.executable, "-m", "experiments.sweep", *args], env=cli_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def tiny_adaptive_config(tmp_path, *, budgets=(3e8, 6e8, 1.2e9, 2.4e9), out="adaptive", backend="inline",
                         workers=1, bootstrap=20, min_steps=20, edge_rounds=1) -> SweepConfig:
    """A tiny adaptive sweep (experiments.adaptive): 4 stages of 3 sizes from a ladder of depth-1 shapes,
    forecasts preregistered for stages 3 and 4."""
    from experiments.sweep_sections import AdaptiveConfig
    return SweepConfig(
        name="tiny-adaptive", budgets=budgets, convention="6n",
        sizes=SizeConfig(range=(1.5e3, 6e4), per_budget=3, window=2.0, tokens_per_param_guess=20.0,
                         width_step=8, head_dim=8, min_layers=1, max_layers=1, aspect=16.0),
        train=train_template(data=DataConfig(seq_len=32), optim=OptimConfig(learning_rate=1e-2, warmup_steps=5),
                             batch_size=8, eval_batches=1),
        min_steps=min_steps, evals_per_run=2, checkpoints_per_run=1,
        adaptive=AdaptiveConfig(spread=2.0, max_spread=4.0, edge_sizes=1, max_edge_rounds=edge_rounds,
                                forecast_bootstrap=bootstrap),
        exec=ExecConfig(backend=backend, workers=workers, threads=1, max_retries=2, poll_s=0.1),
        out_dir=str(tmp_path / out))


ADAPTIVE_CONFIG = '''
import pathlib
import sys
sys.path.insert(0, {here!r})
from tiny_sweeps import tiny_adaptive_config

def get_config():
    return tiny_adaptive_config(pathlib.Path({tmp!r}), backend="pool", workers=2, **{kwargs!r})
'''


def write_adaptive_config(path, **kwargs) -> str:
    """The tiny adaptive sweep as a config file for the CLI (pool of 2 workers; kwargs: tiny_adaptive_config's)."""
    path.write_text(ADAPTIVE_CONFIG.format(here=os.path.dirname(os.path.abspath(__file__)), tmp=str(path.parent),
                                           kwargs=kwargs))
    return str(path)


def comparable_table(folder) -> dict:
    """A sweep's results table by run id, minus what legitimately differs between executions
    (timings, paths): what a killed-and-resumed sweep must reproduce."""
    from experiments.results import TIMING_COLUMNS, read_rows
    rows = {}
    for row in read_rows(folder):
        row = {k: v for k, v in row.items() if k not in TIMING_COLUMNS}
        row["config"] = {k: v for k, v in row["config"].items() if k not in ("out_dir", "init_from")}
        rows[row["run_id"]] = row
    return rows

