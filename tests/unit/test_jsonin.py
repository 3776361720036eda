"""raymall.jsonin: client JSON nested past the bound is a ValueError, never a
RecursionError; brackets inside strings do not count."""

from __future__ import annotations

import pytest

from raymall import jsonin


def test_nesting_past_the_bound_is_a_value_error() -> None:
    for raw in (b"[" * 15_000, b'{"a":' * 5_000, ("[" * 40 + "]" * 40).encode()):
        with pytest.raises(ValueError):
            jsonin.loads(raw)
    with pytest.raises(ValueError):
        jsonin.loads(b"\xff\xfe")  # not UTF-8


def test_documents_within_the_bound_parse_as_json_does() -> None:
    assert jsonin.loads(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "b": [1]}') == {
        "a": "[" * 40,
        "b": [1],
    }
    assert jsonin.loads("[" * 32 + "]" * 32) is not None
    assert jsonin.depth(b'[{"x": "\\"]["}]') == 2
