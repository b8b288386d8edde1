"""The commit lease of a table: one holder commits what is waiting, so BigQuery never has to
cancel a transaction for a conflict (see load_step)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

from google.api_core import exceptions as gexc
from google.cloud import storage

log = logging.getLogger("ampbq.lease")


class Lease:
    """The table's commit lease: an object created only if absent (`if_generation_match=0`).

    It only serialises commits so that BigQuery never has to cancel one; correctness does not rest
    on it (the transaction's ledger guard does), so breaking a lease that was not renewed for
    `stale_after` seconds, whose holder died, is safe even if that holder was merely slow.
    """

    def __init__(self, bucket: storage.Bucket, name: str, stale_after: float = 60.0):
        self.bucket, self.name, self.generation, self.stale_after = bucket, name, None, stale_after

    def acquire(self) -> bool:
        held = self.bucket.get_blob(self.name)
        if held is not None:
            age = (datetime.now(timezone.utc) - held.updated).total_seconds() if held.updated else 0
            if age < self.stale_after:
                return False
            log.warning("breaking a stale lease", extra={"fields": {"object": self.name, "age_seconds": round(age)}})
            try:
                held.delete(if_generation_match=held.generation)
            except (gexc.NotFound, gexc.PreconditionFailed):
                return False  # someone else broke or renewed it first
        return self._write(0)

    def renew(self) -> bool:
        """False when a waiter broke it meanwhile: it is theirs now."""
        if self.generation is not None and self._write(self.generation):
            return True
        self.generation = None
        return False

    def release(self) -> None:
        if self.generation is not None:
            try:
                self.bucket.blob(self.name).delete(if_generation_match=self.generation)
            except (gexc.NotFound, gexc.PreconditionFailed):
                pass  # broken by a waiter meanwhile: the lease is theirs now
            self.generation = None

    def _write(self, expected: int) -> bool:
        blob = self.bucket.blob(self.name)
        try:
            blob.upload_from_string(json.dumps({"at": datetime.now(timezone.utc).isoformat()}), "application/json",
                                    if_generation_match=expected)
        except gexc.PreconditionFailed:
            return False
        self.generation = blob.generation
        return True

