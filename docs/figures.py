"""The README's figures, from a sweep's plots (`make figures`): python docs/figures.py SWEEP_DIR [OUT_DIR].

Copies the sweep's IsoFLOP and allocation plots (what `lm-sweep run|fit` draws into
SWEEP_DIR/plots/) into OUT_DIR (default docs/) as small PNGs: at most 900 px wide, 256 colours,
each under MAX_BYTES, written atomically.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

FIGURES = ("isoflops", "allocations")
MAX_WIDTH = 900
MAX_BYTES = 100_000


def shrink(src: Path, dst: Path, max_width: int = MAX_WIDTH, colors: int = 256) -> int:
    """Resize src to at most max_width px wide, reduce it to `colors` colours, write dst; its size in bytes."""
    from PIL import Image
    with Image.open(src) as img:
        img = img.convert("RGB")
        if img.width > max_width:
            img = img.resize((max_width, round(img.height * max_width / img.width)), Image.Resampling.LANCZOS)
        img = img.quantize(colors=colors, method=Image.Quantize.FASTOCTREE)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, suffix=".png.tmp")
    os.close(fd)
    try:
        img.save(tmp, format="PNG", optimize=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dst.stat().st_size


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not 1 <= len(argv) <= 2:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    plots, out = Path(argv[0]) / "plots", Path(argv[1] if len(argv) > 1 else Path(__file__).parent)
    missing = [f"{plots / name}.png" for name in FIGURES if not (plots / f"{name}.png").exists()]
    if missing:
        print(f"missing {', '.join(missing)}: run the sweep first (make sweep) or refit it (lm-sweep fit {argv[0]})",
              file=sys.stderr)
        return 1
    for name in FIGURES:
        size = shrink(plots / f"{name}.png", out / f"{name}.png")
        if size > MAX_BYTES:
            print(f"{out / name}.png is {size} bytes > {MAX_BYTES}: lower MAX_WIDTH or the colours", file=sys.stderr)
            return 1
        print(f"{out / name}.png: {size // 1000} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
