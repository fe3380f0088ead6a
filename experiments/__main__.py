"""``python -m experiments run SPEC [--executor ...] [--out DIR] [--extend N] [--format csv]``, ``export DIR --csv``."""

import sys

from experiments.cli import main

sys.exit(main())
