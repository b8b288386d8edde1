"""The command line's bound on calls to the services, and the sentence for one that cannot be reached."""

from __future__ import annotations

import socket

import grpc
import pytest
import requests
import urllib3.exceptions
from google.api_core import exceptions as gexc

from ampbq.tools import calls
from ampbq.errors import PermanentError


def refused(url: str) -> requests.ConnectionError:
    """What requests raises when nothing listens at `url`, as the clients' transports see it."""
    request = requests.Request("GET", url).prepare()
    reason = urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
    reason.__cause__ = ConnectionRefusedError(111, "Connection refused")
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, url, reason), request=request)


def retried(cause: Exception) -> gexc.RetryError:
    return gexc.RetryError("Timeout of 2.0s exceeded", cause)


def test_outside_the_bound_the_libraries_keep_their_defaults():
    assert calls.current() is None
    assert calls.storage() == calls.bigquery() == calls.query() == calls.publish() == {}
    assert calls.result_seconds(60) == 60


def test_within_the_bound_every_call_retries_and_times_out_within_it():
    with calls.bounded(2):
        storage, query = calls.storage(), calls.query()
        assert storage["timeout"] == 2 and storage["retry"].timeout == 2
        assert query["job_retry"] is None and query["retry"].timeout == 2 and query["timeout"] == 2
        assert calls.publish()["retry"].timeout == 2
        assert calls.result_seconds(60) == 7
    assert calls.current() is None


@pytest.mark.parametrize("text, seconds", [("", 30.0), ("2", 2.0), (" 0.5 ", 0.5)])
def test_the_bound_comes_from_the_environment(text, seconds):
    assert calls.seconds_from_env({calls.ENV: text}) == seconds


@pytest.mark.parametrize("text", ["abc", "0", "-3", "inf", "nan"])
def test_a_bound_that_is_not_a_positive_number_is_refused(text):
    with pytest.raises(PermanentError, match=calls.ENV):
        calls.seconds_from_env({calls.ENV: text})


def test_a_refused_storage_call_names_cloud_storage_and_its_address():
    error = retried(refused("http://127.0.0.1:9/storage/v1/b/bucket/o?prefix=export%2F"))
    with calls.bounded(2):
        found = calls.unreachable(error)
    assert str(found) == "cannot reach Cloud Storage at http://127.0.0.1:9 (connection refused) after 2 s"


def test_bigquery_and_google_sign_in_are_told_apart_by_the_url():
    assert str(calls.unreachable(refused("https://bigquery.googleapis.com/bigquery/v2/projects/p/jobs"))) == (
        "cannot reach BigQuery at https://bigquery.googleapis.com (connection refused)")
    assert "Google's sign-in service" in str(calls.unreachable(refused("https://oauth2.googleapis.com/token")))


def test_no_answer_and_an_unknown_host_are_said_as_such():
    request = requests.Request("GET", "http://10.255.255.1:80/storage/v1/b/x/o").prepare()
    timeout = requests.ConnectTimeout(urllib3.exceptions.ConnectTimeoutError(None, "timed out"), request=request)
    assert calls.unreachable(timeout).reason == "no answer"
    unknown = requests.ConnectionError("x", request=requests.Request("GET", "https://storage.googleapis.com/storage/v1").prepare())
    unknown.__context__ = socket.gaierror(-2, "Name or service not known")
    assert calls.unreachable(unknown).reason == "host name not found"


class RpcError(grpc.RpcError):
    """What the gRPC channel raises (the real one is internal to grpc)."""


def test_a_grpc_error_is_pubsub_the_one_grpc_client(monkeypatch):
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:9")
    message = "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:9: Connection refused"
    error = retried(gexc.ServiceUnavailable(message, response=RpcError()))
    with calls.bounded(5):
        assert str(calls.unreachable(error)) == "cannot reach Pub/Sub at 127.0.0.1:9 (connection refused) after 5 s"
    assert calls.unreachable(retried(gexc.ServiceUnavailable(message))) is None  # neither a URL nor gRPC: unknown


def test_a_service_that_answered_is_not_unreachable():
    assert calls.unreachable(gexc.NotFound("Not found: Dataset p:ops")) is None
    assert calls.unreachable(gexc.ServiceUnavailable("503 GET https://storage.googleapis.com/...: backend error")) is None
    assert calls.unreachable(ValueError("bad")) is None
