"""ampbq: a complete, exact daily copy of Amplitude events in BigQuery.

The modules at the top of the package are what the three Cloud Functions (export, transform,
load) run, and exactly what functions/runtime.json ships in their zips. The `ampbq` command line,
the local stand-ins, the synthetic data, the demo and the benchmark live in `ampbq.tools`, which
imports the runtime and is never imported by it.
Pure modules (naming, shaping, transform, unpack, sql) do no I/O; the adapters (gcs, bigquery,
amplitude) are the only modules that talk to a service.
"""

__version__ = "0.1.0"
