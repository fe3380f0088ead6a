"""``python -m experiments run SPEC [--executor ...] [--workers N] [--scheduler ADDRESS] [--out DIR]``."""

import sys

from experiments.cli import main

sys.exit(main())
