"""The handlers' log lines: one JSON line per step with context, labels and the trace."""

import io
import json
import logging

from cloudevents.http import CloudEvent

from ampbq import entry, logs

TRACE_ID, SPAN_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def test_an_ignored_object_logs_one_info_line_with_date_hour_labels_and_trace(monkeypatch):
    for name, value in {"AMPBQ_BUCKET": "b", "AMPBQ_PROJECT": "p", "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9",
                        "BIGQUERY_EMULATOR_HOST": "http://127.0.0.1:9"}.items():
        monkeypatch.setenv(name, value)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logging.getLogger("ampbq").addHandler(handler)
    try:
        event = CloudEvent({"type": "google.cloud.storage.object.v1.finalized", "source": "//storage", "id": "e-9",
                            "traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01"},
                           {"bucket": "b", "name": "import/2024-01-31/05.json", "generation": "7"})
        entry.transform(event)  # not an export hour object: ignored before any request
    finally:
        logging.getLogger("ampbq").removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 1
    line = lines[0]
    assert line["severity"] == "INFO" and line["message"].startswith("ignored: not an export hour object")
    assert line["logging.googleapis.com/trace"] == f"projects/p/traces/{TRACE_ID}"
    assert line["logging.googleapis.com/spanId"] == SPAN_ID
    assert line["logging.googleapis.com/labels"] == {"step": "transform", "date": "2024-01-31", "hour": "05",
                                                     "object": "import/2024-01-31/05.json", "generation": "7"}
    assert "duration_s" in line


def test_trace_fields_ignore_malformed_or_empty_traceparents():
    assert logs.trace_fields("garbage", "p") == {}
    assert logs.trace_fields(f"00-{'0' * 32}-{SPAN_ID}-01", "p") == {}
    assert logs.trace_fields(None, "p") == {}
