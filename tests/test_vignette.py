"""One dyad's course: picking a client, the plain-language account, the timeline, the CLI."""

import pytest

from analysis.figures import save
from analysis.vignette import PICKS, VignetteError, narrative, pick_client
from analysis.vignette_figure import vignette_figure
from sim import simulate
from sim.records import DROPOUT_TEXT
from tests.test_cli import cli


@pytest.fixture(scope="module")
def run():
    return simulate("baseline", clients=300, seed=4)


@pytest.mark.parametrize("pick", list(PICKS))
def test_pick_selects_lowest_matching_client(run, pick):
    clients = run.clients
    client_id = pick_client(clients, pick)
    row = clients.set_index("client_id").loc[client_id]
    matches = {
        "dropout": row["end_type"] == "dropout",
        "recovered": row["recovery"],
        "deteriorated": row["reliable_deterioration"],
        "rupture-repaired": row["repairs"] >= 1,
    }
    assert matches[pick], f"--pick {pick} chose client {client_id}, who does not match"
    earlier = clients[clients["client_id"] < client_id]
    assert not PICKS[pick][1](earlier).any(), "--pick should choose the lowest matching id"


def test_narrative_of_a_dropout_names_the_cause(run):
    client_id = pick_client(run.clients, "dropout")
    text = narrative(run.clients, run.sessions, run.events, client_id, "baseline", 26)
    cause = run.clients.set_index("client_id").loc[client_id, "dropout_cause"]
    ending = text.split("## How it ended")[1]
    assert "dropped out" in ending and DROPOUT_TEXT[cause] in ending, ending
    for part in ("attachment", "expectancy", "intake PHQ-9", "empathy", "cultural match", "follow-up"):
        assert part in text, part


def test_a_completed_course_says_whether_every_session_was_attended_or_the_window_closed(run):
    done = run.clients[run.clients["end_type"] == "completed"]
    full = done[done["sessions_attended"] == 16]["client_id"].iloc[0]
    short = done[done["sessions_attended"] < 16]["client_id"].iloc[0]
    full_end = narrative(run.clients, run.sessions, run.events, full, planned_sessions=16).split("## How it ended")[1]
    assert "all 16 planned sessions attended" in full_end, full_end
    attended = done.set_index("client_id").loc[short, "sessions_attended"]
    short_end = narrative(run.clients, run.sessions, run.events, short, planned_sessions=16).split("## How it ended")[1]
    assert f"window closed with {attended} of 16 planned sessions" in short_end, short_end
    log = run.events[(run.events["client_id"] == short) & (run.events["event"] == "completed")]
    assert log["text"].str.contains("window closed").all(), "the event log should say the window closed"


def test_narrative_tells_ruptures_and_repairs_session_by_session(run):
    client_id = pick_client(run.clients, "rupture-repaired")
    text = narrative(run.clients, run.sessions, run.events, client_id)
    course = text.split("## The course, session by session")[1].split("## How it ended")[0]
    lines = [line for line in course.splitlines() if line.startswith("- session")]
    assert any("rupture" in line for line in lines) and any("repaired" in line for line in lines), course
    first = [int(line.split()[2].split("-")[0].rstrip(":")) for line in lines]
    assert first == sorted(first), "the course is told in session order"


def test_bad_client_and_empty_pick_are_user_errors(run):
    with pytest.raises(VignetteError, match="no client 5000"):
        narrative(run.clients, run.sessions, run.events, 5000)
    with pytest.raises(VignetteError, match="no client in this run"):
        pick_client(run.clients.iloc[:0], "dropout")


def test_figure_is_written(run, tmp_path):
    client_id = pick_client(run.clients, "rupture-repaired")
    paths = save(vignette_figure(run.clients, run.sessions, client_id, "test"), tmp_path, "vignette")
    assert all(p.stat().st_size > 0 for p in paths)


def test_cli_vignette_writes_outputs(tmp_path):
    r = cli("vignette", "baseline", "--pick", "dropout", "--clients", 150, "--seed", 2, "--out", tmp_path, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for name in ("vignette.md", "vignette.png", "vignette.svg"):
        assert (tmp_path / name).stat().st_size > 0, name
    text = (tmp_path / "vignette.md").read_text()
    assert "dropped out" in text and text.strip() in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--client", "150", "--clients", "150"), "no client 150"),
        (("--pick", "deteriorated", "--clients", "1", "--seed", "1"), "no client in this run"),
    ],
)
def test_cli_vignette_bad_input_exits_2(tmp_path, args, message):
    r = cli("vignette", "baseline", *args, "--out", tmp_path, cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and message in r.stderr
