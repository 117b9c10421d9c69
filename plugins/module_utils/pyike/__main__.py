"""`python3 -m pyike daemon|ctl ...`: the engine's command line (pyiked / pyikectl)."""

import sys

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
