"""Job-id reuse. No local BigQuery stand-in answers a repeated job id with 409 (bqemulator accepts
it), so this behaviour of the real service is played by a small fake client here; how the errors
are classified is in test_error_classification.py."""

import pytest
from google.api_core import exceptions as gexc

from ampbq import bigquery as adapter
from ampbq.errors import PermanentError


class FakeJob:
    def __init__(self, job_id, error=None, state="DONE"):
        self.job_id, self.error_result, self.state, self._error = job_id, error, state, error

    def result(self):
        if self._error:
            raise gexc.BadRequest(self._error["message"])
        return self


class FakeClient:
    """Remembers submitted ids and answers a repeat with Conflict, as BigQuery does."""

    def __init__(self, failing=()):
        self.jobs, self.failing, self.submitted = {}, set(failing), []

    def submit(self, job_id):
        self.submitted.append(job_id)
        if job_id in self.jobs:
            raise gexc.Conflict(f"Already Exists: Job {job_id}")
        error = {"message": "boom"} if job_id in self.failing else None
        self.jobs[job_id] = FakeJob(job_id, error)
        return self.jobs[job_id]

    def get_job(self, job_id):
        return self.jobs[job_id]


def ids(attempt):
    return f"job_{attempt}"


def test_a_repeated_job_id_reuses_the_finished_job_instead_of_running_twice():
    client = FakeClient()
    first = adapter.run_job_once(client, ids, client.submit)
    again = adapter.run_job_once(client, ids, client.submit)
    assert first is again and list(client.jobs) == ["job_0"]


def test_a_failed_job_id_is_never_reused_the_retry_takes_the_next_attempt_id():
    client = FakeClient(failing={"job_0"})
    with pytest.raises(PermanentError):
        adapter.run_job_once(client, ids, client.submit)
    job = adapter.run_job_once(client, ids, client.submit)
    assert job.job_id == "job_1" and client.submitted == ["job_0", "job_0", "job_1"]
