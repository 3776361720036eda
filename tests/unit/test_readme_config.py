"""The README's configuration table lists every setting, and only real ones."""

from __future__ import annotations

import re
from pathlib import Path

from raymall.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_lists_every_setting_and_no_others() -> None:
    text = README.read_text()
    table = text[text.index("<!-- CONFIG-TABLE -->") : text.index("<!-- /CONFIG-TABLE -->")]
    listed = set(re.findall(r"`RAYMALL_([A-Z0-9_]+)`", table))
    fields = {name.upper() for name in Settings.model_fields}
    assert fields - listed == set(), "settings missing from the README (scripts/config_table.py)"
    assert listed - fields == set(), "README lists variables that are not settings"


def test_readme_states_the_two_commands() -> None:
    text = README.read_text()
    assert "make run" in text and "make test" in text
