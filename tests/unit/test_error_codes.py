"""docs/errors.md, the error-code dictionary, lists every code the API can answer with,
and is exactly what ``raymall error-codes --write`` renders from the code today."""

from __future__ import annotations

import re
from pathlib import Path

from deployments import errors as edge_errors
from raymall import errordoc, errors
from raymall.launcher.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _documented_codes() -> set[str]:
    table = (ROOT / errordoc.DOC_PATH).read_text().split("## Shard result codes")[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", table, re.M))


def test_the_dictionary_is_current() -> None:
    assert errordoc.is_current(ROOT), "docs/errors.md is out of date: raymall error-codes --write"


def test_every_error_class_says_what_it_means_and_what_to_do() -> None:
    for cls in errordoc.domain_errors():
        assert "__doc__" in vars(cls) and cls.__doc__, f"{cls.__name__} has no docstring"
        assert "action" in vars(cls) and cls.action, f"{cls.__name__} has no action"


def test_codes_are_unique() -> None:
    codes = [c.code for c in errordoc.domain_errors()] + [e.code for e in errors.EDGE_CODES]
    assert len(codes) == len(set(codes))


def test_every_code_the_edge_answers_is_documented() -> None:
    """Codes written as literals where the edge renders an error body, and the framework
    statuses' codes, all appear in the dictionary."""
    used = set(edge_errors._HTTP_CODES.values())  # noqa: SLF001
    for path in [*ROOT.glob("deployments/*.py"), *ROOT.glob("raymall/**/*.py")]:
        text = path.read_text()
        used |= set(re.findall(r"error_body\(\s*[^,]+,\s*\"([a-z_]+)\"", text))
        used |= set(re.findall(r"error_response\(\s*\w+,\s*\d+,\s*\"([a-z_]+)\"", text))
    assert used, "found no error codes in the edge's source"
    missing = used - _documented_codes()
    assert not missing, f"codes answered but not in docs/errors.md: {missing}"


def test_the_check_command_fails_on_a_stale_copy(tmp_path: Path) -> None:
    assert main(["error-codes", "--check", "--root", str(ROOT)]) == 0
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "errors.md").write_text("# Error codes\n")
    assert main(["error-codes", "--check", "--root", str(tmp_path)]) == 1
    assert main(["error-codes", "--write", "--root", str(tmp_path)]) == 0
    assert main(["error-codes", "--check", "--root", str(tmp_path)]) == 0


def test_shard_codes_map_to_documented_errors() -> None:
    from raymall.domain.outcomes import OUTCOMES

    assert {row.error.code for row in OUTCOMES.values()} <= _documented_codes()


def test_the_readme_links_the_dictionary() -> None:
    assert "(docs/errors.md)" in (ROOT / "README.md").read_text()
