"""``python -m tunnypy``: the ``tunnypy`` command, which lives in ``tunnypy.probe``."""

import sys

from .probe import main

if __name__ == "__main__":
    sys.exit(main())
