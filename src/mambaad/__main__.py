"""``python -m mambaad``: the same as the ``mambaad`` console script."""

import sys

from mambaad.cli import main

sys.exit(main())
