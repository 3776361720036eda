"""Readable contrast in the storefront's and admin console's stylesheet (WCAG 2 AA: at
least 4.5:1 for body text): every rule that sets both a text colour and a background, and
every text colour on every surface a page puts text on, computed from raymall/web/style.css
itself, so a colour change that makes text unreadable fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CSS = (Path(__file__).resolve().parents[2] / "raymall" / "web" / "style.css").read_text()
AA = 4.5
TEXT_VARS = ("--fg", "--muted", "--link", "--ok", "--bad", "--hot", "--accent")
SURFACE_VARS = ("--bg", "--panel")


def variables() -> dict[str, str]:
    root = re.search(r":root\s*\{([^}]*)\}", CSS)
    assert root is not None
    return dict(re.findall(r"(--[\w-]+)\s*:\s*(#[0-9a-fA-F]{3,6})", root.group(1)))


def resolve(value: str, names: dict[str, str]) -> str | None:
    value = value.strip()
    var = re.fullmatch(r"var\((--[\w-]+)\)", value)
    if var:
        return names.get(var.group(1))
    return value if re.fullmatch(r"#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6}", value) else None


def luminance(hex_colour: str) -> float:
    h = hex_colour.lstrip("#")
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    channels = [int(h[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def ratio(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def rules_with_colour_and_background() -> list[tuple[str, str, str]]:
    names = variables()
    found = []
    for selector, body in re.findall(r"([^{}]+)\{([^}]*)\}", CSS):
        colour = re.search(r"(?<![-\w])color\s*:\s*([^;]+)", body)
        background = re.search(r"background(?:-color)?\s*:\s*([^;]+)", body)
        if colour and background:
            fg, bg = resolve(colour.group(1), names), resolve(background.group(1), names)
            if fg and bg:
                found.append((selector.strip(), fg, bg))
    return found


def test_the_arithmetic_matches_known_ratios() -> None:
    assert ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert ratio("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)


def test_every_rule_with_a_text_colour_on_its_own_background_is_readable() -> None:
    rules = rules_with_colour_and_background()
    assert len(rules) >= 4  # the page header, buttons, disabled buttons, errors at least
    low = [(sel, fg, bg, round(ratio(fg, bg), 2)) for sel, fg, bg in rules if ratio(fg, bg) < AA]
    assert low == []


@pytest.mark.parametrize("text", TEXT_VARS)
@pytest.mark.parametrize("surface", SURFACE_VARS)
def test_each_text_colour_is_readable_on_each_surface(text: str, surface: str) -> None:
    names = variables()
    assert ratio(names[text], names[surface]) >= AA, (text, surface)
