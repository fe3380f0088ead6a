"""The browser app: its controls come from the registry, its charts show before and after, it runs in Chromium.

The browser test starts the app as ``make app`` does (``python -m sim app low_empathy``) on a free
localhost port and loads it in Debian's Chromium driven by Playwright (never ``playwright
install``: see shared ENVIRONMENT notes) at a projector's 1280x720. It checks that the buttons and
every control with its value are above the fold, that Mesa's internal controls are not shown, that
the scenario's note is there, moves the therapist-empathy slider, presses Reset (the previous
cohort stays as a grey ghost), Step and Play (a consistent end state), and that no request leaves
the machine or fails. The server must end with its parent on SIGINT and on SIGTERM. It skips only
outside CI when /usr/bin/chromium is missing; ``make test`` installs Chromium first.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
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


def _model(scenario="low_empathy", **changes):
    from sim import app

    values = app.initial_values(app.make_model_params(scenario)) | {"n_clients": 100, "n_therapists": 5} | changes
    return app.AppModel(**values)


def test_app_model_accepts_the_controls_and_figures_draw():
    from sim import app
    from sim.app_figures import CHARTS

    model = _model(therapist_empathy_mean=0.7000000000000001)  # float noise from a browser slider
    assert model.scenario.params["therapist_empathy_mean"] == 0.7
    for _ in range(3):
        model.step()
    for chart in CHARTS:
        assert chart(model).axes, chart.__name__
        assert chart(model, ghost=_model()).axes, chart.__name__
    assert app.status_text(model).startswith("Week 3 of 20")


def _grey_lines(fig) -> int:
    from matplotlib.colors import to_hex

    from sim.display import GHOST_COLOUR

    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if to_hex(line.get_color()) == GHOST_COLOUR.lower()]
    patches = [p for p in ax.patches if to_hex(p.get_edgecolor()) == GHOST_COLOUR.lower()]
    return len(lines) + len(patches)


def test_reset_keeps_the_previous_cohort_run_to_its_end_as_a_ghost_on_every_chart():
    from sim import app
    from sim.app_figures import CHARTS, cohort_curves

    values = app.initial_values(app.make_model_params("low_empathy")) | {"n_clients": 100, "n_therapists": 5}
    cohorts = app.Cohorts(values)
    cohorts.step()
    assert cohorts.ghost is None
    cohorts.reset(values | {"therapist_empathy_mean": 0.9})
    ghost, model = cohorts.ghost, cohorts.model
    assert ghost is not None and not ghost.running, "the ghost is the previous cohort, run to its end"
    assert model.cohort.week == 0 and model.scenario.params["therapist_empathy_mean"] == 0.9
    for chart in CHARTS[:-1]:
        assert _grey_lines(chart(model, ghost)) >= 1, f"{chart.__name__} draws no ghost"
        assert _grey_lines(chart(model)) == 0, f"{chart.__name__} draws a ghost without one"
    legend = [t.get_text() for t in CHARTS[-1](model, ghost).axes[0].get_legend().get_texts()]
    assert any("before" in t for t in legend), "the caseload chart gives the previous cohort's counts"
    assert "therapist empathy (mean) 0.30" in app.ghost_text(model, ghost), "the ghost says what it was"
    curves = cohort_curves(ghost)
    assert curves.index[-1] == ghost.cohort.week and curves["not_dropped"].is_monotonic_decreasing


def test_the_end_state_is_consistent_week_status_and_axes():
    from sim import app
    from sim.app_figures import retention_figure

    values = app.initial_values(app.make_model_params("baseline")) | {"n_clients": 100, "n_therapists": 5}
    cohorts = app.Cohorts(values)
    while cohorts.model.running:
        cohorts.step()
    model = cohorts.model
    last = model.cohort.n_weeks
    assert model.cohort.week <= last and model.cohort.done
    status = app.status_text(model)
    assert status.startswith(f"Week {model.cohort.week} of {last}") and "every course has ended" in status
    ax = retention_figure(model).axes[0]
    assert ax.get_xlim()[1] >= model.cohort.week, "the axis reaches the week the status names"
    assert all(float(t).is_integer() for t in ax.get_xticks()), "week ticks are whole numbers"
    week = model.cohort.week
    cohorts.step()  # a press after the end changes nothing
    assert model.cohort.week == week and not model.running


def test_holiday_weeks_are_shaded_and_sparse_weeks_left_out():
    from sim.app_figures import alliance_figure, cohort_curves
    from sim.display import HOLIDAY_COLOUR

    model = _model("anxious_breaks")
    while model.running:
        model.step()
    start, length = model.scenario.params["planned_break_start"], model.scenario.params["planned_break_weeks"]
    ax = alliance_figure(model).axes[0]
    from matplotlib.colors import to_hex

    spans = [p for p in ax.patches if to_hex(p.get_facecolor()) == HOLIDAY_COLOUR.lower()]
    assert spans, "holiday weeks are shaded"
    x0 = spans[0].get_x() if hasattr(spans[0], "get_x") else spans[0].get_xy()[0][0]
    assert x0 == pytest.approx(start - 0.5), "the shading starts at the holiday's first week"
    curves = cohort_curves(model)
    holiday = curves.loc[start : start + length - 1]
    assert holiday["alliance"].isna().all() and (holiday["attending"] == 0).all(), "no line across the holiday"
    assert curves.loc[curves["attending"] < 20, "alliance"].isna().all(), "means of fewer than 20 are left out"


def test_notes_render_without_solara_markdown_and_its_cdn_katex():
    import inspect

    from sim import app

    html = app.markdown_html("**Look for:** the *mean* `x` <b>\n\nsecond")
    assert html == "<p><b>Look for:</b> the <i>mean</i> <code>x</code> &lt;b&gt;</p><p>second</p>"
    assert "solara.Markdown(" not in inspect.getsource(app), "solara.Markdown loads KaTeX from a CDN path"


def test_app_command_asks_nothing_of_the_internet():
    from sim.cli import app_command

    command, env = app_command("baseline", 8765)
    assert "--no-check-version" in command and "--production" in command, "no PyPI version check"
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert env["SOLARA_TELEMETRY_MIXPANEL_ENABLE"] == "False", "no usage telemetry"
    assert urlparse(env["SOLARA_ASSETS_CDN"]).hostname == "127.0.0.1", "a missing asset is not fetched from a CDN"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_ends_its_child_with_the_parent(sig, tmp_path):
    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import sys; from sim.cli import serve; sys.exit(serve([sys.executable, '-c', {child!r}], {{}}))"],  # noqa: E501
        cwd=ROOT,
        start_new_session=True,  # a signal to the parent alone, as `kill PID` sends it
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the child did not start"
            time.sleep(0.1)
        child_pid = int(pid_file.read_text())
        parent.send_signal(sig)
        assert parent.wait(timeout=20) == 0, "the parent stops cleanly"
        assert not _alive(child_pid), f"the child outlived its parent after {sig.name}"
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


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


def _start_app(port: int) -> subprocess.Popen:
    """``python -m sim app`` as `make app` starts it, in its own session (signals reach the parent alone)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim", "app", STARTING_SCENARIO, "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace")
            pytest.fail(f"the app exited with code {proc.returncode} before listening:\n{out[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"the app did not listen on 127.0.0.1:{port} within 120 s")
            time.sleep(0.5)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    proc.stdout.close()


def _assert_ends_with_parent(proc: subprocess.Popen, port: int, sig: signal.Signals) -> None:
    """Signal the parent alone; it must stop, and take the solara server with it."""
    servers = _children(proc.pid)
    assert servers, "the app runs its server as a child process"
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 0, f"python -m sim app did not stop cleanly on {sig.name}"
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in servers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in servers), f"the server outlived python -m sim app after {sig.name}"
    assert not _listening_addresses(port), f"port {port} still listens after {sig.name}"


@pytest.fixture
def app_server():
    """The app on a free localhost port; yields its URL, port and process and always stops it."""
    port = _free_port()
    proc = _start_app(port)
    try:
        yield f"http://127.0.0.1:{port}/", port, proc
    finally:
        _stop(proc)


def _off_localhost(url: str) -> bool:
    """A network request to anywhere but 127.0.0.1 (blob: and data: URLs are in-page)."""
    parts = urlparse(url)
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname != "127.0.0.1"


def _chart_images(page):
    return [img.screenshot() for img in page.locator(".alliancesim-charts img").all()]


def _grey_pixels(png: bytes) -> int:
    """Pixels of the ghost's grey in a chart's screenshot."""
    from PIL import Image

    from sim.display import GHOST_COLOUR

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    grey = np.array([int(GHOST_COLOUR[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(rgb - grey).max(axis=2) <= 12).sum())


def _above_the_fold(page, locator, height: int) -> bool:
    box = locator.bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height


def test_app_in_headless_chromium_at_projector_size(app_server, tmp_path):
    if not CHROMIUM.exists() and not IN_CI:
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (make test installs it)")
    if IN_CI:
        from playwright.sync_api import sync_playwright
    else:
        sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

    url, port, proc = app_server
    assert _listening_addresses(port) == {"0100007F"}, "the app must listen on 127.0.0.1 only"
    width, height = 1280, 720  # a seminar-room projector

    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh --user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height},
        )
        try:
            outside, failed = [], []

            def watch(page):
                page.on("request", lambda r: outside.append(r.url) if _off_localhost(r.url) else None)
                page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
                page.set_default_timeout(60_000)

            page = browser.new_page()
            watch(page)
            page.goto(url)
            page.get_by_text("Week 0 of 20", exact=False).wait_for()
            page.wait_for_function("document.querySelectorAll('.alliancesim-charts img').length >= 6")
            page.screenshot(path=str(tmp_path / "app-loaded.png"))

            # Above the fold at 1280x720: the buttons, the week, and every control with its value.
            for name in ("Reset", "▶ Play", "Step"):
                assert _above_the_fold(page, page.get_by_role("button", name=name), height), f"{name} below the fold"
            assert _above_the_fold(page, page.get_by_text("Week 0 of 20"), height)
            sliders = page.locator(".alliancesim-controls .v-input")
            assert sliders.count() == 12, "two run settings and ten registry parameters"
            for i in range(sliders.count()):
                assert _above_the_fold(page, sliders.nth(i), height), f"control {i} is below the fold"
            empathy = page.locator(".v-input").filter(has_text="Therapist empathy (mean): 0.30")
            assert empathy.count() == 1, "a slider's label shows its value without touching it"
            for internal in ("Use Threads", "Render Interval", "Page 0", "Play Interval"):
                assert page.get_by_text(internal).count() == 0, f"Mesa's internal control {internal!r} is shown"

            # Each tab has its own cohort: step this one, then a new tab still starts at week 0.
            page.get_by_role("button", name="Step").click()
            page.get_by_text("Week 1 of 20").wait_for()
            second = browser.new_page()
            watch(second)
            second.goto(url)
            second.get_by_text("Week 0 of 20", exact=False).wait_for()
            assert second.get_by_text("Week 1 of 20").count() == 0, "a new tab should not show another tab's cohort"
            second.close()

            # The scenario's teaching note is beside the charts.
            page.get_by_text("Scenario: low_empathy").wait_for()
            assert page.get_by_text("Look for:").count() == 1, "the teaching note's 'Look for' should show"

            # Before/after: lowest empathy, Reset; the previous cohort stays on every chart in grey.
            slider = empathy.get_by_role("slider")
            assert float(slider.get_attribute("aria-valuenow")) == pytest.approx(0.3), "low_empathy starts at 0.3"
            slider.focus()
            slider.press("Home")
            page.get_by_text("Therapist empathy (mean): 0.00").wait_for()
            before_reset = _chart_images(page)
            page.get_by_role("button", name="Reset").click()
            page.get_by_text("Grey dashed: the previous cohort").wait_for()
            page.get_by_text("Week 0 of 20").wait_for()
            page.wait_for_timeout(1500)  # let the redrawn charts arrive
            after_reset = _chart_images(page)
            assert len(after_reset) == 6, "six charts: retention, alliance, PHQ-9, sessions, causes, caseloads"
            grey = [(_grey_pixels(b), _grey_pixels(a)) for b, a in zip(before_reset, after_reset, strict=True)]
            assert all(a > b + 50 for b, a in grey[:5]), f"every chart should show the grey ghost after Reset: {grey}"
            assert page.get_by_text("therapist empathy (mean) 0.30").count() >= 1, "the ghost says what it was"

            for _ in range(4):
                page.get_by_role("button", name="Step").click()
            page.get_by_text("Week 4 of 20").wait_for()
            page.wait_for_timeout(1000)
            stepped = _chart_images(page)
            changed = [b != a for b, a in zip(after_reset, stepped, strict=True)]
            assert all(changed[:4]), f"retention, alliance, PHQ-9 and sessions should change after stepping: {changed}"
            page.screenshot(path=str(tmp_path / "app-stepped.png"))

            # Play to the end: the week, the status and the buttons agree.
            page.get_by_role("button", name="▶ Play").click()
            # What is checked is where Play ends, not how fast: 16 weeks of six redrawn charts took over
            # 120 s once, on a 2-core machine busy with the rest of the suite.
            page.get_by_text("every course has ended").wait_for(timeout=300_000)
            status = page.get_by_text("every course has ended").inner_text()
            assert status.startswith("Week 20 of 20") or status.startswith("Week 19 of 20"), status
            play = page.get_by_role("button", name="▶ Play")
            assert play.count() == 1 and play.is_disabled(), (
                "a finished cohort shows a disabled Play, not a stuck Pause"
            )
            assert page.get_by_role("button", name="Step").is_disabled()
            assert page.get_by_role("button", name="Reset").is_enabled()
            page.screenshot(path=str(tmp_path / "app-finished.png"))
            assert not outside, f"the page made requests off localhost: {outside[:5]}"
            assert not failed, f"requests failed (a missing asset such as KaTeX?): {failed[:5]}"
        finally:
            browser.close()
    _assert_ends_with_parent(proc, port, signal.SIGINT)


def test_the_app_server_ends_with_its_parent_on_sigterm():
    port = _free_port()
    proc = _start_app(port)
    try:
        _assert_ends_with_parent(proc, port, signal.SIGTERM)
    finally:
        _stop(proc)
