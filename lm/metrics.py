"""Where training metrics go: a JSONL file, TensorBoard event files and a terminal progress bar.

Only process 0 writes. Every sink receives the same flat dict of floats per logged step.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from lm.io import append_jsonl, read_jsonl, rewind_jsonl


class MetricsWriter:
    def __init__(self, out_dir: str, total_steps: int, start_step: int = 0, *, tensorboard: bool = True,
                 progress: bool = True, enabled: bool = True):
        self.enabled = enabled
        self.path = os.path.join(out_dir, "metrics.jsonl")
        self._tb = None
        self._bar = None
        if not enabled:
            return
        os.makedirs(out_dir, exist_ok=True)
        rewind_jsonl(self.path, start_step)   # a resumed run rewrites what came after its checkpoint
        if tensorboard:
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(os.path.join(out_dir, "tensorboard"))
        if progress:
            from tqdm import tqdm
            self._bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step",
                             file=sys.stderr, dynamic_ncols=True, leave=False)

    def write(self, step: int, values: dict[str, Any]) -> None:
        """Record `values` (floats) at `step`; the JSONL row also carries the step."""
        if not self.enabled:
            return
        append_jsonl(self.path, {"step": step, **values})
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, step)
        if self._bar is not None:
            shown = {k: f"{v:.4g}" for k, v in values.items() if k in ("loss", "eval_loss", "tokens_per_s", "mfu")}
            self._bar.set_postfix(shown, refresh=False)

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def read_eval_curve(path: str, tokens_per_step: int) -> list[dict[str, float]]:
    """Every evaluation logged in a metrics.jsonl: [{step, tokens, eval_loss}] by step. What a
    killed-and-resumed run leaves reads as it should: a step logged twice (the newest kept), a torn
    last line (dropped); a null loss (a NaN/Inf evaluation in strict JSON) reads as NaN."""
    by_step = {int(r["step"]): float("nan") if r["eval_loss"] is None else float(r["eval_loss"])
               for r in read_jsonl(path) if isinstance(r, dict) and "eval_loss" in r}
    return [{"step": s, "tokens": s * tokens_per_step, "eval_loss": v} for s, v in sorted(by_step.items())]
