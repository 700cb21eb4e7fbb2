"""``videojepa report RUN_DIR``: one self-contained HTML page about a run."""
from __future__ import annotations

import argparse
import sys


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "report", help="one self-contained HTML page about a run (curves, collapse check, masks, features)",
        description="Write one HTML page about a run directory: its config, summary, curves from metrics.csv, "
                    "the collapse check, the run's masks drawn on its data, what the encoder sees (PCA of its "
                    "features) and, with a trained decoder in RUN_DIR/decoder/, its decoded predictions. The page "
                    "embeds every image and needs no server or network: open it in any browser.",
        epilog="examples:\n  videojepa report runs/cpu_demo\n"
               "  videojepa report runs/cpu_demo --out /tmp/cpu_demo.html --video clips/val.csv",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (videojepa pretrain / finetune / world train)")
    p.add_argument("--out", default=None, help="the HTML file (default: RUN_DIR/report.html); pictures are also "
                   "written to <name>_files/ beside it")
    p.add_argument("--video", default=None, metavar="SPEC",
                   help="the video of the features / predictions sections: a file, folder, CSV index or "
                        "synthetic:SPLIT (default: synthetic:val for runs on synthetic data, else the first of "
                        "data.datasets)")
    p.add_argument("--no-features", action="store_true", help="leave out the features section (no model is run)")
    p.add_argument("--no-predictions", action="store_true", help="leave out the predictions section")
    p.set_defaults(func=_run_report)


def _run_report(a) -> int:
    from ..viz.report import write_report

    try:
        out = write_report(a.run_dir, a.out, video=a.video, features=not a.no_features,
                           predictions=not a.no_predictions)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"open {out} in a browser (self-contained: no server, no network)")
    return 0
