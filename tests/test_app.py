"""The browser app: its controls come from the registry, and it runs in headless Chromium.

The browser test starts the app as ``make app`` does (``python -m sim app low_empathy``) on a free
localhost port, loads the page in Debian's Chromium driven by Playwright (never ``playwright
install``: see shared ENVIRONMENT notes), checks the scenario's values and teaching note are shown,
moves the therapist-empathy slider, presses Reset and Step, and checks that the plots change.
It skips only outside CI when /usr/bin/chromium is missing; ``make test`` installs Chromium first.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from sim.parameters import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IN_CI = bool(os.environ.get("CI"))
STARTING_SCENARIO = "low_empathy"  # not the default, so the test sees the scenario reach the app

# Solara's hook linter flags a pattern inside Mesa's own SolaraViz code when the app is imported.
pytestmark = pytest.mark.filterwarnings("ignore:.*found despite early return:UserWarning")


# ── fast checks: the controls are generated from the registry ──────────────────────────────────────


def test_sliders_take_bounds_from_registry():
    from sim import app

    params = app.make_model_params()
    controls = {k: v for k, v in params.items() if isinstance(v, dict) and k in REGISTRY}
    assert set(controls) == set(app.SLIDER_PARAMETERS)
    for name, control in controls.items():
        p = REGISTRY[name]
        if p.kind == "choice":
            assert control["type"] == "Select", name
            assert control["values"] == list(p.choices), f"{name}: choices differ from the registry"
        else:
            assert control["type"] == ("SliderInt" if p.kind == "int" else "SliderFloat"), name
            assert (control["min"], control["max"]) == (p.low, p.high), f"{name}: bounds differ from the registry"
            assert p.low <= control["value"] <= p.high, name
            assert 0 < control["step"] <= (p.high - p.low) / 50, f"{name}: step too coarse"


def test_key_traits_have_controls():
    from sim import app

    wanted = {
        "therapist_empathy_mean",
        "therapist_humility_mean",
        "therapist_repair_mean",
        "therapist_consistency_mean",
        "therapist_feedback_share",
        "attachment_anxiety_mean",
        "attachment_avoidance_mean",
        "client_minority_share",
        "barriers_mean",
        "matching_policy",
    }
    params = app.make_model_params()
    assert wanted <= set(params)
    assert {"n_clients", "n_therapists"} <= set(params)


def test_app_model_accepts_the_controls_and_figures_draw():
    from sim import app

    values = app.initial_values(app.make_model_params()) | {"n_clients": 40, "n_therapists": 4}
    values["therapist_empathy_mean"] = 0.7000000000000001  # float noise from a browser slider
    model = app.AppModel(**values)
    assert model.scenario.params["therapist_empathy_mean"] == 0.7
    for _ in range(3):
        model.step()
    for make in (
        app.retention_figure,
        app.alliance_figure,
        app.phq9_figure,
        app.dropout_causes_figure,
        app.caseload_figure,
    ):
        fig = make(model)
        assert fig.axes, make.__name__
    assert "Week 3" in app.summary_markdown(model)


def test_the_sidebar_tells_the_scenario_and_the_controls_start_at_its_values():
    from sim import app
    from sim.scenario import load_scenario

    params = app.make_model_params("low_empathy")
    assert params["scenario"] == "low_empathy"
    assert params["therapist_empathy_mean"]["value"] == 0.3, "controls should start at the scenario's values"
    text = app.scenario_markdown(load_scenario("low_empathy"))
    assert "**Look for:**" in text and "**Literature:**" in text, "the teaching note's parts should be set apart"
    assert text.startswith("*Baseline with therapists low in empathy"), "the description should lead"


def test_app_command_refuses_a_bad_scenario_before_starting(capsys):
    from sim.cli import main

    assert main(["app", "no_such_scenario"]) == 2
    err = capsys.readouterr().err
    assert "no_such_scenario" in err and "Traceback" not in err


# ── the browser test ───────────────────────────────────────────────────────────────────────────────


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of LISTEN sockets on ``port``, from /proc/net/tcp{,6} (hex, as the kernel writes)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


@pytest.fixture
def app_server():
    """The app on a free localhost port; yields its URL and port and always stops it."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim", "app", STARTING_SCENARIO, "--port", str(port)],  # as `make app` starts it
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace")
                pytest.fail(f"the app exited with code {proc.returncode} before listening:\n{out[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the app did not listen on 127.0.0.1:{port} within 120 s")
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/", port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
        proc.stdout.close()


def _off_localhost(url: str) -> bool:
    """A network request to anywhere but 127.0.0.1 (blob: and data: URLs are in-page)."""
    parts = urlparse(url)
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname != "127.0.0.1"


def _plot_images(page):
    return [img.screenshot() for img in page.locator(".solara-content-main img").all()]


def test_app_in_headless_chromium(app_server, tmp_path):
    if not CHROMIUM.exists() and not IN_CI:
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (make test installs it)")
    if IN_CI:
        from playwright.sync_api import sync_playwright
    else:
        sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

    url, port = app_server
    assert _listening_addresses(port) == {"0100007F"}, "the app must listen on 127.0.0.1 only"

    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh --user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            outside = []
            page = browser.new_page()
            page.on("request", lambda r: outside.append(r.url) if _off_localhost(r.url) else None)
            page.set_default_timeout(60_000)
            page.goto(url)
            page.get_by_text("Week 0", exact=False).wait_for()
            page.get_by_role("button", name="Step").wait_for()
            page.wait_for_function("document.querySelectorAll('.solara-content-main img').length >= 5")
            page.screenshot(path=str(tmp_path / "app-loaded.png"))

            # Each tab has its own cohort: step this one, then a new tab still starts at week 0.
            page.get_by_role("button", name="Step").click()
            page.get_by_text("Week 1").wait_for()
            second = browser.new_page()
            second.on("request", lambda r: outside.append(r.url) if _off_localhost(r.url) else None)
            second.set_default_timeout(60_000)
            second.goto(url)
            second.get_by_text("Week 0", exact=False).wait_for()
            assert second.get_by_text("Week 1").count() == 0, "a new tab should not show another tab's cohort"
            second.close()

            # The controls start at the scenario's values; its teaching note is in the sidebar.
            page.get_by_text("Scenario: low_empathy").wait_for()
            assert page.get_by_text("Look for:").count() == 1, "the teaching note's 'Look for' should show"
            slider = page.locator(".v-input").filter(has_text="Therapist empathy").get_by_role("slider")
            assert float(slider.get_attribute("aria-valuenow")) == pytest.approx(0.3), "low_empathy starts at 0.3"

            # Move the empathy slider to its lowest value with the keyboard, then build a new cohort.
            slider.focus()
            slider.press("Home")
            page.wait_for_function("el => Number(el.getAttribute('aria-valuenow')) === 0", arg=slider.element_handle())
            page.get_by_role("button", name="Reset").click()
            page.get_by_text("therapist empathy 0.00").wait_for()

            before = _plot_images(page)
            assert len(before) == 5, "expected five plots: retention, alliance, PHQ-9, dropout causes, caseloads"
            for _ in range(4):
                page.get_by_role("button", name="Step").click()
            page.get_by_text("Week 4").wait_for()
            page.wait_for_timeout(1000)  # let the last images arrive
            after = _plot_images(page)
            page.screenshot(path=str(tmp_path / "app-stepped.png"))

            changed = [b != a for b, a in zip(before, after, strict=True)]
            assert all(changed[:3]), f"retention, alliance and PHQ-9 plots should change after stepping: {changed}"
            assert sum(changed) >= 4, f"most plots should change after four weeks: {changed}"
            assert page.get_by_text("Step: 4").count() == 1
            assert not outside, f"the page made requests off localhost: {outside[:5]}"
        finally:
            browser.close()
