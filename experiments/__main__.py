"""``python -m experiments run SPEC [--executor ...] [--out DIR] [--extend N] [--format csv]``, ``export DIR --csv``."""

from sim.process import run_command

run_command("experiments.cli")
