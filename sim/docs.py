"""The parameter table of docs/parameters.md, generated from the registry."""

from __future__ import annotations

from sim.parameters import GROUPS, REGISTRY

HEADER = """# Parameters

Generated from the registry in `sim/parameters.py` by `make docs`; do not edit by hand (a test
fails when this file is stale). Ranges are inclusive. "free" marks mechanism parameters that
calibration fits (`make calibrate`); their defaults are the calibrated values.
"""


def _cell(text) -> str:
    return str(text).replace("|", "\\|")


def parameters_markdown() -> str:
    """The whole of docs/parameters.md."""
    lines = [HEADER]
    for group, title in GROUPS.items():
        lines += [f"\n## {title.capitalize()} (`[{group}]`)\n"]
        lines += ["| name | default | range | unit | meaning | source |", "| --- | --- | --- | --- | --- | --- |"]
        for p in REGISTRY.values():
            if p.group != group:
                continue
            rng = ", ".join(p.choices) if p.kind == "choice" else f"{p.low:g} – {p.high:g}"
            name = f"`{p.name}`" + (" (free)" if p.free else "")
            default = f"{p.default:g}" if isinstance(p.default, float) else str(p.default)
            cells = (name, default, rng, p.unit, p.meaning, p.source)
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
