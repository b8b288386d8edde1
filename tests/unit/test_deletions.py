"""The pure parts of deletions honoured: the deletions list parsed, the jobs chosen, the events of
deleted users taken out of lines, gzip parts, zips and rejects, and the SQL the run writes."""

from __future__ import annotations

import base64
import gzip
import io
import json
import zipfile
from datetime import date, datetime, timezone

import pytest
import requests

from ampbq import amplitude, deletions, forgetting, load
from ampbq.config import Config
from ampbq.deletions import DeletionJob, MalformedDeletions
from ampbq.errors import PermanentError
from ampbq.tools.stub import ExportApiStub
from factory import entry_name, event, utc, zip_archive

DOCUMENTED = [{"amplitude_ids": [{"amplitude_id": 356896327775, "requested_on_day": "2022-02-17",
                                  "requester": "employee@yourcompany.com"}], "day": "2022-03-03", "status": "staging"},
              {"amplitude_ids": [{"amplitude_id": 11, "requester": "a", "requested_on_day": "2022-02-20"},
                                 {"amplitude_id": 12, "requester": "a", "requested_on_day": "2022-02-21"}],
               "day": "2022-03-04", "status": "done", "app": 187520}]


def line(amplitude_id, uuid="u") -> bytes:
    return json.dumps(event(uuid, event_type="x", amplitude_id=amplitude_id)).encode() + b"\n"


def part_name(partition: int) -> str:
    return entry_name(1, utc(2022, 3, 4, 5), partition)  # 1/1_2022-03-04_5#{partition}.json.gz


def test_the_documented_list_parses_into_jobs():
    jobs = deletions.parse_jobs(DOCUMENTED)
    assert jobs == [DeletionJob(date(2022, 3, 3), "staging", (356896327775,)),
                    DeletionJob(date(2022, 3, 4), "done", (11, 12), "187520")]
    assert deletions.parse_jobs([]) == []
    assert deletions.parse_jobs({"deletions": DOCUMENTED}) == jobs


@pytest.mark.parametrize("payload, named", [
    ({"error": "x"}, "expected a JSON list of jobs, got dict"),
    ([1], "job 0: expected an object, got int"),
    ([{"status": "done"}], 'job 0: no "day"'),
    ([{"day": "03/04/2022", "status": "done"}], '"day" is not YYYY-MM-DD'),
    ([{"day": "2022-03-04", "status": "finished"}], '"status" must be one of staging, submitted, done'),
    ([{"day": "2022-03-04", "status": "done", "amplitude_ids": "11"}], '"amplitude_ids" is not a list'),
    ([{"day": "2022-03-04", "status": "done", "amplitude_ids": [{"user_id": "u"}]}], 'amplitude_ids[0]: no integer "amplitude_id"'),
    ([{"day": "2022-03-04", "status": "done", "amplitude_ids": [{"amplitude_id": "abc"}]}], "is not an integer: 'abc'"),
    ([{"day": "2022-03-04", "status": "done", "amplitude_ids": [{"amplitude_id": -5}]}], "out of range"),
])
def test_a_malformed_list_is_one_line_naming_what_is_wrong(payload, named):
    with pytest.raises(MalformedDeletions) as error:
        deletions.parse_jobs(payload)
    assert named in str(error.value) and "\n" not in str(error.value)
    assert isinstance(error.value, PermanentError)


def test_only_done_jobs_not_applied_yet_are_chosen_oldest_first():
    jobs = [DeletionJob(date(2022, 3, 9), "done", (3,)), DeletionJob(date(2022, 3, 4), "done", (1, 2)),
            DeletionJob(date(2022, 3, 5), "submitted", (4,)), DeletionJob(date(2022, 3, 6), "done", (5,), "9")]
    chosen = deletions.to_apply(jobs, {(date(2022, 3, 6), "9")})
    assert [j.day for j in chosen] == [date(2022, 3, 4), date(2022, 3, 9)]
    assert deletions.all_ids(chosen) == {1, 2, 3}
    assert deletions.to_apply(jobs, {j.key for j in jobs}) == []


def test_rows_are_counted_per_job_once_per_id():
    jobs = [DeletionJob(date(2022, 3, 4), "done", (1, 2)), DeletionJob(date(2022, 3, 5), "done", (2, 3))]
    assert deletions.rows_per_job(jobs, {1: 4, 2: 1, 3: 7, 9: 100}) == {(date(2022, 3, 4), ""): 5, (date(2022, 3, 5), ""): 7}


def test_ranges_are_checked():
    assert deletions.recent_days(date(2022, 3, 30)) == (date(2022, 3, 1), date(2022, 3, 30))
    with pytest.raises(PermanentError, match="before it starts"):
        deletions.check_range(date(2022, 3, 2), date(2022, 3, 1))
    with pytest.raises(PermanentError, match="six months"):
        deletions.check_range(date(2022, 1, 1), date(2022, 12, 31))


def rewritten(part: bytes, ids: frozenset[int]) -> tuple[bytes, int]:
    """(the inflated content of the re-written part, events dropped)."""
    out = io.BytesIO()
    dropped = deletions.drop_in_gzip_stream(io.BytesIO(part), out, ids)
    return gzip.decompress(out.getvalue()), dropped


def test_lines_of_deleted_users_go_and_every_other_line_stays_byte_for_byte():
    other = b'{"uuid":"k","amplitude_id":987, "note": "mentions 111 in text"}\n'
    damaged = b'{"uuid":"d","amplitude_id": 111, "x": \n'
    data = line(111) + other + line(222) + damaged + b"\n" + line("111")
    kept, dropped = rewritten(gzip.compress(data), frozenset({111}))
    assert dropped == 3 and kept == other + line(222) + b"\n"
    assert rewritten(gzip.compress(data), frozenset()) == (data, 0)
    assert deletions.line_amplitude_id(b'{"event_properties": {"amplitude_id": 111}}') is None  # only the top-level id


def test_a_gzip_part_is_rewritten_only_when_it_held_a_deleted_user():
    part = gzip.compress(line(1) + line(2), mtime=0)
    assert deletions.count_deleted(io.BytesIO(part), frozenset({3})) == 0  # so the part is copied as it is
    assert rewritten(part, frozenset({1})) == (line(2), 1)
    damaged = gzip.compress(line(1) + line(2), mtime=0)[:-12] + b"garbage"
    assert line(1) in deletions.inflate(damaged) or deletions.inflate(damaged) == b""


def test_a_zip_keeps_its_entries_and_names_without_the_deleted_users():
    source = zip_archive([(part_name(0), gzip.compress(line(1) + line(2))), (part_name(1), gzip.compress(line(3))),
                          ("1/notes.txt", b"amplitude_id 1")])
    target = io.BytesIO()
    assert deletions.drop_in_zip(source, target, frozenset({1, 3})) == 2
    with zipfile.ZipFile(target) as archive:
        assert [i.filename for i in archive.infolist()] == ["1/1_2022-03-04_5#0.json.gz", "1/1_2022-03-04_5#1.json.gz", "1/notes.txt"]
        assert [gzip.decompress(archive.read(n)) for n in archive.namelist()[:2]] == [line(2), b""]


def test_rejects_records_of_deleted_users_go():
    records = [{"line": 1, "reason": "r", "raw": line(1).decode().strip()},
               {"line": 2, "reason": "r", "raw_base64": base64.b64encode(b'{"amplitude_id": 1, \xff').decode()},
               {"line": 3, "reason": "r", "raw": line(2).decode().strip()}]
    data = b"".join(json.dumps(r).encode() + b"\n" for r in records)
    kept, dropped = deletions.drop_in_rejects(data, frozenset({1}))
    assert dropped == 2 and json.loads(kept)["line"] == 3


def test_the_ledger_rows_and_the_table_transaction():
    jobs = [DeletionJob(date(2022, 3, 4), "done", (1, 2), "7")]
    hour = datetime(2022, 2, 1, 5, tzinfo=timezone.utc)
    rows = forgetting.record_rows(jobs, {hour: {1: 3, 2: 1}}, objects_rewritten=4, generations_deleted=9)
    assert [(r["upload_hour"], r["rows_removed"], r["amplitude_ids"]) for r in rows] == [(hour, 4, None), (None, 4, 2)]
    sql = load.forgets_insert_sql("p.d.t_forgets", rows)
    assert "DATE '2022-03-04'" in sql and "TIMESTAMP '2022-02-01 05:00:00+00'" in sql and "'7' AS app" in sql
    script = load.delete_users_script("p.d.t", "p.d.t_loads", frozenset({2, 1}), {hour: (4, 12345)}, "tok")
    assert "amplitude_id IN (1, 2)" in script and "loaded = loaded - 4" in script and "^ 12345" in script
    assert script.startswith("BEGIN TRANSACTION;") and script.strip().endswith("COMMIT TRANSACTION;")


@pytest.fixture
def stub():
    with ExportApiStub(None, "key", "secret") as server:
        yield server


def config_for(stub, secret="secret") -> Config:
    return Config(bucket="b", project="p", amplitude_url=stub.url, amplitude_api_key="key", amplitude_secret_key=secret)


def test_the_stub_lists_deletion_jobs_over_the_real_protocol(stub):
    stub.delete_users([5, 6], day=date(2022, 3, 4))
    posted = requests.post(f"{stub.url}/api/2/deletions/users", auth=("key", "secret"),
                           json={"amplitude_ids": [7], "requester": "me"}, timeout=10)
    assert posted.status_code == 200 and posted.json()["status"] == "staging"
    listed = amplitude.list_deletions(requests.Session(), config_for(stub), date(2022, 3, 1), date(2022, 3, 31))
    assert [(j.day, j.status, j.amplitude_ids) for j in deletions.parse_jobs(listed)] == [(date(2022, 3, 4), "done", (5, 6))]
    assert stub.deleted_ids == {5, 6}
    stub.finish_deletions()
    assert stub.deleted_ids == {5, 6, 7}
    with pytest.raises(PermanentError, match="credentials refused"):
        amplitude.list_deletions(requests.Session(), config_for(stub, "wrong"), date(2022, 3, 1), date(2022, 3, 31))
    bad = requests.get(f"{stub.url}/api/2/deletions/users", params={"start_day": "2022-01-01", "end_day": "2022-12-31"},
                       auth=("key", "secret"), timeout=10)
    assert bad.status_code == 400


def test_a_list_that_is_not_json_is_a_clear_error(stub):
    from ampbq.tools.stub import Fault

    stub.faults.append(Fault(200, b"<html>maintenance</html>"))
    with pytest.raises(PermanentError, match="the deletions list is not JSON"):
        amplitude.list_deletions(requests.Session(), config_for(stub), date(2022, 3, 1), date(2022, 3, 2))


def test_a_part_is_streamed_a_chunk_at_a_time_and_its_measured_size_is_its_size(monkeypatch):
    monkeypatch.setattr(deletions, "STREAM_CHUNK", 4096)  # many chunks, lines cut across them
    lines = [line(i % 7) for i in range(3000)]
    part = gzip.compress(b"".join(lines[:1000]), mtime=0) + gzip.compress(b"".join(lines[1000:]), mtime=0)  # two members
    assert deletions.count_deleted(io.BytesIO(part), frozenset({3})) == sum(1 for i in range(3000) if i % 7 == 3)
    sized = deletions.ByteCounter()
    dropped = deletions.drop_in_gzip_stream(io.BytesIO(part), sized, frozenset({3}))
    out = io.BytesIO()
    assert deletions.drop_in_gzip_stream(io.BytesIO(part), out, frozenset({3})) == dropped
    assert len(out.getvalue()) == sized.size  # the size measured first is the size written
    assert gzip.decompress(out.getvalue()) == b"".join(l for i, l in enumerate(lines) if i % 7 != 3)


def test_a_window_reads_only_its_bytes():
    stream = io.BytesIO(b"0123456789")
    stream.seek(2)
    window = deletions.Window(stream, 5)
    assert window.read(3) + window.read() + window.read() == b"23456"


def test_a_zip_is_streamed_to_a_target_that_cannot_seek():
    class Unseekable(io.RawIOBase):
        def __init__(self):
            self.data = bytearray()

        def writable(self):
            return True

        def write(self, b):
            self.data += b
            return len(b)

    source = zip_archive([(part_name(0), gzip.compress(line(1) + line(2)))])
    assert deletions.count_in_zip(source, frozenset({1})) == 1
    source.seek(0)
    target = Unseekable()
    assert deletions.drop_in_zip(source, target, frozenset({1})) == 1
    with zipfile.ZipFile(io.BytesIO(bytes(target.data))) as archive:
        assert gzip.decompress(archive.read("1/1_2022-03-04_5#0.json.gz")) == line(2)
