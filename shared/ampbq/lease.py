"""The commit lease of a table: one holder commits what is waiting, so BigQuery never has to
cancel a transaction for a conflict (see load_step)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

from google.cloud import storage

from . import gcs

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
        held = gcs.age(self.bucket, self.name)
        if held is not None:
            generation, age = held
            if age < self.stale_after:
                return False
            log.warning("breaking a stale lease", extra={"fields": {"object": self.name, "age_seconds": round(age)}})
            if not gcs.delete_generation_if_live(self.bucket, self.name, generation):
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
            # False: broken by a waiter meanwhile, the lease is theirs now.
            gcs.delete_if_generation(self.bucket, self.name, self.generation)
            self.generation = None

    def _write(self, expected: int) -> bool:
        try:
            self.generation = gcs.put_if_generation(self.bucket, self.name, json.dumps({"at": datetime.now(timezone.utc).isoformat()}),
                                                    "application/json", expected)
        except gcs.GenerationChanged:
            return False
        return True

