"""``mtg-env audit``: the paper's theorems checked on games where the answer is known."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mtg_env.cli._common import _check_out_dir, _threads_option


def _audit_parser(sub: Any) -> None:
    audit = sub.add_parser(
        "audit",
        help="check the paper's theorems on games where the answer is known; write a Markdown report",
        description="Run the audit experiments (Theorem 3, Assumption 2, Definition 1 / Proposition 2, "
        "Remarks 10 and 13, Theorem 1) and write DIR/report.md, DIR/audit.json and PNG figures.",
    )
    audit.add_argument("--out", type=Path, default=Path("runs/audit"), help="output directory (default runs/audit)")
    audit.add_argument("--quick", action="store_true", help="small sizes: about a minute")
    audit.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    audit.add_argument(
        "--stability",
        action="store_true",
        help="the open directions instead: noise models (Assumption 7) and regularisation (Assumption 6)",
    )
    _threads_option(audit)


def _audit(args: argparse.Namespace) -> int:
    from mtg_env.audit import run_audit

    _check_out_dir(args.out)
    sections = run_audit(args.out, quick=args.quick, progress=not args.no_progress, stability=args.stability)
    for section in sections:
        print(f"- {section.title}: {section.finding}")
    print(f"wrote {args.out / 'report.md'}")
    return 0
