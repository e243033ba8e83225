"""The ``mtg-env`` command: ``run`` plays the paper's agents on a suite, ``audit`` checks the paper's theorems,
``bench`` benchmarks update policies, ``coalitions`` measures the tasks' cooperative game.

One module per subcommand (:mod:`~mtg_env.cli.run`, :mod:`~mtg_env.cli.audit`, :mod:`~mtg_env.cli.meta_train`,
:mod:`~mtg_env.cli.bench`, :mod:`~mtg_env.cli.coalitions`); :mod:`~mtg_env.cli.entry` holds the parser and
:func:`main`, the console script's entry point (``mtg_env.cli:main``)."""

from __future__ import annotations

from mtg_env.cli._common import CLIError
from mtg_env.cli.entry import main
from mtg_env.cli.meta_train import parse_budget
from mtg_env.cli.run import DEFAULT_AGENT

__all__ = ["DEFAULT_AGENT", "CLIError", "main", "parse_budget"]
