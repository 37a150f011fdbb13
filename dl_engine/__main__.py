"""``python -m dl_engine <command> ...``: the engine without QGIS."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
