"""The requests the Cloud Storage and BigQuery adapters make for the steps, played against small
fakes that record each call: which object, which generation, which precondition, and what a
412 or a 404 becomes. Every Google SDK call of a step goes through these functions."""

import ast
import pathlib
from datetime import datetime, timedelta, timezone

import pytest
from google.api_core import exceptions as gexc

from ampbq import bigquery as bq_adapter
from ampbq import gcs
from ampbq.errors import TransientError
from ampbq.lease import Lease

STEPS = ("export_step", "load_step", "transform_step", "assemble", "forgetting", "lease")
PACKAGE = pathlib.Path(gcs.__file__).parent


class FakeBlob:
    def __init__(self, bucket, name, generation=None):
        self.bucket, self.name, self.generation = bucket, name, generation
        self.updated, self.changed = None, {}

    @property
    def metadata(self):
        return self.changed.get("metadata")

    @metadata.setter
    def metadata(self, value):
        self.changed["metadata"] = value

    def _call(self, what, **kwargs):
        self.bucket.calls.append((what, self.name, self.generation, kwargs))
        failure = self.bucket.failures.pop(0) if self.bucket.failures else None
        if failure is not None:
            raise failure

    def upload_from_string(self, data, content_type, **kwargs):
        self._call("upload", data=data, content_type=content_type, metadata_set="metadata" in self.changed,
                   metadata=self.metadata, **kwargs)
        self.generation = 42

    def delete(self, **kwargs):
        self._call("delete", **kwargs)

    def download_as_bytes(self, **kwargs):
        self._call("download", **kwargs)
        return b"content"


class FakeBucket:
    name = "bkt"

    def __init__(self, failures=(), live=None):
        self.calls, self.failures, self.live = [], list(failures), live or {}

    def blob(self, name, generation=None):
        return FakeBlob(self, name, generation)

    def get_blob(self, name, generation=None):
        self.calls.append(("get", name, generation, {}))
        return self.live.get(name)

    def list_blobs(self, **kwargs):
        self.calls.append(("list", kwargs.get("prefix"), None, kwargs))
        return [FakeBlob(self, "a", 1), FakeBlob(self, "a", 2)]


def _412():
    return gexc.PreconditionFailed("conditionNotMet")


def test_put_sends_metadata_only_when_given_and_returns_the_new_generation():
    bucket = FakeBucket()
    assert gcs.put(bucket, "m.json", "{}", "application/json") == 42
    assert gcs.put(bucket, "h.json.gz", b"", "application/gzip", {"parts": "0"}) == 42
    (_, _, _, plain), (_, _, _, with_meta) = bucket.calls
    assert plain == {"data": "{}", "content_type": "application/json", "metadata_set": False, "metadata": None}
    assert with_meta["metadata_set"] and with_meta["metadata"] == {"parts": "0"}


def test_a_conditional_put_names_its_generation_and_a_412_is_generation_changed_classified_as_transient():
    bucket = FakeBucket(failures=[None, _412()])
    assert gcs.put_if_generation(bucket, "lease.json", "{}", "application/json", 0) == 42
    with pytest.raises(gcs.GenerationChanged) as raised:
        gcs.put_if_generation(bucket, "lease.json", "{}", "application/json", 7)
    assert [c[3]["if_generation_match"] for c in bucket.calls] == [0, 7]
    assert isinstance(raised.value, TransientError) and isinstance(raised.value.__cause__, gexc.PreconditionFailed)
    assert str(raised.value) == str(gcs.classify(raised.value.__cause__))


def test_an_unconditional_put_lets_a_412_through_as_the_library_raised_it():
    with pytest.raises(gexc.PreconditionFailed):
        gcs.put(FakeBucket(failures=[_412()]), "x", "{}", "application/json")


def test_deleting_a_generation_names_it_and_says_whether_it_was_there():
    bucket = FakeBucket(failures=[None, gexc.NotFound("gone")])
    assert gcs.delete_generation(bucket, "a", 5) is True
    assert gcs.delete_generation(bucket, "a", 5) is False
    assert bucket.calls[0] == ("delete", "a", 5, {})


def test_conditional_deletes_are_false_when_the_object_was_replaced_or_is_gone():
    bucket = FakeBucket(failures=[None, _412(), gexc.NotFound("gone")])
    assert gcs.delete_if_generation(bucket, "a", 3) is True
    assert gcs.delete_if_generation(bucket, "a", 3) is False
    assert gcs.delete_generation_if_live(bucket, "a", 3) is False
    assert [(c[2], c[3]) for c in bucket.calls] == [(None, {"if_generation_match": 3})] * 2 + [(3, {"if_generation_match": 3})]


def test_reading_a_generation_that_is_gone_is_none():
    assert gcs.read_bytes(FakeBucket(), "t.json", 4) == b"content"
    assert gcs.read_bytes(FakeBucket(failures=[gexc.NotFound("gone")]), "t.json", 4) is None


def test_read_live_is_conditional_on_the_generation_read():
    bucket = FakeBucket()
    assert gcs.read_live(FakeBlob(bucket, "r.json", 9)) == b"content"
    assert bucket.calls == [("download", "r.json", 9, {"if_generation_match": 9})]


def test_listings_of_versions_and_metadata_reads():
    bucket = FakeBucket(live={"m": FakeBlob(None, "m", 1)})
    assert [b.generation for b in gcs.versions(bucket, "a")] == [1, 2]
    assert gcs.exists(bucket, "m") and not gcs.exists(bucket, "n")
    assert gcs.version(bucket, "n", 8) is None
    assert bucket.calls == [("list", "a", None, {"prefix": "a", "versions": True}), ("get", "m", None, {}),
                            ("get", "n", None, {}), ("get", "n", 8, {})]


def test_folders_reads_every_page_before_the_prefixes():
    class Pages:
        prefixes: set = set()

        @property
        def pages(self):
            yield "page 1"
            self.prefixes = {"p/1/", "p/2/"}
            yield "page 2"

    class Bucket:
        def list_blobs(self, **kwargs):
            assert kwargs == {"prefix": "p/", "delimiter": "/"}
            return Pages()

    assert gcs.folders(Bucket(), "p/") == {"p/1/", "p/2/"}


def test_age_is_the_generation_and_seconds_since_written():
    blob = FakeBlob(None, "l", 6)
    blob.updated = datetime.now(timezone.utc) - timedelta(seconds=30)
    generation, seconds = gcs.age(FakeBucket(live={"l": blob}), "l")
    assert generation == 6 and 29 < seconds < 60
    assert gcs.age(FakeBucket(), "l") is None
    blob.updated = None
    assert gcs.age(FakeBucket(live={"l": blob}), "l") == (6, 0)


def test_copy_generation_is_none_when_the_generation_is_gone(monkeypatch):
    import contextlib
    import io

    @contextlib.contextmanager
    def reader(bucket, name, generation=None):
        if generation == 2:
            raise gexc.NotFound("gone")
        yield io.BytesIO(b"abcdef")

    monkeypatch.setattr(gcs, "reader", reader)
    out = io.BytesIO()
    assert gcs.copy_generation(None, "p", 1, out, chunk=4) == 6 and out.getvalue() == b"abcdef"
    assert gcs.copy_generation(None, "p", 2, io.BytesIO()) is None


def test_a_lease_breaks_a_stale_holder_by_its_generation_and_renews_conditionally():
    held = FakeBlob(None, "lease", 11)
    held.updated = datetime.now(timezone.utc) - timedelta(seconds=120)
    bucket = FakeBucket(live={"lease": held})
    lease = Lease(bucket, "lease", stale_after=60)
    assert lease.acquire() and lease.generation == 42
    get, delete, write = bucket.calls
    assert delete == ("delete", "lease", 11, {"if_generation_match": 11})
    assert write[3]["if_generation_match"] == 0 and not write[3]["metadata_set"]
    bucket.failures = [_412()]
    assert not lease.renew() and lease.generation is None


class FakeBigQuery:
    def __init__(self, tables=()):
        self.tables, self.calls = set(tables), []

    def get_table(self, table_id):
        self.calls.append(("get_table", table_id))
        if table_id not in self.tables:
            raise gexc.NotFound(table_id)

    def delete_table(self, table_id, not_found_ok=False):
        self.calls.append(("delete_table", table_id, not_found_ok))

    def query(self, sql, job_config=None, job_id=None, job_retry="default"):
        self.calls.append(("query", sql, job_config.labels, job_id, job_retry))

        class Job:
            def result(self):
                return self
        return Job()


def test_table_exists_and_drop_table():
    bq = FakeBigQuery(tables={"p.d.s"})
    assert bq_adapter.table_exists(bq, "p.d.s") and not bq_adapter.table_exists(bq, "p.d.gone")
    bq_adapter.drop_table(bq, "p.d.gone")
    assert bq.calls[-1] == ("delete_table", "p.d.gone", True)


def test_a_script_runs_under_its_deterministic_id_with_its_labels_and_no_client_retry():
    bq = FakeBigQuery()
    bq_adapter.run_script(bq, "BEGIN TRANSACTION; COMMIT TRANSACTION;", {"step": "commit"}, lambda n: f"ampbq_commit_t_r{n}")
    assert bq.calls == [("query", "BEGIN TRANSACTION; COMMIT TRANSACTION;", {"step": "commit"}, "ampbq_commit_t_r0", None)]


# What a step may not do itself: each of these is the adapters' (gcs.py, bigquery.py).
_SDK_METHODS = {"blob", "get_blob", "list_blobs", "upload_from_string", "upload_from_file", "download_as_bytes",
                "download_as_text", "delete", "compose", "rewrite", "open", "query", "get_table", "delete_table",
                "create_table", "load_table_from_uri", "get_job", "QueryJobConfig", "LoadJobConfig", "Table"}


@pytest.mark.parametrize("module", STEPS)
def test_the_steps_call_the_adapters_not_the_google_sdk(module):
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    imported = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("google.api_core") for alias in node.names}
    assert not imported, f"{module} handles the SDK's errors itself: {imported}"
    calls = sorted({node.func.attr for node in ast.walk(tree) if isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute) and node.func.attr in _SDK_METHODS
                    and not (isinstance(node.func.value, ast.Name) and node.func.value.id in ("gcs", "bq_adapter"))})
    assert not calls, f"{module} calls the SDK directly: {calls}"
