"""Which Cloud Storage and BigQuery errors are retried and which fail the event at once: each
adapter maps its own library's errors by status code and reason (gcs.classify, bigquery.classify),
and the handler answers a permanent one at once (acked, dead-lettered) instead of retrying it."""

from __future__ import annotations

import http.server
import json
import threading
import time
from pathlib import Path

import pytest
import requests
from google.api_core import exceptions as gexc
from google.cloud.storage.exceptions import InvalidResponse

from ampbq import bigquery as bq_adapter
from ampbq import gcs
from ampbq.errors import PermanentError, TransientError
from factory import storage_event

REPO = Path(__file__).resolve().parents[2]
OBJECT_URL = "https://storage.googleapis.com/storage/v1/b/the-bucket/o/export%2F2024-01-31%2F05.json.gz"
DENIED = ("sa@p.iam.gserviceaccount.com does not have storage.objects.get access to the Google Cloud Storage "
          "object. Permission 'storage.objects.get' denied on resource (or it may not exist).")


def storage_response(status: int, reason: str = "", message: str = "", url: str = OBJECT_URL) -> requests.Response:
    """A Cloud Storage JSON API error response, as the client library receives it."""
    body = {"error": {"code": status, "message": message, "errors": [{"reason": reason, "message": message}] if reason else []}}
    response = requests.Response()
    response.status_code, response._content, response.url = status, json.dumps(body).encode(), url
    response.request = requests.Request("GET", url).prepare()
    return response


def storage_error(status: int, reason: str = "", message: str = "boom", url: str = OBJECT_URL) -> Exception:
    return gexc.from_http_response(storage_response(status, reason, message, url))


def bigquery_error(status: int, reason: str = "", message: str = "boom") -> Exception:
    """A BigQuery error as job.result() raises it: the job's errorResult first in `errors`."""
    return gexc.from_http_status(status, message, errors=[{"reason": reason, "message": message}] if reason else [])


# --- Cloud Storage ------------------------------------------------------------------------

@pytest.mark.parametrize("status, reason, kind", [
    (403, "forbidden", PermanentError),
    (403, "insufficientPermissions", PermanentError),
    (403, "rateLimitExceeded", TransientError),
    (400, "invalid", PermanentError),
    (401, "authError", TransientError),  # a token refreshed meanwhile; the retry asks again
    (404, "notFound", TransientError),  # replaced or deleted mid-step: the retry finds the event stale
    (408, "", TransientError),
    (409, "conflict", TransientError),
    (412, "conditionNotMet", TransientError),  # another writer got there first: the retry decides again
    (429, "rateLimitExceeded", TransientError),
    (500, "backendError", TransientError),
    (502, "", TransientError),
    (503, "backendError", TransientError),
])
def test_storage_errors_are_classified_by_status_and_reason(status, reason, kind):
    assert type(gcs.classify(storage_error(status, reason))) is kind


def test_a_storage_403_is_one_line_naming_the_object_and_the_missing_permission():
    message = str(gcs.classify(storage_error(403, "forbidden", DENIED)))
    assert message == ("Cloud Storage 403 (forbidden) on gs://the-bucket/export/2024-01-31/05.json.gz: permission "
                       "storage.objects.get denied (the caller's service account lacks an IAM role that grants it)")


def test_a_storage_403_on_an_upload_names_the_object_from_the_upload_request():
    url = "https://storage.googleapis.com/upload/storage/v1/b/the-bucket/o?uploadType=resumable&name=import%2F2024-01-31%2F05.json"
    error = storage_error(403, "forbidden", DENIED.replace("objects.get", "objects.create"), url)
    message = str(gcs.classify(error))
    assert "on gs://the-bucket/import/2024-01-31/05.json:" in message and "storage.objects.create denied" in message
    assert "\n" not in message


def test_a_storage_403_whose_message_names_no_permission_still_says_permission_denied():
    assert str(gcs.classify(storage_error(403, "forbidden", "Forbidden"))).endswith(
        "permission denied (the caller's service account lacks an IAM role that grants it)")


def test_a_chunked_transfer_error_is_classified_by_its_response_status():
    assert type(gcs.classify(InvalidResponse(storage_response(403, "forbidden", DENIED), "unexpected 403"))) is PermanentError
    assert type(gcs.classify(InvalidResponse(storage_response(503, "backendError"), "unexpected 503"))) is TransientError


def test_what_is_not_a_storage_error_is_left_alone():
    error = ValueError("not ours")
    assert gcs.classify(error) is error


def test_each_adapter_owns_the_errors_its_library_raised_and_only_those():
    from google.cloud import bigquery, storage
    from google.auth.credentials import AnonymousCredentials

    with serving(403, forbidden_body()) as url:
        bucket = storage.Client(project="p", credentials=AnonymousCredentials(), client_options={"api_endpoint": url}).bucket("b")
        with pytest.raises(gexc.Forbidden) as raised_by_storage:
            bucket.get_blob("export/2024-01-31/05.json.gz")
        bq = bigquery.Client(project="p", credentials=AnonymousCredentials(), client_options={"api_endpoint": url})
        with pytest.raises(gexc.Forbidden) as raised_by_bigquery:
            bq.get_table("p.d.t", retry=None)
    assert gcs.owns(raised_by_storage.value) and not bq_adapter.owns(raised_by_storage.value)
    assert bq_adapter.owns(raised_by_bigquery.value) and not gcs.owns(raised_by_bigquery.value)
    assert not gcs.owns(storage_error(403, "forbidden"))  # made here, not raised by the library


# --- BigQuery -----------------------------------------------------------------------------

@pytest.mark.parametrize("status, reason, kind", [
    (403, "accessDenied", PermanentError),
    (403, "billingNotEnabled", PermanentError),
    (403, "rateLimitExceeded", TransientError),
    (403, "quotaExceeded", TransientError),
    (400, "invalidQuery", PermanentError),
    (400, "invalid", PermanentError),
    (400, "resourcesExceeded", PermanentError),
    (404, "notFound", PermanentError),
    (409, "duplicate", TransientError),
    (429, "", TransientError),
    (500, "internalError", TransientError),
    (500, "", TransientError),
    (503, "backendError", TransientError),
    (400, "jobInternalError", TransientError),
])
def test_bigquery_errors_are_classified_by_reason_then_status(status, reason, kind):
    assert type(bq_adapter.classify(bigquery_error(status, reason))) is kind


def test_a_bigquery_403_is_decided_by_its_reason_not_its_text():
    denied = bigquery_error(403, "accessDenied", "Exceeded rate limits: nothing of the sort, access denied")
    limited = bigquery_error(403, "rateLimitExceeded", "Access Denied: not really")
    assert type(bq_adapter.classify(denied)) is PermanentError
    assert type(bq_adapter.classify(limited)) is TransientError


def test_a_transaction_bigquery_cancelled_for_a_concurrent_update_is_transient():
    cancelled = bigquery_error(400, "invalidQuery", "Transaction is aborted due to concurrent update against table p:ops.t")
    error = bq_adapter.classify(cancelled)
    assert type(error) is TransientError and str(error).startswith("BigQuery transaction conflict:")


def test_what_is_not_a_google_error_is_left_alone_by_bigquery():
    error = KeyError("x")
    assert bq_adapter.classify(error) is error


# --- through the handler --------------------------------------------------------------------

@pytest.fixture
def log_lines():
    """The package's JSON log lines while the test runs (logs.setup's handler writes to whatever
    stdout was when it was first called)."""
    import io
    import logging

    from ampbq import logs

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.ContextFilter())
    logging.getLogger("ampbq").addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logging.getLogger("ampbq").removeHandler(handler)


def forbidden_body() -> bytes:
    return json.dumps({"error": {"code": 403, "message": DENIED, "errors": [{"reason": "forbidden", "message": DENIED}]}}).encode()


class serving:
    """A local server answering every request with one status and body; counts the requests."""

    def __init__(self, status: int, body: bytes):
        answer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                answer.requests.append(f"{self.command} {self.path}")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

        self.requests: list[str] = []
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    def __enter__(self) -> str:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_a_storage_403_fails_the_transform_event_at_once_acked_with_one_error_line(monkeypatch, log_lines):
    """functions-framework answers 200 (acked: not retried) within one request, not 500 (retried
    for a day), and the ERROR line names the object and the permission."""
    import functions_framework
    from cloudevents.conversion import to_binary

    storage = serving(403, forbidden_body())
    with storage as url:
        for name, value in {"AMPBQ_BUCKET": "the-bucket", "AMPBQ_PROJECT": "p", "STORAGE_EMULATOR_HOST": url,
                            "BIGQUERY_EMULATOR_HOST": url}.items():
            monkeypatch.setenv(name, value)
        app = functions_framework.create_app("transform_hour", str(REPO / "functions" / "transform" / "main.py"), "cloudevent")
        event = storage_event("export/2024-01-31/05.json.gz", "7", bucket="the-bucket", event_id="e-403",
                              source="//storage.googleapis.com/b")
        headers, body = to_binary(event)
        started = time.monotonic()
        answer = app.test_client().post("/", headers=headers, data=body)
        took = time.monotonic() - started
    assert answer.status_code == 200 and took < 5
    reads = [r for r in storage.requests if r.startswith("GET /storage/v1/b/the-bucket/o/export%2F2024-01-31%2F05.json.gz")]
    assert len(reads) == 1, storage.requests  # asked once, not retried
    lines = log_lines()
    errors = [line for line in lines if line["severity"] == "ERROR" and line["message"].startswith("transform failed")]
    assert len(errors) == 1 and errors[0]["message"] == (
        "transform failed permanently: Cloud Storage 403 (forbidden) on gs://the-bucket/export/2024-01-31/05.json.gz: "
        "permission storage.objects.get denied (the caller's service account lacks an IAM role that grants it)")
    assert errors[0]["event_id"] == "e-403" and errors[0]["object"] == "export/2024-01-31/05.json.gz"
    assert not any("will be retried" in line["message"] for line in lines)
