"""The error taxonomy that decides what the platform does with an event.

- TransientError: raise, so Cloud Functions retries the event (network, 5xx, rate limits, conflicts).
- PermanentError: log at ERROR, record it, and return, so one poisoned input is acked instead of
  being retried for 24 hours.
- Ignored: not ours or already done (foreign object, stale generation, duplicate); log at INFO, return.
"""


class AmpbqError(Exception):
    """Base class for every error this package raises on purpose."""


class TransientError(AmpbqError):
    """Worth retrying: the same input may succeed later."""


class PermanentError(AmpbqError):
    """Retrying the same input cannot help; it must be recorded and acked."""


class Ignored(AmpbqError):
    """The event is not for this handler, or its work is already done."""


class NoData(AmpbqError):
    """The Export API has no data for the range (HTTP 404): a successful, empty run."""


class TooLarge(AmpbqError):
    """The Export API refuses the range as over 4 GB (HTTP 400): split it."""


class NotReady(PermanentError):
    """The range ends too recently for Amplitude to have all its data."""


class Unreachable(AmpbqError):
    """A service did not answer the command line within its bound (see ampbq.tools.calls)."""

    def __init__(self, service: str, endpoint: str, reason: str, seconds: float | None = None):
        self.service, self.endpoint, self.reason, self.seconds = service, endpoint, reason, seconds
        after = f" after {seconds:g} s" if seconds is not None else ""
        super().__init__(f"cannot reach {service} at {endpoint} ({reason}){after}")
