"""The handlers' log lines: one JSON line per step with context, labels and the trace; the context
bound once at the entry is on every line of the invocation, and only of that invocation."""

import io
import json
import logging

from ampbq import entry, logs
from factory import storage_event

TRACE_ID, SPAN_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def test_an_ignored_object_logs_one_info_line_with_date_hour_labels_and_trace(monkeypatch):
    local_env(monkeypatch)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logging.getLogger("ampbq").addHandler(handler)
    try:
        event = finalize_event("import/2024-01-31/05.json", "e-9")
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


class Captured:
    """The package's JSON lines, through a handler set up as logs.setup sets up its own."""

    def __init__(self):
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(logs.JsonFormatter())
        self.handler.addFilter(logs.ContextFilter())

    def __enter__(self):
        logging.getLogger("ampbq").addHandler(self.handler)
        return self

    def __exit__(self, *exc):
        logging.getLogger("ampbq").removeHandler(self.handler)

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


def finalize_event(name: str, event_id: str, generation: str = "7"):
    return storage_event(name, generation, event_id=event_id, traceparent=f"00-{TRACE_ID}-{SPAN_ID}-01")


def local_env(monkeypatch):
    for name, value in {"AMPBQ_BUCKET": "b", "AMPBQ_PROJECT": "p", "STORAGE_EMULATOR_HOST": "http://127.0.0.1:9",
                        "BIGQUERY_EMULATOR_HOST": "http://127.0.0.1:9"}.items():
        monkeypatch.setenv(name, value)


def test_a_line_logged_deep_inside_a_step_carries_the_invocations_context(monkeypatch):
    local_env(monkeypatch)

    def deep_inside(obj, bucket, config):  # as far from the entry as any module's logger
        logging.getLogger("ampbq.transform").info("a part read", extra={"fields": {"bytes": 12}})
        return None

    monkeypatch.setattr(entry.transform_step, "transform_object", deep_inside)
    with Captured() as captured:
        entry.transform(finalize_event("export/2024-01-31/05.json.gz", "e-deep"))
        logging.getLogger("ampbq.entry").info("after the invocation")
    deep = next(line for line in captured.lines() if line["message"] == "a part read")
    assert {k: deep[k] for k in ("step", "object", "generation", "event_id", "date", "hour", "bytes")} == {
        "step": "transform", "object": "export/2024-01-31/05.json.gz", "generation": 7, "event_id": "e-deep",
        "date": "2024-01-31", "hour": "05", "bytes": 12}
    assert deep["logging.googleapis.com/trace"] == f"projects/p/traces/{TRACE_ID}"
    assert deep["logging.googleapis.com/labels"] == {"step": "transform", "date": "2024-01-31", "hour": "05",
                                                     "object": "export/2024-01-31/05.json.gz", "generation": "7"}
    after = captured.lines()[-1]
    assert after["message"] == "after the invocation" and "object" not in after and "step" not in after


def test_the_contexts_of_two_invocations_running_at_once_on_two_threads_do_not_mix(monkeypatch):
    """functions-framework serves requests on several threads; each line names its own object,
    and a thread reused for the next request starts from nothing."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    local_env(monkeypatch)
    both_inside = threading.Barrier(2, timeout=10)

    def step(obj, bucket, config):
        log = logging.getLogger("ampbq.transform")
        log.info("before the other binds")
        both_inside.wait()  # both invocations are bound now
        log.info("while the other runs")
        both_inside.wait()
        return None

    monkeypatch.setattr(entry.transform_step, "transform_object", step)
    names = {"e-a": "export/2024-01-31/05.json.gz", "e-b": "export/2024-02-01/17.json.gz"}
    with Captured() as captured, ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda item: entry.transform(finalize_event(item[1], item[0])), names.items()))
        # the same two threads, reused: a line logged there outside an invocation has no context
        list(pool.map(lambda _: logging.getLogger("ampbq.transform").info("between requests"), range(2)))
    lines = captured.lines()
    for event_id, name in names.items():
        own = [line for line in lines if line.get("event_id") == event_id]
        assert {line["message"] for line in own} >= {"before the other binds", "while the other runs", "transform done"}
        assert {line["object"] for line in own} == {name}
        assert {line["logging.googleapis.com/labels"]["hour"] for line in own} == {name[-10:-8]}
    between = [line for line in lines if line["message"] == "between requests"]
    assert len(between) == 2 and not any("object" in line or "step" in line or "event_id" in line for line in between)


def test_bind_outside_an_invocation_changes_nothing_and_invocations_nest():
    logs.bind(object="nowhere")
    assert logs.context() == {}
    with logs.invocation(step="export", range="a"):
        with logs.invocation(step="forget"):
            logs.bind(range="b")
            assert logs.context() == {"step": "forget", "range": "b"}
        assert logs.context() == {"step": "export", "range": "a"}
    assert logs.context() == {}
