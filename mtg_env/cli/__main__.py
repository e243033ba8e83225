"""``python -m mtg_env.cli``: the ``mtg-env`` command."""

import sys

from mtg_env.cli.entry import main

if __name__ == "__main__":
    sys.exit(main())
