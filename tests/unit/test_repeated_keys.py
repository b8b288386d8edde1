"""Repeated keys: the exact parser, the colon-count screen of the fast path, and the transform."""

import io
import json
import random

import orjson
import pytest

from ampbq import repeated_keys, transform
from ampbq.repeated_keys import RepeatedKey, colons_match_all
from ampbq.shaping import Lineage, Shaper
from factory import generated_events, gzip_lines, utc

LINEAGE = Lineage(utc(2024, 1, 31, 5), "gs://b/export/2024-01-31/05.json.gz", 9)


@pytest.mark.parametrize("text, key", [
    ('{"a": 1, "a": 1}', "a"),
    ('{"a": 1, "b": {"c": null, "c": 2}}', "c"),
    ('{"a": [{"x": 1}, {"y": 1, "y": 1}]}', "y"),
    ('{"a": 1, "\\u0061": 2}', "a"),  # the same key, one of them written as an escape
])
def test_loads_names_the_repeated_key(text, key):
    with pytest.raises(RepeatedKey) as raised:
        repeated_keys.loads(text)
    assert raised.value.key == key and f"repeats the key {key!r}" in str(raised.value)


def test_loads_keeps_big_integers_whole_and_refuses_nan():
    assert repeated_keys.loads('{"n": 123456789012345678901234567890}') == {"n": 123456789012345678901234567890}
    with pytest.raises(ValueError):
        repeated_keys.loads('{"n": NaN}')


def with_repeated_key(rng: random.Random, event: dict) -> bytes:
    """The event's line with one key written twice: at the top or inside a property object, with
    the same or another value, first or last, with spaces around the colon or not."""
    line = orjson.dumps(event).decode()
    nested = [name for name in ("event_properties", "user_properties") if isinstance(event.get(name), dict) and event[name]]
    if nested and rng.random() < 0.5:
        name = rng.choice(nested)
        key = rng.choice(list(event[name]))
        target = f'"{name}":{{'
    else:
        key = rng.choice(list(event))
        target = "{"
    value = rng.choice(['null', '"x:y"', '1', json.dumps(event.get(key)), '{"k":"v"}', '"a"'])
    colon = rng.choice([":", " : ", ": "])
    extra = f'{json.dumps(key)}{colon}{value},'
    position = line.index(target) + len(target)
    return (line[:position] + extra + line[position:]).encode()


def test_the_fast_path_never_takes_a_line_that_repeats_a_key():
    rng = random.Random(11)
    shaper = Shaper(LINEAGE)
    events = generated_events(300)
    taken_clean = 0
    for number, event in enumerate(events, 1):
        if shaper.shape_line(orjson.dumps(event), number) is not None:
            taken_clean += 1
        for _ in range(5):
            line = with_repeated_key(rng, event)
            with pytest.raises(RepeatedKey):
                repeated_keys.loads(line.decode())
            assert shaper.shape_line(line, number) is None, line
    assert taken_clean == len(events)  # the screen lets every clean generated event through


def test_a_chunk_fails_the_count_when_any_one_line_repeats_a_key():
    rng = random.Random(12)
    shaper = Shaper(LINEAGE)
    lines = [orjson.dumps(event) for event in generated_events(200)]

    def screen(chunk_lines):
        rows = [shaper.shape_line_unscreened(line, n) for n, line in enumerate(chunk_lines, 1)]
        assert all(rows)
        joined = b"\n".join(rows)
        return colons_match_all(b"\n".join(chunk_lines), joined, len(rows), shaper.colons_added)

    assert screen(lines)
    for _ in range(20):
        doubtful = list(lines)
        at = rng.randrange(len(doubtful))
        doubtful[at] = with_repeated_key(rng, orjson.loads(doubtful[at]))
        if shaper.shape_line_unscreened(doubtful[at], 1) is None:
            continue  # msgspec refused it (e.g. a value of another type); not the screen's case
        assert not screen(doubtful)


def test_an_escaped_colon_sends_the_chunk_to_the_exact_check_and_still_loads():
    lines = [orjson.dumps(event) for event in generated_events(50)]
    event = orjson.loads(lines[10])
    event["event_properties"] = {"a:b": 1}
    lines[10] = orjson.dumps(event).replace(b'"a:b"', b'"a\\u003ab"')
    counts, rows, rejected = run(lines)
    assert (counts.rows, counts.rejected) == (50, 0)
    assert rows[10]["event_properties"] == {"a:b": 1}


def run(lines: list[bytes]):
    out, rejects = io.BytesIO(), io.BytesIO()
    counts = transform.transform_stream(transform.open_gzip(io.BytesIO(gzip_lines(lines))),
                                        out, rejects, LINEAGE)
    return counts, [orjson.loads(r) for r in out.getvalue().splitlines()], [orjson.loads(r) for r in rejects.getvalue().splitlines()]


def test_in_a_big_chunk_only_the_line_that_repeats_a_key_is_rejected():
    rng = random.Random(13)
    events = generated_events(400)
    lines = [orjson.dumps(event) for event in events]
    bad = {57, 300}
    for at in bad:
        lines[at] = with_repeated_key(rng, events[at])
    counts, rows, rejected = run(lines)
    assert (counts.events, counts.rows, counts.rejected) == (400, 398, 2)
    assert [r["line"] for r in rejected] == [58, 301]
    assert all("line is JSON but its object repeats the key" in r["reason"] for r in rejected)
    assert [r["uuid"] for r in rows] == [e["uuid"] for i, e in enumerate(events) if i not in bad]
    assert [r["_source_line"] for r in rows] == [i + 1 for i in range(400) if i not in bad]
