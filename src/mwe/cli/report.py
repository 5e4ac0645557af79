"""mwe report: one self-contained HTML report from sweep, evaluate and run folders."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from mwe.cli import args as a
from mwe.errors import MweError
from mwe.families import FAMILIES
from mwe.io import check_output_file

EPILOG = """\
examples:
  mwe report runs/sweep --out runs/report.html
  mwe report runs/sweep runs/demo runs/winogenerated --out report.html --title "My evals"

Takes sweep folders (mwe sweep), evaluate folders (mwe evaluate) and run folders (mwe run,
mwe demo: their dataset cards). Writes one self-contained HTML file (every image embedded,
opens offline) and every figure as a PNG in a folder beside it (for report.html:
report-plots/; for NAME.html: NAME-plots/).
"""


def register(sub: Any) -> None:
    sections = "; ".join(f.section.title for f in FAMILIES if f.section)
    p = a.command(
        sub, "report", run=execute,
        help="one self-contained HTML report from sweep, evaluate and run folders",
        description="Per-family summary, heatmap, per-dataset lines over the series with CIs, "
        "trends, each family's own section (" + sections + "), dataset cards.", epilog=EPILOG)
    p.add_argument("results", nargs="+", metavar="FOLDER", help="sweep, evaluate or run folders")
    p.add_argument("--out", "-o", required=True, metavar="FILE.html", help="the HTML file")
    p.add_argument("--title", metavar="TEXT", help="page title (default: mwe report)")


def execute(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise MweError(f"--out {out}: give an .html file name")
    check_output_file(out)
    try:  # lazy: matplotlib is slow to import and an optional extra
        from mwe.pipeline.report import write_report
    except ImportError as exc:
        raise MweError(f"mwe report needs matplotlib and jinja2 ({exc}); install mwe[report]") from exc
    start = time.perf_counter()
    path, pngs = write_report(args.results, out, args.title)
    print(f"report: {path} ({path.stat().st_size / 1e6:.1f} MB, {len(pngs)} figures embedded, "
          f"{time.perf_counter() - start:.0f} s)")
    if pngs:
        print(f"figures: {pngs[0].parent}/")
    return 0
