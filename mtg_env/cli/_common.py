"""What every subcommand shares: the one-line refusal (:class:`CLIError`), the parser that raises it, the
``--threads`` option and the ``--out`` check."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import NoReturn


class CLIError(SystemExit):
    """A refused command. :func:`main` prints ``mtg-env <command>: <message>`` as one line on stderr (no traceback)
    and exits with status 2, argparse's status for bad usage; ``str(error)`` is that line."""

    def __init__(self, message: str, prog: str | None = None, usage: bool = False):
        super().__init__(message)
        self.code = 2
        self.prog = prog
        self.usage = usage
        """Whether it is a usage error (argparse's): the line then points to ``--help``."""


class _Parser(argparse.ArgumentParser):
    """argparse's parser, its errors in the commands' one-line style (no usage block)."""

    def error(self, message: str) -> NoReturn:
        raise CLIError(message, prog=self.prog, usage=True)


def _threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: the suites' tensors are small, so more threads buy little and, "
        "on a busy machine, cost many times the run time; results are bit-identical at a fixed thread count)",
    )


def _set_threads(threads: int) -> None:
    if threads < 1:
        raise CLIError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def _check_out_dir(out: Path) -> None:
    """Refuse an output directory that cannot be written, with the reason (not a traceback after the run)."""
    for parent in (out, *out.parents):
        if parent.exists():
            if not parent.is_dir():
                what = "is a file" if parent == out else f"lies under the file {parent}"
                raise SystemExit(f"mtg-env: --out {out} {what}; give a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise SystemExit(f"mtg-env: --out {out}: {parent} is not writable")
            return
