"""docs/teaching.md: every command in the guide runs, and every figure it names is written.

The commands are read from the guide's ``sh`` blocks and run through the command line's entry point
(:func:`sim.cli.main`), in a temporary directory, at a smaller size (fewer clients and replicates)
so the test stays quick: the guide's wording is checked against the program, not its numbers. The ``app`` commands are
started together, each on a free port, checked to serve the page, and stopped.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time

import pytest

from sim.cli import main
from tests.test_cli import ROOT

GUIDE = ROOT / "docs" / "teaching.md"
SMALL = {
    "run": {"--clients": "150"},
    "vignette": {"--clients": "200"},
    "compare": {"--clients": "100", "--replicates": "2"},
}


def guide_commands() -> list[list[str]]:
    """The ``python -m sim`` commands of the guide's sh blocks, as argument lists after ``python -m sim``."""
    blocks = re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), flags=re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines() if line.strip()]
    assert all(line.startswith("python -m sim ") for line in lines), "every line of a command block is a command"
    return [shlex.split(line)[3:] for line in lines]


def smaller(args: list[str]) -> list[str]:
    """The command at the test's size: the options of SMALL set (replaced when the guide gives them)."""
    out = list(args)
    for option, value in SMALL.get(args[0], {}).items():
        if option in out:
            out[out.index(option) + 1] = value
        else:
            out += [option, value]
    return out


def test_the_guide_has_three_sessions_each_with_commands_figures_pointers_and_questions():
    text = GUIDE.read_text()
    sessions = re.split(r"\n## Session \d: ", text)[1:]
    titles = [s.splitlines()[0] for s in sessions]
    assert titles == ["Why clients leave", "Ruptures and repair", "Culture and humility"], titles
    for title, body in zip(titles, sessions, strict=True):
        assert "```sh" in body and "| file | what it shows |" in body, title
        assert "**What to point at.**" in body and "**Questions for trainees.**" in body, title
        assert "python -m sim app" in body, f"{title}: the session uses the browser app"
    commands = [args[0] for args in guide_commands()]
    assert {"run", "compare", "vignette", "app"} <= set(commands)


def test_every_command_in_the_guide_runs_and_writes_the_figures_it_names(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the guide's relative --out paths land here
    for args in guide_commands():
        if args[0] == "app":
            continue
        status = main(smaller(args))  # in this process: the same entry point as python -m sim, without a start-up
        err = capsys.readouterr().err
        assert status == 0, f"python -m sim {' '.join(args)} failed:\n{err[-2000:]}"
    named = sorted(set(re.findall(r"results/teach/[\w\-/]+\.(?:png|csv|md)", GUIDE.read_text())))
    assert named, "the guide names the files its commands write"
    missing = [name for name in named if not (tmp_path / name).is_file()]
    assert not missing, f"the guide names files no command wrote: {missing}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_app_command_in_the_guide_serves_its_page():
    apps = [args for args in guide_commands() if args[0] == "app"]
    assert len(apps) == 3, "one app command per session"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    running = []
    try:
        for args in apps:
            port = _free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "sim", *args, "--port", str(port)],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            running.append((args, port, proc))
        deadline = time.monotonic() + 180
        for args, port, proc in running:
            while True:
                assert proc.poll() is None, f"python -m sim {' '.join(args)} exited with {proc.returncode}"
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"python -m sim {' '.join(args)} did not serve within 180 s"
                    time.sleep(0.5)
    finally:
        for _, _, proc in running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for args, _, proc in running:
            try:
                assert proc.wait(timeout=30) == 0, f"python -m sim {' '.join(args)} did not stop cleanly"
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail(f"python -m sim {' '.join(args)} did not stop on SIGTERM")
