"""``python -m synthgate``: the same as the ``synthgate`` command."""

import sys

from synthgate.cli import main

sys.exit(main())
