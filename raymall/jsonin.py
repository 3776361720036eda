"""JSON from a client, parsed with a bound on nesting.

``json.loads`` recurses once per level of nesting, so ``[`` x 15,000 raises
``RecursionError`` (not ``ValueError``) and escapes handlers that expect a parse error.
``loads`` refuses anything nested deeper than ``max_depth`` with a ``ValueError``, before
parsing, so every caller's ``except ValueError`` covers it. Bodies that FastAPI parses for
a pydantic model are refused by FastAPI itself (400 in the one error shape); this is for
raw bytes a route or service parses on its own.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 32
# a string (skipped whole: brackets inside it do not nest) or a bracket. An unterminated
# string runs to the end (its closing quote is optional): were it to fail instead, the scan
# would try again from every later quote, each time to the end of the input, so a body of
# escaped quotes (a quote, then ``\"`` over and over) would cost time quadratic in its
# length: seconds of the event loop for a 16 KiB payment callback.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


class TooDeep(ValueError):
    """The JSON document nests deeper than allowed."""


def depth(raw: bytes) -> int:
    """How deep the brackets of ``raw`` nest (strings skipped); cheap when there are
    fewer brackets than any bound would care about."""
    deepest = level = 0
    for match in _TOKENS.finditer(raw):
        token = match.group()
        if token in (b"[", b"{"):
            level += 1
            deepest = max(deepest, level)
        elif token in (b"]", b"}"):
            level -= 1
    return deepest


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that raises ``ValueError`` (``TooDeep``) instead of recursing past
    ``max_depth`` levels, and for bytes that are not UTF-8."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") > max_depth and depth(data) > max_depth:
        raise TooDeep(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(data)
    except RecursionError as exc:  # the interpreter's own bound, lower than ours
        raise TooDeep("JSON nested too deeply") from exc
