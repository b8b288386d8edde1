"""ampbq: a complete, exact daily copy of Amplitude events in BigQuery.

The package is shared by the three Cloud Functions (export, transform, load) and the `ampbq` CLI.
Pure modules (naming, shaping, transform, unpack, sql) do no I/O; the adapters (gcs, bigquery,
amplitude) are the only modules that talk to a service.
"""

__version__ = "0.1.0"
