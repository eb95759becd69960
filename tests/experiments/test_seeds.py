"""Seed-averaged first stages (adaptive.seeds_first_stages): stages 1-2 train each size with several
seeds, the fits average them. Law losses stand in for training (test_adaptive.simulate): seconds."""

import dataclasses
import itertools
import os

import numpy as np
import pandas as pd
import pytest

from experiments import adaptive, forecasts
from experiments.configs import load as load_config
from experiments.plan import seed_replicas
from experiments.report import fit_table
from experiments.sweep_sections import AdaptiveConfig
from test_adaptive import simulate
from tiny_sweeps import tiny_adaptive_config


@pytest.fixture
def cfg(tmp_path):
    c = tiny_adaptive_config(tmp_path, bootstrap=8)
    c = dataclasses.replace(c, adaptive=dataclasses.replace(c.adaptive, seeds_first_stages=3))
    os.makedirs(c.directory)
    return c


def test_the_first_two_stages_train_every_size_with_three_seeds_and_later_stages_one(cfg):
    rows, walk = simulate(cfg)
    assert walk.done and len(walk.stages) == 4
    ids = [r.run_id for r in walk.runs]
    assert len(ids) == len(set(ids)) and set(ids) == set(rows)
    for stage in walk.stages:
        base = [r for r in stage.runs if r.seed == 0]
        if stage.index <= 2:
            assert len(stage.runs) == 3 * len(base)
            for spec in base:
                copies = [r for r in stage.runs if r.shape == spec.shape]
                assert [(r.run_id, r.seed) for r in copies] == [
                    (spec.run_id, 0), (spec.run_id + "-s1", 1), (spec.run_id + "-s2", 2)]
                assert {(r.steps, r.tokens, r.budget) for r in copies} == {(spec.steps, spec.tokens, spec.budget)}
        else:
            assert stage.runs == tuple(base) and not any("-s" in r.run_id for r in stage.runs)
    again = dataclasses.replace(cfg, out_dir=cfg.out_dir + "-again")
    os.makedirs(again.directory)
    assert [r.run_id for r in simulate(again)[1].runs] == ids           # deterministic


def test_later_stages_train_the_seeds_listed_for_them_and_resume_to_the_same_plan(cfg, tmp_path):
    later = dataclasses.replace(cfg, adaptive=dataclasses.replace(cfg.adaptive, seeds_later_stages=(2, 1)))
    rows, walk = simulate(later)
    assert walk.done and len(walk.stages) == 4
    for stage, seeds in zip(walk.stages, (3, 3, 2, 1)):
        base = [r for r in stage.runs if r.seed == 0]
        assert len(stage.runs) == seeds * len(base)
        if stage.index == 3:
            assert [r.run_id for r in stage.runs] == [i for r in base for i in (r.run_id, r.run_id + "-s1")]
    longer = dataclasses.replace(cfg, adaptive=dataclasses.replace(cfg.adaptive, seeds_later_stages=(2,)))
    assert [adaptive.stage_seeds(longer, k) for k in (1, 2, 3, 4, 5)] == [3, 3, 2, 2, 2]   # the last entry holds
    killed = dataclasses.replace(later, out_dir=str(tmp_path / "killed"))
    os.makedirs(killed.directory)
    stop = sum(len(s.runs) for s in walk.stages[:2]) + 3                 # inside stage 3
    part, _ = simulate(killed, stop=stop)
    again, walk_again = simulate(killed, part)
    assert again == rows and [s.runs for s in walk_again.stages] == [s.runs for s in walk.stages]


def test_a_killed_seeded_sweep_resumes_to_the_same_plan(cfg, tmp_path):
    full_rows, full_walk = simulate(cfg)
    for stop in (4, len(full_walk.stages[0].runs) + 2):               # inside stage 1, inside stage 2
        other = dataclasses.replace(cfg, out_dir=str(tmp_path / f"killed{stop}"))
        os.makedirs(other.directory)
        rows, _ = simulate(other, stop=stop)
        rows, walk = simulate(other, rows)
        assert rows == full_rows and [s.runs for s in walk.stages] == [s.runs for s in full_walk.stages]


def test_a_replica_trains_with_its_own_init_and_data_seeds(cfg, tmp_path):
    spec = simulate(cfg)[1].stages[0].runs[0]
    base, one, two = (r.train_config(cfg, str(tmp_path)) for r in seed_replicas(spec, 3))
    assert (base.seed, base.data.seed) == (cfg.train.seed, cfg.train.data.seed)
    assert (one.seed, one.data.seed) == (cfg.train.seed + 1, cfg.train.data.seed + 1)
    assert (two.seed, two.data.seed) == (cfg.train.seed + 2, cfg.train.data.seed + 2)
    assert len({base.out_dir, one.out_dir, two.out_dir}) == 3
    assert dataclasses.replace(one, seed=base.seed, data=base.data, out_dir=base.out_dir) == base


def row(run_id, shape, budget, loss, n=1000.0, d=2e4):
    return dict(run_id=run_id, kind="cosine", status="completed", loss=loss, N=n, N_nonembed=n, D=d,
                C=6 * n * d, budget=budget, shape=shape)


def test_fit_table_averages_the_seeds_of_one_size_and_budget():
    frame = pd.DataFrame([row("a", "d8", 1e9, 2.0), row("a-s1", "d8", 1e9, 2.2), row("b", "d16", 1e9, 1.9, n=3000),
                          row("c", "d8", 2e9, 1.7, d=4e4)])
    table, _ = fit_table(frame, "6n")
    assert len(table) == 3
    got = {(r.shape, r.budget): (r.run, r.loss, r.seeds) for r in table.itertuples()}
    assert got[("d8", 1e9)] == ("a", pytest.approx(2.1), 2)
    assert got[("d16", 1e9)] == ("b", 1.9, 1) and got[("d8", 2e9)] == ("c", 1.7, 1)
    single, _ = fit_table(frame[frame["run_id"] != "a-s1"], "6n")
    assert list(single["seeds"]) == [1, 1, 1] and list(single["loss"]) == [2.0, 1.9, 1.7]


def test_fit_table_does_not_depend_on_the_order_runs_finished():
    """results.jsonl is in the order the workers finished; the bootstrap resamples rows by position
    and a seed mean sums in row order, so the table must not follow that order (two default sweeps
    with the same losses printed different bootstrap intervals before)."""
    rows = [row("a", "d8", 1e9, 0.1), row("a-s1", "d8", 1e9, 0.2), row("a-s2", "d8", 1e9, 0.3),
            row("b", "d16", 1e9, 1.9, n=3000), row("c", "d8", 2e9, 1.7, d=4e4), row("d", "d16", 2e9, 1.6, n=3000)]
    tables = [fit_table(pd.DataFrame([rows[i] for i in order]), "6n")[0]
              for order in itertools.permutations(range(len(rows)))]
    for t in tables[1:]:
        pd.testing.assert_frame_equal(t, tables[0], check_exact=True)
    assert tables[0]["run"].tolist() == ["a", "b", "c", "d"]     # a seed group is named by its seed-0 run


def test_averaged_budgets_draw_a_smaller_noise_than_one_seed():
    sizes = np.array([1e3, 2e3, 4e3, 8e3, 16e3])
    bumps = np.array([0.01, -0.01, 0.005, -0.005, 0.01])
    frames = []
    for c, seeds in ((1e9, 3), (2e9, 1)):
        loss = 2.0 + 0.1 * np.log(sizes / 4e3) ** 2 + bumps
        frames.append(pd.DataFrame(dict(run=[f"{c}-{n}" for n in sizes], N=sizes, D=c / (6 * sizes), C=c,
                                        loss=loss, budget=c, shape=[f"d{n:g}" for n in sizes], seeds=seeds)))
    table = pd.concat(frames, ignore_index=True)
    draws = forecasts.minima_noise_draws(table, [1e9, 2e9], None, 400, 0)
    spread = draws[:, :, 0].std(axis=0)
    assert spread[0] < 0.8 * spread[1]                  # 1/sqrt(3) as far, up to the resampling noise


def test_a_target_of_fewer_seeds_gets_a_wider_interval_and_the_same_point():
    """The minimum still to be observed scatters as a mean of the seeds its stage trains: a stage of
    one seed after stages of 2 (the default's last) must not inherit their narrower noise."""
    sizes = np.array([1e3, 2e3, 4e3, 8e3, 16e3])
    bumps = np.array([0.01, -0.01, 0.005, -0.005, 0.01])
    frames = []
    for j, c in enumerate((1e9, 2.5e9, 6.3e9, 1.6e10)):
        n_opt = 4e3 * (c / 1e9) ** 0.5
        loss = 1.5 + 2.0 * c ** -0.05 + 0.1 * np.log(sizes * (c / 1e9) ** 0.5 / n_opt) ** 2 + np.roll(bumps, j)
        frames.append(pd.DataFrame(dict(run=[f"{c}-{n}" for n in sizes], N=sizes * (c / 1e9) ** 0.5,
                                        D=c / (6 * sizes * (c / 1e9) ** 0.5), C=c, loss=loss, budget=c,
                                        shape=[f"d{n:g}" for n in sizes], seeds=2)))
    table = pd.concat(frames, ignore_index=True)
    for predict in (forecasts.frontier_prediction, forecasts.approach3_prediction):
        two, one = (predict(table, 4e10, None, n_bootstrap=60, seed=0, target_seeds=k) for k in (2, 1))
        assert one.loss == two.loss and one.n_opt == two.n_opt
        assert np.log(one.hi / one.lo) > 1.03 * np.log(two.hi / two.lo), predict.__name__
        same = predict(table, 4e10, None, n_bootstrap=60, seed=0)          # None: as the last budget (2)
        assert (same.lo, same.hi) == (two.lo, two.hi)


def test_bad_seed_counts_fail_with_the_field_and_the_fix():
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match=r"adaptive\.seeds_first_stages=.* must be a whole number >= 1"):
            AdaptiveConfig(seeds_first_stages=bad).validate()
        with pytest.raises(ValueError, match=r"adaptive\.seeds_later_stages=.* must list whole numbers >= 1"):
            AdaptiveConfig(seeds_later_stages=(2, bad)).validate()
    with pytest.raises(ValueError, match=r"set e\.g\. adaptive\.seeds_later_stages=\[2,2,2,1\]"):
        AdaptiveConfig(seeds_later_stages=2).validate()
    assert load_config("default").adaptive.seeds_first_stages == 3
    assert AdaptiveConfig().seeds_first_stages == 1
