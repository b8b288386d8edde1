"""Forgetting in a deployment of several Amplitude projects: each project's deletion jobs are
listed with its own keys, named by its id, applied to its own rows, objects and ledger rows, and
one project's failure does not stop the others."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
import requests

from ampbq import amplitude, deletions, entry, forgetting, load
from ampbq.config import Config
from ampbq.deletions import DeletionJob
from ampbq.errors import PermanentError, TransientError
from ampbq.tools.stub import ExportApiStub

DAY = date(2022, 3, 4)
ENV = {"AMPBQ_BUCKET": "b", "AMPBQ_PROJECT": "p", "AMPBQ_AMPLITUDE_PROJECTS": "100,200:EU", "AMPBQ_DEFAULT_PROJECT": "100",
       "AMPLITUDE_API_KEY": "k100", "AMPLITUDE_SECRET_KEY": "s100",
       "AMPLITUDE_API_KEY_200": "k200", "AMPLITUDE_SECRET_KEY_200": "s200"}


def test_a_projects_jobs_are_named_by_its_id_and_the_default_projects_old_records_are_its_own():
    listed = [DeletionJob(DAY, "done", (1,)), DeletionJob(DAY, "done", (2,), "999")]
    named = deletions.for_project(listed, "200")
    assert [j.key for j in named] == [(DAY, "200"), (DAY, "200")]
    assert deletions.to_apply(named, set()) == [DeletionJob(DAY, "done", (1, 2), "200")]  # one job of the project
    assert deletions.for_project(listed, "") == listed  # the one-project form: as Amplitude says
    recorded = {(DAY, ""), (date(2022, 3, 5), "200"), (date(2022, 3, 6), "100")}
    assert deletions.applied_keys(recorded, "100", default=True) == {(DAY, "100"), (date(2022, 3, 6), "100")}
    assert deletions.applied_keys(recorded, "200", default=False) == {(date(2022, 3, 5), "200")}
    assert deletions.applied_keys(recorded, "", default=True) == recorded


def test_a_projects_markers_table_rows_and_ledger_rows_are_its_own():
    assert forgetting.running_name("") == forgetting.RUNNING == "forget/running.json"
    assert forgetting.running_name("200") == "forget/200/running.json"
    hour = datetime(2022, 2, 1, 5, tzinfo=timezone.utc)
    script = load.delete_users_script("p.d.t", "p.d.t_loads", frozenset({7}), {hour: (1, 9)}, "tok", "200", "200")
    assert "amplitude_id IN (7) AND app = 200;" in script and "IFNULL(project, '') = '200'" in script
    default = load.delete_users_script("p.d.t", "p.d.t_loads", frozenset({7}), {hour: (1, 9)}, "tok", "100", "")
    assert "AND app = 100;" in default and "IFNULL(project, '') = ''" in default
    rows = forgetting.record_rows([DeletionJob(DAY, "done", (7,), "200")], {hour: {7: 1}}, 2, 3)
    assert "'200' AS app" in load.forgets_insert_sql("p.d.t_forgets", rows)


def test_forget_status_names_each_jobs_project_and_shows_one_project_when_asked():
    config = Config.from_env(ENV)
    default, other = config.projects
    rows = [{"job_day": DAY, "app": ""}, {"job_day": DAY, "app": "100"}, {"job_day": DAY, "app": "200"}]
    assert [r["project"] for r in forgetting.applied_of(rows, config.projects)] == ["100", "100", "200"]
    assert [r["app"] for r in forgetting.applied_of(rows, config.projects, (other,))] == ["200"]
    one = Config(bucket="b", project="p").projects
    assert [r["project"] for r in forgetting.applied_of(rows, one)] == ["default"] * 3  # the one project's, all


def test_the_exit_status_is_the_worst_projects():
    config = Config.from_env(ENV)
    done = forgetting.ProjectOutcome(config.projects[0], forgetting.ForgetResult())
    later = forgetting.ProjectOutcome(config.projects[1], error=TransientError("not loaded yet"))
    broken = forgetting.ProjectOutcome(config.projects[1], error=PermanentError("credentials refused"))
    assert forgetting.exit_code(forgetting.ForgetRun([done])) == 0
    assert forgetting.exit_code(forgetting.ForgetRun([done, later])) == 3
    assert forgetting.exit_code(forgetting.ForgetRun([later, broken])) == 1
    fields = forgetting.ForgetRun([done, broken]).log_fields()
    assert fields["projects_failed"] == 1 and fields["projects"][1] == {"project": "200", "error": "credentials refused",
                                                                         "error_kind": "permanent"}


@pytest.fixture
def stub():
    with ExportApiStub(None, "k100", "s100") as server:
        server.add_project(None, "k200", "s200")
        yield server


def test_the_stub_lists_and_applies_each_projects_deletions_to_its_keys_only(stub):
    stub.delete_users([5], day=DAY, keys=("k200", "s200"))
    stub.delete_users([6], day=DAY)
    config = Config.from_env(ENV | {"AMPLITUDE_URL": stub.url})

    def listed(project) -> list:
        payload = amplitude.list_deletions(requests.Session(), config.for_project(project), DAY, DAY)
        return [j.amplitude_ids for j in deletions.parse_jobs(payload)]
    assert [listed(p) for p in config.projects] == [[(6,)], [(5,)]]
    assert stub.deleted_ids == {6} and stub.other_deletions[next(iter(stub.other_deletions))][1] == {5}


def test_one_projects_failure_does_not_stop_the_others_and_each_lists_with_its_own_keys(stub, monkeypatch):
    stub.delete_users([5], day=DAY, keys=("k200", "s200"), status="staging")  # listed, nothing to apply
    monkeypatch.setattr(forgetting.bq_adapter, "ensure_tables", lambda bq, config: None)
    monkeypatch.setattr(forgetting.bq_adapter, "query_rows", lambda bq, sql: [])
    config = Config.from_env(ENV | {"AMPLITUDE_URL": stub.url, "AMPLITUDE_SECRET_KEY": "wrong"})
    run = forgetting.forget(config, None, None, requests.Session(), DAY, DAY)
    first, second = run.outcomes
    assert isinstance(first.error, PermanentError) and "credentials refused" in str(first.error)
    assert second.error is None and second.result.considered == 1
    assert forgetting.exit_code(run) == 1
    only = forgetting.forget(config, None, None, requests.Session(), DAY, DAY, projects=(config.projects[1],))
    assert [o.project.app for o in only.outcomes] == ["200"] and not only.failed


class _Bucket:
    def __init__(self):
        self.written = []

    def blob(self, name):
        bucket = self

        class Blob:
            def upload_from_string(self, data, content_type):
                bucket.written.append(name)
        return Blob()


def test_the_function_dead_letters_each_failed_project_and_retries_for_a_transient_one():
    config = Config.from_env(ENV)
    default, other = config.projects
    bucket = _Bucket()
    run = forgetting.ForgetRun([forgetting.ProjectOutcome(default, error=PermanentError("refused")),
                                forgetting.ProjectOutcome(other, error=PermanentError("refused"))])
    assert entry._forget_outcomes(run, bucket, "2022-03-01..2022-03-30") is run
    assert bucket.written == ["deadletter/forget/2022-03-01..2022-03-30.json", "deadletter/forget/200/2022-03-01..2022-03-30.json"]
    later = forgetting.ForgetRun([forgetting.ProjectOutcome(default, forgetting.ForgetResult()),
                                  forgetting.ProjectOutcome(other, error=TransientError("not loaded yet"))])
    with pytest.raises(TransientError):
        entry._forget_outcomes(later, _Bucket(), "d")


def test_rejects_are_read_from_each_projects_own_tree():
    import json as jsonlib

    from ampbq.tools import rejects

    hour = datetime(2022, 1, 5, 7, tzinfo=timezone.utc)
    assert rejects.parse_hour("rejects/200/2022-01-05/07.json", "200") == hour
    assert rejects.parse_hour("rejects/200/2022-01-05/07.json") is None  # not the default project's
    assert rejects.parse_hour("rejects/2022-01-05/07.json", "200") is None
    record = jsonlib.dumps({"line": 3, "reason": "missing uuid", "raw": "{}"}).encode() + b"\n"

    class Blob:
        def __init__(self, name):
            self.name, self.metadata = name, {}

        def download_as_bytes(self, **kwargs):
            return record

    class Bucket:
        def __init__(self):
            self.asked = []

        def list_blobs(self, prefix, **kwargs):
            self.asked.append(prefix)
            return [Blob(n) for n in ("rejects/2022-01-05/07.json", "rejects/200/2022-01-05/07.json") if n.startswith(prefix)]

    bucket = Bucket()
    from ampbq.naming import HourRange
    found = rejects.read(bucket, HourRange(hour, hour), "200")
    assert bucket.asked == ["rejects/200/2022-01-05/"] and [(r.hour, r.line) for r in found] == [(hour, 3)]
