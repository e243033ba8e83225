"""The ``mtg-env`` console script: the parser of every subcommand, :func:`main` and the one-line refusals."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mtg_env.cli._common import CLIError, _Parser, _set_threads
from mtg_env.cli.audit import _audit, _audit_parser
from mtg_env.cli.bench import _bench, _bench_parser
from mtg_env.cli.coalitions import _coalitions, _coalitions_parser
from mtg_env.cli.meta_train import _meta_train, _meta_train_parser
from mtg_env.cli.run import _run, _run_parser


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mtg-env", description="Multi-task learning games (PettingZoo).")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    _audit_parser(sub)
    _meta_train_parser(sub)
    _bench_parser(sub)
    _coalitions_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mtg-env`` console script.

    A refused command (bad arguments, an unusable file or directory, a run that cannot go on) prints one line,
    ``mtg-env <command>: <why>``, on stderr and raises :class:`CLIError`: exit status 2, no traceback.
    """
    parser = _parser()
    command = None
    try:
        args, extra = parser.parse_known_args(argv)
        command = args.command
        if extra:  # named after the command they were given to, not the top-level parser
            raise CLIError(f"unrecognized arguments: {' '.join(extra)}", usage=True)
        _set_threads(args.threads)
        return _dispatch(parser, args)
    except SystemExit as exc:
        if not isinstance(exc, CLIError) and not isinstance(exc.code, str):
            raise  # --help, or an exit status
        raise _report(exc, command) from None


def _report(exc: SystemExit, command: str | None) -> CLIError:
    """The one-line error of a refused command, printed on stderr (every subcommand's refusals pass here: a
    :class:`CLIError`, argparse's errors, or a ``SystemExit("message")``)."""
    message = str(exc) if isinstance(exc, CLIError) else str(exc.code)
    prog = f"mtg-env {command}" if command else (getattr(exc, "prog", None) or "mtg-env")
    for prefix in (f"{prog}: ", "mtg-env: "):
        message = message.removeprefix(prefix)
    line = f"{prog}: " + " ".join(part.strip() for part in message.splitlines() if part.strip())  # one line
    if getattr(exc, "usage", False):
        line += f" (see {prog} --help)"
    print(line, file=sys.stderr)
    return CLIError(line, prog=prog)


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "run":
        return _run(args)
    if args.command == "meta-train":
        return _meta_train(args)
    if args.command == "audit":
        return _audit(args)
    if args.command == "bench":
        return _bench(parser, args)
    if args.command == "coalitions":
        return _coalitions(args)
    return 2  # pragma: no cover - argparse enforces a command
