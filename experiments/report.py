"""Fit and report a sweep: Approaches 1-3 (bootstrap intervals), the held-out extrapolation and the
forecast, E beside the language's entropy floor, WSD cooldowns beside their cosine twins, the time
the sweep spent; printed, and written as report.txt, report.json and plots into the sweep folder."""

from __future__ import annotations

import json
import os
from typing import Any

from experiments import report_stages as stages_report
from experiments import results as results_lib


def sweep_timing(folder: str) -> dict[str, Any] | None:
    """Where the sweep's wall time went, over every invocation that trained runs (timing.jsonl)."""
    from lm.io import read_jsonl
    parts = [t for t in read_jsonl(os.path.join(folder, "timing.jsonl")) if t.get("runs")]
    if not parts:
        return None
    total = {k: sum(t[k] for t in parts) for k in ("wall_s", "runs", "train_s", "compile_s", "eval_s",
                                                     "checkpoint_s", "data_s", "run_wall_s")}
    worker_s = sum(t["wall_s"] * t["workers"] for t in parts)
    return {**total, "invocations": len(parts), "workers": parts[-1]["workers"], "worker_s": worker_s,
            "train_fraction": total["train_s"] / worker_s if worker_s else None}


def fit_table(frame, convention: str, kind: str = "cosine", shapes=None):
    """(the table lm.scaling fits: run, N, D, C, loss, budget, shape; FLOPs per token as f(N)).

    `kind`: 'cosine' (ended cosine runs) or 'wsd_cooldown' (cooldown ends): each row is a finished
    horizon, never a mid-run evaluation. `shapes`: only these shape names (None = all).
    Under '6n' the fits use N = non-embedding parameters, so C = 6 N D holds exactly and
    f = None (lm.scaling's default). Under another convention N is the total count and f(N)
    interpolates the runs' own FLOPs per token (log-log). Rows come sorted by run id, not in
    the order the workers finished: a bootstrap resamples rows by position, and a seed mean
    sums in row order."""
    import numpy as np
    import pandas as pd

    ok = (frame["kind"] == kind) & (frame["status"] == "completed") & frame["loss"].notna()
    if shapes is not None:
        ok &= frame["shape"].isin(list(shapes))
    rows = frame[ok].sort_values("run_id", kind="mergesort")
    n_col = "N_nonembed" if convention == "6n" else "N"
    table = pd.DataFrame({
        "run": rows["run_id"].to_numpy(), "N": rows[n_col].astype(float).to_numpy(),
        "D": rows["D"].astype(float).to_numpy(), "C": rows["C"].astype(float).to_numpy(),
        "loss": rows["loss"].astype(float).to_numpy(), "budget": rows["budget"].astype(float).to_numpy(),
        "shape": (rows["shape"] if "shape" in rows else rows[n_col].astype(str)).to_numpy()})
    table = average_seeds(table)
    if convention == "6n":
        return table, None
    return table, loglog_interpolant(table["N"].to_numpy(), (table["C"] / table["D"]).to_numpy())


def average_seeds(table):
    """One row per (shape, budget, N, D): seed replicas (experiments.plan.seed_replicas) share them, and
    their row carries the mean loss, the first replica's run id (rows sorted by run id: the seed-0
    run's) and `seeds`, how many were averaged."""
    table = table.assign(seeds=1)
    key = ["shape", "budget", "N", "D"]     # a replica has its size's shape, N and D: only those merge
    if not table.duplicated(key).any():
        return table
    groups = table.groupby(key, sort=False, dropna=False)
    out = groups.agg(run=("run", "first"), C=("C", "mean"), loss=("loss", "mean"),
                     seeds=("loss", "size")).reset_index()
    return out[["run", "N", "D", "C", "loss", "budget", "shape", "seeds"]]


def seeds_lines(table, cfg, out: dict[str, Any]) -> list[str]:
    """The report's line on seed-averaged points, e.g. 'stage 1-2 losses are means of 3 seeds'."""
    averaged = table[table["seeds"] > 1]
    if averaged.empty:
        return []
    budgets = sorted(cfg.budgets)
    stages = sorted({budgets.index(b) + 1 for b in averaged["budget"] if b in budgets})
    counts = sorted({int(n) for n in averaged["seeds"]})
    out["seed_averaged"] = {"stages": stages, "seeds": counts}
    where = (f"stage {stages[0]}-{stages[-1]}" if len(stages) > 1 else f"stage {stages[0]}") if stages else "some"
    return [f"Seeds: {where} losses are means of {'/'.join(map(str, counts))} seeds (train.seed and data.seed "
            f"varied; {len(averaged)} of {len(table)} fitted points averaged)"]


def loglog_interpolant(n, f):
    """f(N) through the points (n, f), piecewise linear in log-log, continued past both ends along
    the end segments' slopes (slope 1, f proportional to N, with one distinct N): a fit's optimum
    may lie outside the sizes trained, and a flat continuation would make f(N) stop growing there."""
    import numpy as np

    log_n, inverse = np.unique(np.log(np.asarray(n, float)), return_inverse=True)
    log_f = np.bincount(inverse, np.log(np.asarray(f, float))) / np.bincount(inverse)
    if len(log_n) == 1:
        lo_slope = hi_slope = 1.0
    else:
        lo_slope = (log_f[1] - log_f[0]) / (log_n[1] - log_n[0])
        hi_slope = (log_f[-1] - log_f[-2]) / (log_n[-1] - log_n[-2])

    def flops_per_token(N):
        x = np.log(N)
        y = np.interp(x, log_n, log_f)
        y = np.where(x < log_n[0], log_f[0] + lo_slope * (x - log_n[0]), y)
        y = np.where(x > log_n[-1], log_f[-1] + hi_slope * (x - log_n[-1]), y)
        return float(np.exp(y))

    return flops_per_token


def horizon_curves(table):
    """Approach 1's curves from finished horizons only: per shape, the (D, final loss) of each of
    its runs in `table` (ended cosine runs, or WSD cooldown ends), as one curve named after the
    shape's first run. Mid-cosine evaluations, whose learning rate has not annealed, never enter."""
    import pandas as pd

    rows = []
    for _, g in table.groupby(["shape", "N"], sort=False):
        name = g.sort_values("D")["run"].iloc[0]
        rows += [dict(run=name, tokens=float(d), loss=float(l)) for d, l in zip(g["D"], g["loss"])]
    return pd.DataFrame(rows, columns=["run", "tokens", "loss"])


def sweep_flops(frame, shapes=None) -> dict[str, float]:
    """Training FLOPs (the C column, the sweep's convention) spent by the cosine runs and by the
    WSD runs (trunks plus the cooldowns' own steps past their branch points), on `shapes`."""
    done = frame[frame["status"].isin(["completed", "diverged"])]
    if shapes is not None:
        done = done[done["shape"].isin(list(shapes))]
    cosine = float(done.loc[done["kind"] == "cosine", "C"].sum())
    trunks = float(done.loc[done["kind"] == "wsd_constant", "C"].sum())
    own = 0.0
    for r in done[done["kind"] == "wsd_cooldown"].to_dict("records"):
        steps, branch = r.get("steps"), r.get("branch_step")
        own += float(r["C"]) * ((steps - branch) / steps if steps and branch is not None else 1.0)
    return {"cosine": cosine, "wsd": trunks + own, "wsd_trunks": trunks, "wsd_cooldowns": own}


def wsd_law(frame, cfg, fpt, cosine_res, n_bootstrap: int) -> tuple[list[str], dict[str, Any]]:
    """The WSD IsoFLOP sweep's fit (cooldown ends) beside the cosine sweep's on the same shapes and
    budgets: exponents a, b and Approach 3's law, and the FLOPs each used. Approach 3 keeps the cosine
    fit's objective (its walk-forward's Huber delta), so the two laws differ only by their data."""
    from lm.scaling import fit_approaches

    cons = cosine_res.approach3.constraints if cosine_res.approach3 is not None else None

    wsd = fit_table(frame, cfg.convention, kind="wsd_cooldown")[0]
    shapes = sorted(set(wsd["shape"]))
    cos = fit_table(frame, cfg.convention, shapes=shapes)[0]
    cos = cos[cos["budget"].isin(set(wsd["budget"]))]
    if len(cos) != len(fit_table(frame, cfg.convention)[0]):        # WSD covers only part of the sweep
        cosine_res = fit_approaches(cos, horizon_curves(cos), flops_per_token=fpt, budgets=cfg.budgets,
                                    n_bootstrap=n_bootstrap, constraints=cons)
    res = fit_approaches(wsd, horizon_curves(wsd), flops_per_token=fpt, budgets=cfg.budgets, n_bootstrap=n_bootstrap,
                         constraints=cons)
    flops = sweep_flops(frame, shapes)
    lines = [f"WSD IsoFLOP sweep ({len(wsd)} cooldowns on {len(shapes)} shapes) vs cosine on the same shapes "
             f"and budgets ({len(cos)} runs):",
             f"  {'approach':<12} {'a (cosine)':>22} {'a (WSD)':>22} {'|diff|':>7}"]
    a_cos = {r["approach"]: r for r in cosine_res.exponents_table().to_dict("records")}
    out: dict[str, Any] = {"flops": flops, "exponents": res.exponents_table().to_dict("records"),
                           "failed": [dict(approach=a, reason=r) for a, r in res.failed]}
    for r in out["exponents"]:
        c = a_cos.get(r["approach"])
        if c is not None:
            lines.append(f"  {r['approach']:<12} {c['a']:7.3f} [{c['a_lo']:.3f}, {c['a_hi']:.3f}] "
                         f"{r['a']:7.3f} [{r['a_lo']:.3f}, {r['a_hi']:.3f}] {abs(r['a'] - c['a']):7.3f}")
    lines += [f"  {a} (WSD): {r}" for a, r in res.failed]
    for name, fitted in (("cosine", cosine_res), ("WSD", res)):
        if fitted.approach3 is not None:
            est = fitted.approach3.estimates
            lines.append(f"  Approach 3 law ({name}): E {est['E'].value:.4f}, alpha {est['alpha'].value:.3f}, "
                         f"beta {est['beta'].value:.3f}")
    lines.append(f"  FLOPs used: cosine {flops['cosine']:.3g}, WSD {flops['wsd']:.3g} (trunks "
                 f"{flops['wsd_trunks']:.3g} + cooldowns {flops['wsd_cooldowns']:.3g}) = "
                 f"{100 * flops['wsd'] / flops['cosine']:.0f} % of cosine" if flops["cosine"] else "")
    return lines, out


def wsd_comparison(frame):
    """WSD cooldowns beside their cosine twins at equal (N, D)."""
    import pandas as pd

    done = frame[frame["status"] == "completed"].set_index("run_id")
    rows = []
    for run_id, row in done[done["kind"] == "wsd_cooldown"].iterrows():
        twin = run_id.replace("wsd-", "cos-", 1)
        if twin in done.index:
            rows.append(dict(shape=row["shape"], N=row["N"], D=row["D"], budget=row["budget"],
                             loss_cosine=done.loc[twin, "loss"], loss_wsd=row["loss"],
                             delta=row["loss"] - done.loc[twin, "loss"]))
    return pd.DataFrame(rows)


def _check_fittable(folder: str, frame, table) -> None:
    """Refuse to fit nothing, saying why (every run diverged, or no completed cosine run yet)."""
    if len(table):
        return
    diverged = frame[frame["status"] == "diverged"]
    if len(diverged) == len(frame):
        first = diverged.iloc[0]
        raise ValueError(f"every one of the {len(frame)} finished runs in {folder} diverged (e.g. {first['run_id']}: "
                         f"{first.get('message', '')}); nothing to fit. Lower optim.learning_rate (or clip "
                         "harder) and run the sweep again in a new folder")
    raise ValueError(f"{folder} has no completed cosine run to fit yet ({len(frame)} finished: "
                     f"{frame['status'].value_counts().to_dict()}); run the sweep further first")


def _fit_lines(res, fc, out: dict[str, Any]) -> list[str]:
    """Report lines for the approaches (failures named), grid vs VPNLS, IsoFLOP minima, forecasts."""
    lines = [res.summary()]
    for name, why in res.failed:
        lines.append(f"FIT FAILED: {name}: {why}")
    out["failed"] = [dict(approach=a, reason=r) for a, r in res.failed]
    if res.approach3 is not None:
        out["approach3_objective"] = res.approach3.constraints.as_dict()
    if res.approach3_vpnls is not None and res.approach3 is not None:
        g, v = res.approach3.fit, res.approach3_vpnls.fit
        lines.append(f"Approach 3, grid L-BFGS vs VPNLS: objective {g.objective:.6e} vs {v.objective:.6e}; "
                     f"grid {g.law}; VPNLS {v.law}")
    if res.approach2 is not None:  # its per-budget table is part of res.summary()
        out["isoflops"] = res.approach2.isoflops.to_dict("records")
    if fc is not None:
        lines.append(fc.summary())
        out["forecast"] = fc.errors().to_dict("records")
    elif "forecast_error" in out:
        lines.append(f"FIT FAILED: forecast: {out['forecast_error']}")
    return lines


def _wsd_lines(frame, out: dict[str, Any], fit: tuple) -> list[str]:
    """Report lines comparing WSD cooldowns with their cosine twins, then the WSD sweep's law beside
    the cosine one's (wsd_law; fit = (cfg, fpt, cosine fit, n_bootstrap)); none without WSD runs."""
    import warnings

    wsd = wsd_comparison(frame)
    if not len(wsd):
        return []
    lines = [f"WSD cooldowns vs cosine runs at equal (N, D) ({len(wsd)} pairs): loss(WSD) - loss(cosine) "
             f"mean {wsd['delta'].mean():+.4f}, range [{wsd['delta'].min():+.4f}, {wsd['delta'].max():+.4f}]"]
    for r in wsd.itertuples():
        lines.append(f"  {r.shape:>8} D={r.D:9.3g}  cosine {r.loss_cosine:.4f}  wsd {r.loss_wsd:.4f}  "
                     f"{r.delta:+.4f}")
    out["wsd"] = wsd.to_dict("records")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        law_lines, out["wsd_law"] = wsd_law(frame, *fit[:3], fit[3])
    return lines + law_lines


def walk_forward_choice(table, fpt, out: dict[str, Any]):
    """(Choice or None, Approach 3's FitConstraints, report lines): the walk-forward model choice on the
    fitted table (lm.scaling.walkforward.choose: refit every law on the smaller budgets, score its
    forecasts of the larger ones) and the objective Approach 3 is fitted with from it, the Huber delta
    of its best Approach 3 candidate (the one whose forecasts of later optima and runs missed least).
    Chinchilla's delta 1e-3 where the walk-forward cannot run (fewer than 4 budgets with an observed
    optimum; or it failed, which the line says) or no Approach 3 candidate forecast a split. Into
    out: "walk_forward"."""
    import warnings

    from lm.scaling.constraints import FitConstraints
    from lm.scaling.frontier import describe_delta
    from lm.scaling.walkforward import choose

    default = FitConstraints()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            choice = choose(table, flops_per_token=fpt)
    except Exception as err:  # noqa: BLE001 - a failed choice never hides the approaches' fits
        why = str(err) if isinstance(err, ValueError) else f"FAILED: {type(err).__name__}: {err}"
        out["walk_forward"] = dict(chosen=None, reason=why, a3_delta=default.delta)
        return None, default, [f"Walk-forward model choice: not run ({why}); Approach 3 keeps Chinchilla's "
                               f"Huber delta {default.delta:g}"]
    champ = choice.a3_champion()
    cons = FitConstraints(delta=champ.delta) if champ is not None else default
    row = choice.table.set_index("candidate")
    why = (f"its best candidate, {champ.name}, missed later optima by {100 * row.loc[champ.name, 'mean_error']:.2f} % "
           f"and later runs by {100 * row.loc[champ.name, 'run_error']:.2f} % (mean |error|)" if champ is not None
           else "no Approach 3 candidate forecast a split, so Chinchilla's")
    out["walk_forward"] = dict(chosen=choice.chosen, reason=choice.reason, a3_delta=cons.delta,
                               E=_model_E(choice.model), table=choice.table.to_dict("records"))
    return choice, cons, [choice.summary(), f"Approach 3 below is fitted with {describe_delta(cons.delta)} on log loss: {why}"]


def _a3_verdict(choice) -> str:
    """Why Approach 3's E is not the one to trust when the walk-forward chose another law ("" when it
    chose Approach 3): its forecasts of later runs failed pick.a3_checks, or the other law forecast
    later optima better."""
    from lm.scaling.pick import a3_checks

    if choice.model.candidate.kind == "a3":
        return ""
    champ = choice.a3_champion()
    if champ is None:
        return ": no Approach 3 fit forecast a later budget"
    pred = choice.predictions
    passed, why = a3_checks(pred[(pred["candidate"] == champ.name) & (pred["kind"] == "run")])
    if not passed:
        return f": Approach 3's law failed its forecasts of later runs ({why}), so its E is a parameter of a form " \
               "these data reject"
    return ": it forecast later budgets' optima better than Approach 3, whose runs passed their checks"


def _model_E(model) -> float | None:
    """The irreducible loss of a walk-forward Model's law (Approach 3's E or the frontier law's)."""
    if model is None:
        return None
    law = model.law
    return float(law.E if hasattr(law, "E") else law.law.E)


def _law_lines(res, ext, frame, out: dict[str, Any], choice=None) -> list[str]:
    """E beside the language's entropy floor (Approach 3's, the frontier law's and the walk-forward's
    choice's), exponents and allocations (into out), extrapolation."""
    lines = []
    floors = frame["entropy_floor"].dropna()
    floor = float(floors.mean()) if len(floors) else None
    if res.approach3 is not None:
        e = res.approach3.estimates["E"]
        lines.append(f"Irreducible loss: Approach 3's E = {e}" + (
            f"; the language's entropy floor = {floor:.4f} nats/token (E - floor = {e.value - floor:+.4f})"
            if floor is not None else "; no entropy floor known for this data"))
        out["E"] = dict(value=e.value, lo=e.lo, hi=e.hi)
    if res.frontier is not None and "E" in res.frontier.estimates:
        # A second estimate of the same floor: the law of the budgets' minima alone (Approach 3's E is
        # a parameter of its L(N, D) form, the frontier's of L_opt(C)); where they differ, say both.
        e = res.frontier.estimates["E"]
        lines.append(f"  the frontier law's E = {e}" + (f" (E - floor = {e.value - floor:+.4f})" if floor is not None else ""))
        out["E_frontier"] = dict(value=e.value, lo=e.lo, hi=e.hi)
    if choice is not None and choice.model is not None:
        # Which E to believe: the law whose forecasts of budgets it had not seen held best.
        e = _model_E(choice.model)
        own = " (its own fit, on parabola minima through up to 5 sizes)" if choice.model.candidate.kind == "frontier" else ""
        lines.append(f"  the walk-forward's choice, {choice.chosen}{own}, has E = {e:.4f}"
                     + (f" (E - floor = {e - floor:+.4f}, {100 * (e - floor) / floor:+.1f} %)" if floor is not None else "")
                     + _a3_verdict(choice))
    out["entropy_floor"] = floor
    out["exponents"] = res.exponents_table().to_dict("records")
    out["allocations"] = res.allocation_table().to_dict("records")
    if "extrapolation_error" in out:
        lines.append(f"FIT FAILED: extrapolation: {out['extrapolation_error']}")
    if ext is not None:
        lines.append(ext.summary())
        out["extrapolation"] = dict(budget=ext.held_out_budget, predicted=ext.predicted_loss,
                                    observed=ext.observed_loss, error=ext.error, observed_kind=ext.observed_kind)
    return lines


def report(folder: str, n_bootstrap: int | None = None, formats=("png",)) -> dict[str, Any]:
    """Fit Approaches 1-3 (bootstrap intervals), print the report, write report.json, report.txt
    and the plots (IsoFLOP parabolas, N_opt(C) and D_opt(C), ...) into the sweep folder. The
    forecast of held-back budgets runs in a thread beside the approaches' fits (the same numbers as
    one after the other; two cores finish sooner). n_bootstrap: resamples (None: sized to the
    table, lm.scaling.bootstrap.sized_resamples); formats: the figures' files (png and/or svg)."""
    from lm.scaling.plots import write_plots

    cfg = results_lib.load_sweep_config(folder)
    frame = results_lib.load_results(folder)
    if frame.empty:
        raise ValueError(f"{folder} has no finished runs yet; run the sweep first")
    if cfg.transfer is not None:
        from experiments.transfer import report_transfer
        lines, out = report_transfer(folder, frame)
        return _write_report(folder, lines, out)
    if cfg.encdec is not None:
        from experiments.encdec import report_encdec
        lines, out = report_encdec(folder, frame, n_bootstrap=min(n_bootstrap or 200, 200))
        return _write_report(folder, lines, out)
    table, fpt = fit_table(frame, cfg.convention)
    _check_fittable(folder, frame, table)
    from lm.scaling.bootstrap import sized_resamples
    n_bootstrap = sized_resamples(len(table), n_bootstrap)
    lines = [f"== Sweep {cfg.name!r} in {folder}: {len(frame)} finished runs "
             f"({int((frame['status'] == 'diverged').sum())} diverged, left out of fits); "
             f"{len(table)} cosine runs fitted; C in {cfg.convention!r} FLOPs, N = "
             f"{'non-embedding' if cfg.convention == '6n' else 'total'} parameters"]
    out: dict[str, Any] = {"runs": len(frame), "fitted": len(table), "convention": cfg.convention}
    lines += seeds_lines(table, cfg, out)
    choice, cons, wf_lines = walk_forward_choice(table, fpt, out)
    lines += wf_lines
    res, fc, ext, warned = _fit_all(table, fpt, cfg, n_bootstrap, out, cons)
    lines += _fit_lines(res, fc, out)
    lines += _guarded(out, "agreement", lambda: stages_report.agreement_lines(res, table, fpt, out)) or []
    lines += _guarded(out, "track_record", lambda: stages_report.track_record_lines(folder, out)) or []
    lines += _guarded(out, "corpus", lambda: stages_report.corpus_lines(folder, frame, out)) or []
    lines += _law_lines(res, ext, frame, out, choice)
    lines += _wsd_lines(frame, out, (cfg, fpt, res, n_bootstrap))
    plots = _guarded(out, "plots", lambda: [str(p) for p in write_plots(res, table, os.path.join(folder, "plots"),
                                                                        fpt, formats)])
    if plots is not None:
        lines.append(f"Plots: {', '.join(sorted({os.path.basename(p) for p in plots}))} in {os.path.join(folder, 'plots')}")
    else:
        lines.append(f"FIT FAILED: plots: {out['plots_error']}")
    lines += [f"Warning: {m}" for m in warned if any(s in m for s in ("minimum", "repeat an (N, D)", "wrong units"))]
    timing = sweep_timing(folder)
    if timing:
        lines.append(f"Training: {timing['runs']} runs in {timing['wall_s']:.0f} s wall over {timing['invocations']} "
                     f"invocation(s) on {timing['workers']} worker(s); {100 * timing['train_fraction']:.1f} % of "
                     f"worker time inside training steps (compile {timing['compile_s']:.0f} s, evaluation "
                     f"{timing['eval_s']:.0f} s, checkpoints {timing['checkpoint_s']:.0f} s)")
        out["timing"] = timing
    return _write_report(folder, lines, out)


def _fit_all(table, fpt, cfg, n_bootstrap: int, out: dict[str, Any], cons=None):
    """(fit_approaches' result, the forecast of held-back budgets, the extrapolation, the distinct
    warning messages sorted). The forecast and the extrapolation run in a thread beside the
    approaches' fits, while their programs compile ahead: the same numbers as one after the other.
    cons: Approach 3's FitConstraints (walk_forward_choice), for its fits and its held-back forecasts."""
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    from lm.scaling import extrapolation, fit_approaches
    from lm.scaling.forecast import forecast

    from lm.scaling.constraints import FitConstraints
    a3_cons = cons if cons is not None else FitConstraints()
    ahead = _compile_ahead(table, fpt, n_bootstrap, a3_cons)

    def held_back():
        memo: dict = {}  # the extrapolation's grid fit is the forecast's k = 1 fit: run once
        fc = _guarded(out, "forecast", lambda: forecast(table.copy(), flops_per_token=fpt, constraints=a3_cons,
                                                        n_bootstrap=min(n_bootstrap, 200), memo=memo))
        return fc, _guarded(out, "extrapolation", lambda: extrapolation(table.copy(), flops_per_token=fpt, memo=memo,
                                                                        delta=a3_cons.delta))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="held-back") as pool:
            held = pool.submit(held_back)
            res = fit_approaches(table, horizon_curves(table), flops_per_token=fpt, budgets=cfg.budgets,
                                 n_bootstrap=n_bootstrap, vpnls=True, constraints=a3_cons)
            fc, ext = held.result()
        if ahead is not None:
            ahead.join()
    return res, fc, ext, sorted({str(w.message) for w in caught})   # once each, whichever thread warned


def _compile_ahead(table, fpt, n_bootstrap: int, cons):
    """Start compiling the fits' L-BFGS programs (Approach 3's grid fit under its objective `cons`, the
    offset laws': the frontier's and the loss-vs-compute figure's) in a background thread
    (lm.scaling.pipeline)."""
    from lm.scaling.fitoptions import FitOptions
    from lm.scaling.pipeline import compile_fits_ahead, offset_points
    opts = FitOptions(bootstrap=n_bootstrap, constraints=cons)
    try:
        return compile_fits_ahead(len(table), offset_points(table, "runs", opts, fpt, figure=True), opts)
    except ValueError:  # a table the fits refuse: they say why themselves
        return None


def _write_report(folder: str, lines: list[str], out: dict[str, Any]) -> dict[str, Any]:
    """Print the report and write report.txt and report.json into the sweep folder."""
    from lm.io import atomic_write_json, atomic_write_text
    text = "\n".join(lines)
    print(text, flush=True)
    atomic_write_text(os.path.join(folder, "report.txt"), text + "\n")
    atomic_write_json(os.path.join(folder, "report.json"), json.loads(json.dumps(out, default=_plain)))
    return out


def _guarded(out: dict[str, Any], name: str, fn):
    """fn() or None, recording out[name + '_error'] when it raises: one part of the report failing
    (a fit on too few budgets, a plot) never hides the others or fails the sweep."""
    try:
        return fn()
    except Exception as err:  # noqa: BLE001
        out[f"{name}_error"] = err if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"
        out[f"{name}_error"] = str(out[f"{name}_error"])
        return None


def _plain(x: Any) -> Any:
    import numpy as np
    return x.item() if isinstance(x, np.generic) else str(x)
