"""Repeated keys in a JSON object (`{"a": 1, "a": 2}`).

Every JSON parser here (orjson, msgspec, the stdlib's default) keeps the last value and silently
drops the others, and BigQuery would keep one of them too. The event itself is ambiguous, so a
line with a repeated key is rejected, with the key named, rather than loaded with a value chosen
for it.

Finding one exactly takes the stdlib parser with an `object_pairs_hook`, about 25 µs a line: more
than the whole fast path. So the fast path screens with a count instead (`colons_match`), and only
a line that fails the screen is parsed exactly (the general path always is).

Why the count is sound. In JSON text a colon is either the one after each key, or a character
inside a string. A string's colons survive decoding and re-encoding unchanged, unless the input
wrote one as an escape (`\\u003a`), which the screen refuses to judge. The fast path's row keeps
every decoded key (nulls included) and adds the lineage columns. So the row has exactly the line's
colons plus the lineage's, minus at least one for every key the parser merged away (its colon,
and any in the value it dropped). Whitespace around a colon changes nothing, because the count is
of colons, not of `":`.
"""

from __future__ import annotations

import json
import re
from typing import Iterable

from .bytescan import COLON, count_byte

_ESCAPED_COLONS = (b"\\u003a", b"\\u003A")


class RepeatedKey(ValueError):
    def __init__(self, key: str):
        super().__init__(f"object repeats the key {key!r}")
        self.key = key


def _has_escaped_colon(text: bytes) -> bool:
    return b"\\" in text and any(escape in text for escape in _ESCAPED_COLONS)


def colons_match_all(lines: bytes, rows: bytes, row_count: int, colons_added: int,
                     lines_apart: Iterable[bytes] = (), rows_apart: Iterable[bytes] = ()) -> bool:
    """`colons_match` for a whole chunk at once: `lines` holds the chunk's lines and `rows` the
    rows encoded from them (`row_count` of them), except for `lines_apart`, whose rows (if any)
    are `rows_apart`. A row's count can only fall short of its line's plus the lineage's (a merged
    key takes colons away; nothing adds one), so the totals match only when every row's does."""
    if _has_escaped_colon(lines):
        return False
    line_colons = count_byte(lines, COLON) - sum(line.count(b":") for line in lines_apart)
    row_colons = count_byte(rows, COLON) - sum(row.count(b":") for row in rows_apart)
    return line_colons + colons_added * row_count == row_colons


def colons_match(line: bytes, row: bytes, colons_added: int) -> bool:
    """Whether `line` provably repeats no key, given the `row` encoded from it (every key of the
    decoded line, plus lineage columns holding `colons_added` colons). False means it may repeat
    one, or writes a colon as an escape, and needs the exact `loads`."""
    if _has_escaped_colon(line):
        return False
    return line.count(b":") + colons_added == row.count(b":")


def _unique(pairs: list[tuple[str, object]]) -> dict:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise RepeatedKey(key)
            seen.add(key)
    return found


class UnrepresentableNumber(ValueError):
    """A JSON number no FLOAT64 column or JSON value can hold: the parser would make it inf or 0."""

    def __init__(self, text: str, why: str):
        shown = text if len(text) <= 40 else text[:37] + "..."
        super().__init__(f"the number {shown} {why}")
        self.text = text


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _exact_float(text: str) -> float:
    """A JSON number with a fraction or exponent, as a float, unless the float would not be it.

    BigQuery holds such a number as a FLOAT64, in a column or inside a JSON value. Beyond about
    ±1.8e308 the parser turns it into inf, which json and orjson then write as null (or "inf" as
    text); below about 4.9e-324 it turns a non-zero number into 0. Either change would be silent,
    so the line is rejected instead."""
    value = float(text)
    if value in (_INF, -_INF):
        raise UnrepresentableNumber(text, "is beyond FLOAT64's range (about ±1.8e308)")
    if value == 0.0 and _NONZERO_DIGIT.search(text.partition("e")[0].partition("E")[0]):
        raise UnrepresentableNumber(text, "is too small for FLOAT64 (below about 4.9e-324) and would become 0")
    return value


_INF = float("inf")
_NONZERO_DIGIT = re.compile(r"[1-9]")


def loads(text: str):
    """Parse JSON exactly: integers of any size kept whole, NaN/Infinity refused, numbers beyond
    FLOAT64's range refused (UnrepresentableNumber), and RepeatedKey raised for the first key an
    object repeats."""
    return json.loads(text, object_pairs_hook=_unique, parse_constant=_refuse_constant, parse_float=_exact_float)
