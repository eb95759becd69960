"""The encoder-decoder sweep's report (`lm-sweep run encdec`): L(N_e, N_d) after Ghorbani et al. 2021.

From a sweep with `encdec=EncDecConfig(...)` (one cosine run per width x encoder depth x decoder
depth, all of one length, on paired data) this fits

    L(N_e, N_d) = beta (N_e / N_e_ref)^-p_e (N_d / N_d_ref)^-p_d + L_inf      (lm.scaling.ghorbani)

to the runs' final evaluation losses, with N_e = the encoder's parameters (its layers and final
norm) and N_d = the decoder's non-embedding parameters without the unembedding (its layers, each
with its cross-attention, and its final norm): the parts that grow with depth. It reports the
exponents with bootstrap intervals, E against the task's exact floor, or why these data cannot
identify the exponents, and plots loss against each side's size (plots/encdec.png).

    table = encdec_table(load_results(folder)); fit = fit_ghorbani(table.N_e, table.N_d, table.loss)
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def side_sizes(model: dict[str, Any]) -> tuple[int, int]:
    """(N_e, N_d) of a run's model config dict (see the module docstring)."""
    from lm import flops as flops_lib
    from lm.config import ModelConfig
    from lm.config_fields import from_dict

    counts = flops_lib.param_counts(from_dict(ModelConfig, model))
    return counts.encoder, counts.non_embedding - counts.encoder - counts.unembedding


def encdec_table(frame: "pd.DataFrame") -> "pd.DataFrame":
    """One row per completed encoder-decoder run: run_id, d_model, n_encoder_layers, n_layers, N_e, N_d,
    loss (final evaluation), entropy_floor."""
    import pandas as pd

    rows = frame[(frame["status"] == "completed") & frame["loss"].notna()]
    out = []
    for r in rows.to_dict("records"):
        model = r["config"]["model"]
        if not model.get("n_encoder_layers"):
            continue
        n_e, n_d = side_sizes(model)
        out.append(dict(run_id=r["run_id"], d_model=model["d_model"], n_encoder_layers=model["n_encoder_layers"],
                        n_layers=model["n_layers"], N_e=n_e, N_d=n_d, loss=float(r["loss"]),
                        entropy_floor=r.get("entropy_floor")))
    if not out:
        raise ValueError("no completed encoder-decoder run in this table; run a sweep with encdec=EncDecConfig(...), "
                         "e.g. `lm-sweep run encdec`")
    return pd.DataFrame(out).sort_values(["d_model", "n_encoder_layers", "n_layers"], ignore_index=True)


def report_encdec(folder: str, frame: "pd.DataFrame", n_bootstrap: int = 200) -> tuple[list[str], dict[str, Any]]:
    """(report lines, report.json values) of an encoder-decoder sweep; writes plots/encdec.png."""
    import numpy as np

    from lm.scaling.ghorbani import fit_ghorbani
    from lm.scaling.plots import plot_ghorbani, save_figure

    table = encdec_table(frame)
    lines = [f"== Encoder-decoder sweep in {folder}: {len(table)} completed runs of {len(frame)} finished"]
    lines += [f"  {r.run_id:<18} N_e {r.N_e:>8} N_d {r.N_d:>8}  loss {r.loss:.4f}" for r in table.itertuples()]
    out: dict[str, Any] = {"runs": len(frame), "fitted": len(table), "table": table.to_dict("records")}
    fit = fit_ghorbani(table["N_e"], table["N_d"], table["loss"], n_bootstrap=n_bootstrap)
    lines.append(fit.summary())
    floors = table["entropy_floor"].dropna()
    if len(floors):
        floor = float(floors.mean())
        lines.append(f"  L_inf - the task's floor ({floor:.4f} nats/token) = {fit.law.L_inf - floor:+.4f}; best run "
                     f"{table['loss'].min() - floor:+.4f} above it")
        out["entropy_floor"] = floor
    out["law"] = dict(beta=fit.law.beta, p_e=fit.law.p_e, p_d=fit.law.p_d, L_inf=fit.law.L_inf,
                      N_e_ref=fit.law.N_e_ref, N_d_ref=fit.law.N_d_ref)
    out["estimates"] = {k: dict(value=e.value, se=e.se, lo=e.lo, hi=e.hi) for k, e in fit.estimates.items()}
    out["identified"], out["unidentified"] = fit.identified, list(fit.unidentified)
    out["max_abs_log_residual"] = float(np.max(np.abs(fit.residuals)))
    plots = save_figure(plot_ghorbani(fit, table["N_e"], table["N_d"], table["loss"]),
                        os.path.join(folder, "plots", "encdec"))
    lines.append(f"Plots: {', '.join(os.path.basename(str(p)) for p in plots)} in {os.path.join(folder, 'plots')}")
    return lines, out
