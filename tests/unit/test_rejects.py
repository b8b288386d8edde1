"""Reading quarantined lines back: names, records, previews and reason kinds."""

from __future__ import annotations

import base64
import io
import zipfile
from datetime import datetime, timezone

from ampbq.tools import rejects
from ampbq.naming import HourRange
from ampbq.tools.sandbox import GeneratedSource
from ampbq.transform import reject_record

HOUR = datetime(2022, 1, 5, 7, tzinfo=timezone.utc)


def test_rejects_object_names_give_their_upload_hour():
    assert rejects.parse_hour("rejects/2022-01-05/07.json") == HOUR
    assert rejects.parse_hour("import/2022-01-05/07.json") is None
    assert rejects.parse_hour("rejects/2022-01-05/07.json.partial") is None


def test_records_written_by_transform_read_back_with_their_raw_bytes():
    data = reject_record(2, "line is not valid JSON: x", b'{"uuid": ', "gs://b/export/2022-01-05/07.json.gz") + \
        reject_record(4, "line is not valid UTF-8", b"\xff\xfe", "gs://b/export/2022-01-05/07.json.gz")
    found = rejects.parse_records(HOUR, data, "123")
    assert [(r.line, r.raw) for r in found] == [(2, b'{"uuid": '), (4, b"\xff\xfe")]
    assert found[1].preview() == "<2 bytes, not UTF-8>"
    assert found[1].as_json()["raw_base64"] == base64.b64encode(b"\xff\xfe").decode()
    assert found[0].as_json() | {"raw": None} == {"hour": "2022-01-05T07", "line": 2, "reason": "line is not valid JSON: x",
                                                   "source_object": "gs://b/export/2022-01-05/07.json.gz",
                                                   "source_generation": "123", "raw": None}


def test_preview_keeps_a_table_row_on_one_line():
    record = rejects.Reject(HOUR, 1, "r", "", b'{"a": "line\\nbreak"}' + b"x" * 100)
    assert len(record.preview(40)) == 40 and record.preview(40).endswith("…")
    assert "\n" not in rejects.Reject(HOUR, 1, "r", "", "tab\there".encode()).preview()


def test_alike_reasons_are_counted_together():
    records = [rejects.Reject(HOUR, n, f"line is not valid JSON: col {n}", "", b"") for n in range(3)]
    records.append(rejects.Reject(HOUR, 9, "missing uuid", "", b""))
    assert rejects.by_kind(records) == {"line is not valid JSON": 3, "missing uuid": 1}


def test_sandbox_source_has_no_data_for_its_quiet_hours():
    sink = io.BytesIO()
    hours = HourRange(HOUR, HOUR.replace(hour=9))
    assert GeneratedSource(events_per_hour=4, parts_per_hour=1, quiet_hours=frozenset({8})).write(hours, sink) == 8
    names = zipfile.ZipFile(sink).namelist()
    assert [n.split("_")[-1].split("#")[0] for n in names] == ["7", "9"]
