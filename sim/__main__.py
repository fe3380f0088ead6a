"""``python -m sim``: the command line (sim/cli.py)."""

from sim.process import run_command

run_command("sim.cli")
