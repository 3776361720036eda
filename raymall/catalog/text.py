"""The normalised word form used by keyword search on every dialect.

``products.search_text`` holds title, brand, category path and description as lowercase
words separated by single spaces (punctuation removed). MySQL's FULLTEXT index and the
SQLite fallback then agree on what a word is, and a query term matches a word prefix on
both. Terms shorter than InnoDB's ``innodb_ft_min_token_size`` (3) and InnoDB's default
stopwords are dropped from queries on both dialects, so both return the same matches.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

MIN_TERM_LEN = 3
MAX_TERMS = 12
# InnoDB's INFORMATION_SCHEMA.INNODB_FT_DEFAULT_STOPWORD list.
STOPWORDS = frozenset(
    "a about an are as at be by com de en for from how i in is it la of on or that the "
    "this to was what when where who will with und www".split()
)
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def words(text: str) -> list[str]:
    """Lowercase words of ``text``: runs of letters and digits."""
    return _WORD.findall(text.lower())


def normalize(*parts: str) -> str:
    return " ".join(w for part in parts for w in words(part))


def build_search_text(
    title: str, brand: str | None, category_path: Iterable[str], description: str
) -> str:
    """The denormalised text a product is found by (stored in ``products.search_text``)."""
    return normalize(title, brand or "", " ".join(category_path), description)


def query_terms(query: str) -> list[str]:
    """Distinct searchable terms of a user query, in order, at most ``MAX_TERMS``."""
    seen: list[str] = []
    for w in words(query):
        if len(w) >= MIN_TERM_LEN and w not in STOPWORDS and w not in seen:
            seen.append(w)
    return seen[:MAX_TERMS]


def slugify(text: str, max_len: int = 100) -> str:
    """An ASCII slug (``[a-z0-9-]``) for a name; "item" when nothing is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = "-".join(words(ascii_text))[:max_len].strip("-")
    return slug or "item"
