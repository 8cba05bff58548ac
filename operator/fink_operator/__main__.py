"""`python -m fink_operator ...`, the same as the `fink-operator` console script."""

import sys

from .cli import main

sys.exit(main())
