"""Scans of large byte buffers with numpy: colons for the repeated-key screen, newlines for lines.
numpy compares 16+ bytes an instruction; bytes.count goes one at a time and would cost the
transform ~15% of its time."""

from __future__ import annotations

import os

# numpy's OpenBLAS otherwise starts a thread per core that spins for a while (0.1 s of CPU per
# process, on the function's one vCPU); nothing here does linear algebra.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy  # noqa: E402

COLON = ord(":")
_NEWLINE, _OPEN, _CLOSE = (ord(c) for c in "\n{}")


def count_byte(data: bytes, value: int) -> int:
    """How many bytes of `data` equal `value`, without copying it."""
    return int(numpy.count_nonzero(numpy.frombuffer(data, numpy.uint8) == value))


def scan_lines(data: bytes, end: int) -> tuple[int, bool]:
    """How many lines `data[:end]` holds (it ends with a newline), and whether every one of them is
    `{…}`: it starts with `{` and ends with `}` right before its newline.

    Such lines cannot share a JSON value: a value going on past a line's closing `}` would have
    to go on with `,`, `}` or `]`, never `{`. So a parser of concatenated JSON values that finds
    as many values as lines has found exactly one per line."""
    if end == 0:
        return 0, True
    text = numpy.frombuffer(data, numpy.uint8, count=end)
    newlines = numpy.flatnonzero(text == _NEWLINE)
    objects = bool(text[0] == _OPEN and (text[newlines - 1] == _CLOSE).all() and (text[newlines[:-1] + 1] == _OPEN).all())
    return len(newlines), objects
