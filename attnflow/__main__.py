"""``python -m attnflow``: the command line, as the ``attnflow`` script runs it."""

import sys

from attnflow.dynamics.cli import main

if __name__ == "__main__":
    sys.exit(main())
