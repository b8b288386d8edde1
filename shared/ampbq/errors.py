"""The error taxonomy that decides what the platform does with an event (ampbq.entry applies it).

- TransientError: raise, so Cloud Functions retries the event (network, 5xx, rate limits, conflicts).
- PermanentError: log at ERROR, record it, and return, so one poisoned input is acked instead of
  being retried for 24 hours (a permission refused, a request that can never succeed).
- Ignored: not ours or already done (foreign object, stale generation, duplicate); log at INFO, return.

Each adapter maps its own service's errors into these, by status code and reason, in one place:
`gcs.classify` (Cloud Storage), `bigquery.classify` (BigQuery), `amplitude` (the Export and User
Privacy APIs). An error that is none of these is unexpected: logged with its traceback, retried.
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


class Unreachable(AmpbqError):
    """A service did not answer the command line within its bound (see ampbq.tools.calls)."""

    def __init__(self, service: str, endpoint: str, reason: str, seconds: float | None = None):
        self.service, self.endpoint, self.reason, self.seconds = service, endpoint, reason, seconds
        after = f" after {seconds:g} s" if seconds is not None else ""
        super().__init__(f"cannot reach {service} at {endpoint} ({reason}){after}")
