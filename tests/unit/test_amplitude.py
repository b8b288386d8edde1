"""The Export API client against the stub server over real HTTP on 127.0.0.1."""

import io
import logging
from datetime import date

import pytest
import requests

from ampbq import amplitude
from ampbq.config import Config
from ampbq.errors import NoData, PermanentError, TooLarge, TransientError
from ampbq.naming import HourRange
from ampbq.tools.stub import DatasetSource, ExportApiStub, Fault, events_per_hour
from ampbq.tools.synthetic import Dataset

DATASET = Dataset.for_day(date(2024, 1, 31), hours=3, events_per_hour=20)


@pytest.fixture
def stub():
    with ExportApiStub(DatasetSource(DATASET), "key-1", "s3cr3t-value") as server:
        yield server


def config(stub, secret="s3cr3t-value"):
    return Config(bucket="b", project="p", amplitude_url=stub.url, amplitude_api_key="key-1", amplitude_secret_key=secret)


def test_download_streams_a_zip_with_the_requested_hours(stub):
    sink = io.BytesIO()
    size = amplitude.download(requests.Session(), config(stub), HourRange.parse("20240131T01", "20240131T02"), sink)
    assert size == len(sink.getvalue()) > 0
    assert sorted(h.hour for h in events_per_hour(sink)) == [1, 2]
    assert stub.requests == [("20240131T01", "20240131T02")]


def test_range_without_data_is_no_data_not_an_error(stub):
    with pytest.raises(NoData):
        amplitude.download(requests.Session(), config(stub), HourRange.parse("20240201T00", "20240201T05"), io.BytesIO())


@pytest.mark.parametrize("status, error", [(400, TooLarge), (504, amplitude.TimedOut), (429, TransientError),
                                           (503, TransientError), (418, PermanentError)])
def test_status_codes_map_to_the_taxonomy(stub, status, error):
    stub.faults.append(Fault(status, b"nope"))
    with pytest.raises(error):
        amplitude.download(requests.Session(), config(stub), DATASET.range, io.BytesIO())


def test_ok_response_that_is_not_a_zip_is_transient(stub):
    stub.faults.append(Fault(200, b"<html>rate limited</html>"))
    with pytest.raises(TransientError, match="not a zip"):
        amplitude.download(requests.Session(), config(stub), DATASET.range, io.BytesIO())


def test_wrong_credentials_fail_once_without_the_secret_in_the_message(stub, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PermanentError) as failure:
        amplitude.download(requests.Session(), config(stub, secret="wrong-secret-123"), DATASET.range, io.BytesIO())
    assert "credentials" in str(failure.value)
    assert "wrong-secret-123" not in str(failure.value) and "wrong-secret-123" not in caplog.text
    assert len(stub.requests) == 0  # refused before the range was even read


@pytest.mark.parametrize("key, secret, named", [("", "s3cr3t-value", "AMPLITUDE_API_KEY is not set"),
                                               ("key-1", "", "AMPLITUDE_SECRET_KEY is not set"),
                                               ("", "", "AMPLITUDE_API_KEY and AMPLITUDE_SECRET_KEY are not set")])
def test_an_unset_key_is_named_not_taken_for_refused_credentials(stub, key, secret, named):
    unset = Config(bucket="b", project="p", amplitude_url=stub.url, amplitude_api_key=key, amplitude_secret_key=secret)
    sent = []

    class Counting(requests.Session):
        def request(self, *args, **kwargs):
            sent.append(args)
            return super().request(*args, **kwargs)

    with pytest.raises(PermanentError) as failure:
        amplitude.download(Counting(), unset, DATASET.range, io.BytesIO())
    assert str(failure.value).startswith(named) and "refused" not in str(failure.value)
    assert sent == []  # Amplitude is not asked at all


def test_config_repr_hides_the_secret(stub):
    assert "s3cr3t-value" not in repr(config(stub))
