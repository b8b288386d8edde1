"""bqemulator, started with a memo of sqlglot's parses.

bqemulator parses every query it receives with sqlglot about ten times over (once per rewrite and
check it applies), and parsing is most of its CPU time. This launcher keeps the parse of each
recent query text and hands every caller its own copy (`Expression.copy`, a deep copy, so a caller
that rewrites its tree changes no one else's): the same trees as before, from one parse instead of
ten. Nothing else of the emulator changes. `python -m ampbq.tools.bq_emulator start …` takes the
arguments of `bqemulator start`.
"""

from __future__ import annotations

import functools
import sys

import sqlglot

_parse_one = sqlglot.parse_one


@functools.lru_cache(maxsize=1024)
def _parsed(sql: str, read: str | None) -> sqlglot.exp.Expression:
    return _parse_one(sql, read=read)


def parse_one(sql, read=None, dialect=None, into=None, **opts):
    if isinstance(sql, str) and dialect is None and into is None and not opts and (read is None or isinstance(read, str)):
        return _parsed(sql, read).copy()
    return _parse_one(sql, read=read, dialect=dialect, into=into, **opts)


def main() -> None:
    sqlglot.parse_one = parse_one
    from bqemulator.cli import main as emulator

    sys.argv[0] = "bqemulator"
    emulator()


if __name__ == "__main__":
    main()
