"""raymall.jsonin: client JSON nested past the bound is a ValueError, never a
RecursionError; brackets inside strings do not count."""

from __future__ import annotations

import time

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


def test_a_body_of_escaped_quotes_is_scanned_in_linear_time() -> None:
    """A quote and then ``\\"`` over and over (a string that never ends), with enough
    brackets to be scanned: the scan must not start again from every later quote, or a
    16 KiB payment callback holds the event loop for seconds."""
    raw = b"[" * 33 + b'"' + b'\\"' * 8_000
    assert len(raw) <= 16 * 1024  # the largest callback a replica reads
    started = time.perf_counter()
    with pytest.raises(ValueError):
        jsonin.loads(raw)
    assert time.perf_counter() - started < 0.2
    assert jsonin.depth(b'[["no end [[[[') == 2  # an unterminated string runs to the end
