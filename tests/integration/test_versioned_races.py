"""Older data never wins, on a bucket that keeps old generations readable (as production's does).

The local bucket is versioned (fake-gcs-server's memory backend) and `gcs_rules` enforces the
generation preconditions Cloud Storage enforces, so these races play out as in the cloud.
"""

from __future__ import annotations

import threading

import pytest
from google.api_core import exceptions as gexc

from ampbq import gcs, naming, transform_step
from ampbq.errors import Ignored
from ampbq.events import StorageObject
from factory import event_line, utc
from integration_helpers import drop_hour, hour_rows, ledger_entry, wait_for, wait_loaded

pytestmark = pytest.mark.integration


def test_the_local_bucket_keeps_old_generations_and_enforces_preconditions(bucket):
    name = "scratch/versioning-probe.txt"
    first = bucket.blob(name)
    first.upload_from_string(b"one")
    source = bucket.blob("scratch/versioning-source.txt")
    source.upload_from_string(b"two")
    second = bucket.blob(name)
    second.compose([source], if_generation_match=first.generation)
    assert second.generation != first.generation  # every compose makes a new generation
    assert bucket.blob(name, generation=first.generation).download_as_bytes() == b"one"
    assert bucket.blob(name).download_as_bytes() == b"two"
    with pytest.raises(gexc.PreconditionFailed):  # the generation it names is no longer live
        bucket.blob(name).compose([source], if_generation_match=first.generation)
    with pytest.raises(gexc.PreconditionFailed):
        bucket.blob(name).delete(if_generation_match=first.generation)
    bucket.blob(name).delete(if_generation_match=second.generation)
    assert bucket.get_blob(name) is None


def test_the_local_bucket_lists_and_deletes_noncurrent_generations_as_cloud_storage_does(bucket):
    name = "scratch/versions-probe.txt"
    generations = []
    for body in (b"one", b"two", b"three"):
        blob = bucket.blob(name)
        blob.upload_from_string(body)
        generations.append(blob.generation)
    listed = lambda: sorted(v.generation for v in bucket.list_blobs(prefix=name, versions=True))
    assert listed() == sorted(generations)  # noncurrent generations are listed with versions=True
    bucket.blob(name, generation=generations[0]).delete()  # a noncurrent generation goes for good
    assert listed() == sorted(generations[1:])
    with pytest.raises(gexc.NotFound):
        bucket.blob(name, generation=generations[0]).download_as_bytes()
    with pytest.raises(gexc.NotFound):
        bucket.blob(name, generation=generations[0]).delete()
    assert bucket.blob(name).download_as_bytes() == b"three"  # the live object is untouched
    with pytest.raises(gexc.PreconditionFailed):  # a precondition is on the live generation
        bucket.blob(name, generation=generations[1]).delete(if_generation_match=generations[1])
    assert listed() == sorted(generations[1:])
    bucket.blob(name, generation=generations[2]).delete()  # the live generation named: gone too
    assert bucket.get_blob(name) is None and listed() == [generations[1]]
    assert bucket.blob(name, generation=generations[1]).download_as_bytes() == b"two"


def test_a_transform_of_an_older_generation_that_finishes_last_changes_nothing(stack, bucket, bq, config, monkeypatch):
    hour = utc(2021, 9, 1, 1)
    old = drop_hour(bucket, hour, [event_line(f"v1-{i}", hour) for i in range(6)])
    wait_loaded(bq, config, hour, old)
    old_import = bucket.get_blob(naming.import_object_name(hour))

    # Replay generation 1's transform in this process and hold it after its first read, as a slow
    # instance would be, while generation 2 goes through the whole chain.
    reading, release = threading.Event(), threading.Event()
    real_reader = gcs.reader

    def slow_reader(*args, **kwargs):
        reading.set()
        release.wait(120)
        return real_reader(*args, **kwargs)

    monkeypatch.setattr(gcs, "reader", slow_reader)
    # The import object's source generation is what the replay must see at its start to get past
    # its first check: put the state back to "not yet transformed" for generation 1.
    bucket.blob(old_import.name).delete()
    outcome: dict = {}

    def replay():
        try:
            outcome["counts"] = transform_step.transform_hour(StorageObject(bucket.name, naming.hour_object_name(hour), old), bucket)
        except Ignored as why:
            outcome["ignored"] = str(why)
        except Exception as error:  # reported by the assertion below
            outcome["error"] = error

    monkeypatch.setattr(transform_step.gcs, "live", lambda bucket, obj: None)  # it was live when it started
    worker = threading.Thread(target=replay)
    worker.start()
    assert reading.wait(30)
    new = drop_hour(bucket, hour, [event_line(f"v2-{i}", hour) for i in range(3)])
    wait_loaded(bq, config, hour, new)
    newest_import = bucket.get_blob(naming.import_object_name(hour))
    release.set()
    worker.join(60)

    assert "error" not in outcome, outcome
    assert "ignored" in outcome and "newer" in outcome["ignored"], outcome
    live = bucket.get_blob(naming.import_object_name(hour))
    assert live.generation == newest_import.generation and live.metadata["source_generation"] == str(new)
    assert sorted(r["uuid"] for r in hour_rows(bq, config, hour)) == ["v2-0", "v2-1", "v2-2"]
    # The older generation is still readable in the versioned bucket, and the hour object's too.
    assert bucket.blob(naming.hour_object_name(hour), generation=old).download_as_bytes()


def test_an_import_object_of_an_older_source_generation_never_replaces_newer_rows(stack, bucket, bq, config):
    hour = utc(2021, 9, 1, 2)
    old = drop_hour(bucket, hour, [event_line(f"o1-{i}", hour) for i in range(5)])
    wait_loaded(bq, config, hour, old)
    first_import = bucket.get_blob(naming.import_object_name(hour))
    old_rows = bucket.blob(first_import.name, generation=first_import.generation).download_as_bytes()
    new = drop_hour(bucket, hour, [event_line(f"o2-{i}", hour) for i in range(2)])
    wait_loaded(bq, config, hour, new)

    # The older generation's import object comes back with a newer import generation (what an
    # unguarded late transform would have written): the load must keep the newer source's rows.
    late = bucket.blob(first_import.name)
    late.metadata = dict(first_import.metadata)
    late.upload_from_string(old_rows, content_type="application/x-ndjson")
    assert late.generation > first_import.generation
    wait_for(lambda: _relayed(stack, late.name), "the load function to answer the late import object's event")
    assert sorted(r["uuid"] for r in hour_rows(bq, config, hour)) == ["o2-0", "o2-1"]
    assert ledger_entry(bq, config, hour)["source_generation"] == new


def _relayed(stack, name: str) -> bool:
    """Whether the load function has acked a finalize of `name` delivered by the relay."""
    return sum(url == stack.function_url("load") and obj == name and status == 200
               for url, obj, status in stack.relay_deliveries()) >= 3  # the three generations written
