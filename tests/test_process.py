"""The command runner: exit status passed on, modules frozen out of the collector, garbage still collected."""

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).parents[1]

COMMAND = """
import atexit
import gc
import weakref

FROZEN_AT_IMPORT = gc.get_freeze_count()  # the collector is paused while modules load: nothing frozen yet
ENABLED_AT_IMPORT = gc.isenabled()
KEPT = []


class Node:
    pass


def main():
    print("enabled", gc.isenabled())
    print("frozen", gc.get_freeze_count())
    print("frozen at import", FROZEN_AT_IMPORT)
    print("enabled at import", ENABLED_AT_IMPORT)
    KEPT.extend(Node() for _ in range(5000))  # made and kept by the command
    atexit.register(lambda: print("frozen at exit", gc.get_freeze_count() - frozen_in_main, flush=True))
    frozen_in_main = gc.get_freeze_count()
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle made while the command runs
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    print("cycle collected", gone() is None)
    return 3
"""


def run(tmp_path) -> subprocess.CompletedProcess:
    (tmp_path / "fake_command.py").write_text(textwrap.dedent(COMMAND))
    code = "from sim.process import run_command; run_command('fake_command')"
    env = {"PYTHONPATH": str(tmp_path), "PATH": ""}  # `-c` runs from the repository, which gives `sim`
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, check=False)


def test_exit_status_is_mains(tmp_path):
    result = run(tmp_path)
    assert result.returncode == 3, f"the process should exit with main()'s status 3: {result.stderr}"


def test_modules_are_frozen_and_the_collector_runs_for_the_command(tmp_path):
    lines = dict(line.rsplit(" ", 1) for line in run(tmp_path).stdout.splitlines())
    assert lines["enabled"] == "True", "the collector must be running while the command runs"
    assert int(lines["frozen"]) > 1000, "the objects the imports made should be frozen out of the collector's walks"
    assert lines["frozen at import"] == "0", "nothing should be frozen before the command's modules have loaded"
    assert lines["enabled at import"] == "False", "the collector should be paused while the modules load"
    assert int(lines["frozen at exit"]) >= 5000, "what the command made and kept should be frozen before exit"
    assert lines["cycle collected"] == "True", "a reference cycle made during the command must still be collected"
