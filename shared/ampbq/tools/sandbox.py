"""`ampbq stack`: the local stack with a stub Amplitude project, left running to try the CLI on.

The stub serves generated events for any range it is asked for, like a live project would
(same hour, same events), except for `quiet_hours`, which it has no data for, so the
"no data" state can be seen too.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
import time
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from ..naming import HourRange
from .stack import REPO, Stack, StackSettings
from .stub import ExportApiStub
from .synthetic import Dataset, gzip_lines

API_KEY, SECRET_KEY = "sandbox-api-key", "sandbox-secret-key"


class GeneratedSource:
    """An Export API source with data for every hour except the quiet ones."""

    def __init__(self, events_per_hour: int = 20, parts_per_hour: int = 2, quiet_hours: frozenset[int] = frozenset(),
                 app: int = Dataset.app):
        self.events_per_hour = events_per_hour
        self.parts_per_hour = parts_per_hour
        self.quiet_hours = quiet_hours
        self.app = app  # the Amplitude project id its events carry (and its entries are named by)

    def write(self, hours: HourRange, sink: BinaryIO) -> int:
        dataset = Dataset(hours.start, len(hours), self.events_per_hour, self.parts_per_hour, app=self.app)
        count = 0
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
            for hour in hours.hours():
                if hour.hour in self.quiet_hours:
                    continue
                for name, lines in dataset.hour_parts(hour):
                    archive.writestr(name, gzip_lines(lines))
                    count += len(lines)
        return count


@contextlib.contextmanager
def running(source: GeneratedSource, workdir: Path | None = None) -> Iterator[Stack]:
    """The stub and the whole stack, stopped (by pid) when the block ends."""
    with ExportApiStub(source, API_KEY, SECRET_KEY) as stub:
        settings = StackSettings(workdir=Path(workdir or REPO / ".stack" / "sandbox"), amplitude_url=stub.url,
                                 api_key=API_KEY, secret_key=SECRET_KEY, extra_env={"AMPBQ_HTTP_BACKOFF_SECONDS": "0.5"})
        with Stack(settings) as stack:
            yield stack


ENV_FILE = "env.sh"  # in the workdir: `source` it in any shell while the stack runs


def exports(stack: Stack) -> list[str]:
    """Shell lines that point a shell's `ampbq` at the running stack."""
    return [f"export {name}={shlex.quote(value)}" for name, value in sorted(stack.client_env().items())]


def serve(source: GeneratedSource, workdir: Path | None, announce: Callable[[Stack], None],
          started: Callable[[], None] = lambda: None) -> None:
    """Run the stack until Ctrl-C or SIGTERM, then stop everything it started."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a kill stops the stack too
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    with running(source, workdir) as stack:
        env_file = stack.workdir / ENV_FILE
        env_file.write_text("\n".join(exports(stack)) + "\n")
        try:
            started()
            announce(stack)
            sys.stdout.flush()
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(1)
        finally:
            env_file.unlink(missing_ok=True)  # its addresses die with the stack
