"""The table of published targets: complete, consistent, cited, and computable from clients.csv."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.targets import SETS, STATISTICS, Target, load_targets

STYLIZED_FACTS = Path(__file__).resolve().parents[2] / "shared" / "stylized_facts.md"
CLIENT_COLUMNS = (
    "client_id therapist_id attachment_style attachment_anxiety attachment_avoidance client_culture therapist_culture "
    "cultural_match expectancy therapist_empathy therapist_uses_feedback perceived_empathy intake_phq9 final_phq9 "
    "followup_phq9 sessions_attended end_type end_session dropout_cause dropout_category early_alliance "
    "mean_alliance early_goal_agreement early_change ruptures repairs reliable_improvement reliable_deterioration "
    "recovery reliable_recovery sudden_gain sudden_gain_reversed finished_course not_on_track relapse relapse_week "
    "caseness_week"
).split()


@pytest.fixture(scope="module")
def targets() -> list[Target]:
    return load_targets()


def _number(text: str) -> float:
    """First number in ``text``, as a proportion when its token carries a % sign."""
    token = next(t for t in text.split() if re.search(r"\d", t))
    value = float(re.search(r"-?\d*\.?\d+", token).group())
    return value / 100 if "%" in token else value


def _band(text: str) -> tuple[float, float]:
    low, high = text.replace("−", "-").split("–")
    scale = 100 if "%" in text else 1
    return float(low.strip(" %")) / scale, float(high.strip(" %")) / scale


# The ids of shared/stylized_facts.md, for a clone without the shared brief beside it.
CALIBRATION_IDS = {
    "dropout",
    "alliance_outcome",
    "alliance_dropout",
    "empathy_outcome",
    "repair_outcome",
    "match_alliance",
    "match_outcome",
    "deterioration",
    "therapist_icc",
}


# Fitted besides them, each with a note saying why: without the response rate nothing fixes how much
# clients change, and without the reason mix nothing splits dropout between circumstances and therapy.
EXTRA_CALIBRATION_IDS = {
    "response",
    "dropout_reason_improvement",
    "dropout_reason_circumstances",
    "dropout_reason_dissatisfaction",
}


def test_calibration_set_is_the_stylized_facts_and_the_documented_extras(targets):
    calibration = {t.id: t for t in targets if t.set == "calibration"}
    expected = CALIBRATION_IDS | EXTRA_CALIBRATION_IDS
    assert set(calibration) == expected, (
        f"expected the calibration ids of stylized_facts.md and the documented extras: "
        f"missing {sorted(expected - set(calibration))}, extra {sorted(set(calibration) - expected)}"
    )
    for fact_id in EXTRA_CALIBRATION_IDS:
        assert calibration[fact_id].note.strip(), f"{fact_id}: a fitted fact beyond the brief needs a note saying why"


def stylized_facts_table() -> dict[str, dict]:
    if not STYLIZED_FACTS.exists():
        pytest.skip(f"{STYLIZED_FACTS} not found (the shared brief sits beside the repository)")
    rows = {}
    for line in STYLIZED_FACTS.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"[a-z_]+", cells[0]) and cells[0] != "id":
            rows[cells[0]] = {"published": _number(cells[2]), "band": _band(cells[3]), "source": cells[4]}
    assert rows, f"expected a table of facts in {STYLIZED_FACTS}"
    return rows


def test_every_target_is_cited_in_a_known_set_with_published_inside_band(targets):
    assert targets, "expected targets in analysis/targets.toml"
    for t in targets:
        assert t.source.strip(), f"{t.id}: expected a source citation"
        assert t.set in SETS, f"{t.id}: expected set in {SETS}, got {t.set!r}"
        assert t.band_low <= t.published <= t.band_high, (
            f"{t.id}: expected band_low <= published <= band_high, got {t.band_low} <= {t.published} <= {t.band_high}"
        )
        assert t.statistic in STATISTICS, f"{t.id}: expected a statistic in {sorted(STATISTICS)}"
        assert t.definition.strip(), f"{t.id}: expected a definition of how to compute it"


def test_ids_are_unique(targets):
    ids = [t.id for t in targets]
    assert len(ids) == len(set(ids)), f"expected unique ids, got {ids}"


def test_every_calibration_fact_in_stylized_facts_is_present_with_its_figures(targets):
    table = stylized_facts_table()
    calibration = {t.id: t for t in targets if t.set == "calibration"}
    assert set(table) <= set(calibration), (
        f"expected every fact of stylized_facts.md in the calibration set: "
        f"missing {sorted(set(table) - set(calibration))}"
    )
    assert set(calibration) - set(table) == EXTRA_CALIBRATION_IDS, "only the documented extras are fitted besides them"
    for fact_id, row in table.items():
        t = calibration[fact_id]
        assert t.published == pytest.approx(row["published"]), f"{fact_id}: expected published {row['published']}"
        assert (t.band_low, t.band_high) == pytest.approx(row["band"]), f"{fact_id}: expected band {row['band']}"
        first_author = row["source"].split()[0].rstrip(",")
        assert first_author in t.source, f"{fact_id}: expected the source to cite {first_author}"


def test_validation_set_has_at_least_five_facts_with_notes_where_unconfirmed(targets):
    validation = [t for t in targets if t.set == "validation"]
    assert len(validation) >= 5, f"expected at least five validation facts, got {len(validation)}"
    for t in validation:
        assert t.note.strip(), f"{t.id}: expected a note on how the figure was confirmed and how confident we are"


def synthetic_clients(n: int = 3000, n_therapists: int = 60, seed: int = 0) -> pd.DataFrame:
    """A table with the columns of clients.csv and plausible relations between them."""
    g = np.random.default_rng(seed)
    therapist = g.integers(0, n_therapists, n)
    alliance = np.clip(g.normal(45, 6, n), 12, 60)
    change = np.round(0.25 * (alliance - 45) + g.normal(0, 4, n) + g.normal(0, 1.5, n_therapists)[therapist] + 5)
    intake = g.integers(10, 27, n)
    final = np.clip(intake - change, 0, 27)
    end_type = np.where(g.random(n) < 0.2, "dropout", np.where(g.random(n) < 0.7, "completed", "good_enough"))
    attended = np.where(end_type == "dropout", g.integers(0, 10, n), g.integers(6, 17, n))
    ruptures = g.poisson(1.0, n)
    frame = {
        "client_id": np.arange(n),
        "therapist_id": therapist,
        "attachment_style": g.choice(["secure", "anxious", "avoidant", "fearful"], n),
        "attachment_anxiety": g.random(n),
        "attachment_avoidance": g.random(n),
        "client_culture": g.integers(0, 2, n),
        "therapist_culture": g.integers(0, 2, n),
        "cultural_match": g.random(n) < 0.6,
        "expectancy": g.random(n),
        "therapist_empathy": g.random(n),
        "therapist_uses_feedback": (therapist % 2) == 0,
        "perceived_empathy": g.random(n),
        "intake_phq9": intake,
        "final_phq9": final,
        "followup_phq9": final,
        "sessions_attended": attended,
        "end_type": end_type,
        "end_session": attended + 1,
        "dropout_cause": np.where(end_type == "dropout", g.choice(["weak_alliance", "practical_barriers"], n), ""),
        "early_alliance": np.where(attended > 0, alliance, np.nan),
        "mean_alliance": np.where(attended > 0, alliance, np.nan),
        "early_goal_agreement": np.where(attended > 0, alliance / 3, np.nan),
        "early_change": np.where(attended >= 4, np.round(change * 0.6), np.nan),
        "ruptures": ruptures,
        "repairs": g.binomial(ruptures, 0.6),
        "reliable_improvement": intake - final >= 6,
        "reliable_deterioration": final - intake >= 6,
        "recovery": final < 10,
        "reliable_recovery": (final < 10) & (intake - final >= 6),
        "sudden_gain": g.random(n) < 0.2,
        "sudden_gain_reversed": g.random(n) < 0.3,
        "finished_course": attended >= 2,
        "not_on_track": g.random(n) < 0.3,
        "relapse": np.zeros(n, bool),
        "relapse_week": np.where(g.random(n) < 0.3, g.integers(1, 53, n), 0),
        "caseness_week": np.where(g.random(n) < 0.5, 4 * g.integers(1, 14, n), 0),
    }
    frame["dropout_category"] = np.where(
        end_type == "dropout",
        np.where(frame["dropout_cause"] == "weak_alliance", "dissatisfaction", "circumstances"),
        "",
    )
    frame = {k: frame[k] for k in CLIENT_COLUMNS}
    assert list(frame) == CLIENT_COLUMNS
    return pd.DataFrame(frame)


def test_every_definition_computes_a_finite_value_from_a_clients_table(targets, tmp_path):
    clients = synthetic_clients()
    # through a CSV round trip, as a researcher would read clients.csv
    clients.to_csv(tmp_path / "clients.csv", index=False)
    clients = pd.read_csv(tmp_path / "clients.csv", keep_default_na=False, na_values=[""])
    for t in targets:
        value = t.compute(clients)
        assert np.isfinite(value), f"{t.id}: expected a finite {t.statistic} from the synthetic clients, got {value}"


def test_compute_gives_the_known_answers_on_the_synthetic_table(targets):
    clients = synthetic_clients()
    by_id = {t.id: t for t in targets}
    expected_dropout = np.mean(clients["end_type"] == "dropout")
    assert by_id["dropout"].compute(clients) == pytest.approx(expected_dropout), "expected the share of dropouts"
    finished = clients[clients["finished_course"]]
    expected_r = np.corrcoef(finished["early_alliance"], finished["intake_phq9"] - finished["final_phq9"])[0, 1]
    assert by_id["alliance_outcome"].compute(clients) == pytest.approx(expected_r), "expected r over finished courses"
    dropouts = clients[clients["end_type"] == "dropout"]
    expected_share = np.mean(dropouts["sessions_attended"] <= 3)
    assert by_id["early_dropout_share"].compute(clients) == pytest.approx(expected_share), "expected share <= 3"


def test_loader_refuses_a_published_value_outside_its_band(tmp_path):
    path = tmp_path / "targets.toml"
    path.write_text(
        '[[fact]]\nid = "x"\nset = "validation"\nfact = "f"\nstatistic = "share"\npublished = 0.5\n'
        'band_low = 0.1\nband_high = 0.2\npublished_text = "p"\nsource = "s"\ndefinition = "d"\ny = "sudden_gain"\n',
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="outside the band"):
        load_targets(path)
    path.write_text(path.read_text().replace('"validation"', '"tuning"'), encoding="utf-8")
    with pytest.raises(ValueError, match="set = 'tuning'"):
        load_targets(path)
