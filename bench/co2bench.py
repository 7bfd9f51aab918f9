"""Entry point of ``bench/run``: ``python bench/co2bench.py [--quick] [--json PATH]``."""

import sys

from benchlib.main import main

if __name__ == "__main__":
    sys.exit(main())
