"""ampbq.tools: everything that stays on the developer's or operator's machine, never in a zip.

The `ampbq` command line (cli, cli_options, render and the operations behind its commands:
status, inventory, backfill, reprocess, rejects, calls), the local stand-ins (stack, sandbox,
stub, gcs_rules, bq_rules), the synthetic data, the demo, the benchmark and the zips' packager.
These modules import the runtime modules at the top of the package; the runtime never imports
them (tests/unit/test_runtime_boundary.py).
"""
