"""Cloud Function `load`. An object finalized in the bucket: load an import/ hour object into BigQuery, replacing that hour.

Everything but decoding lives in the shared `ampbq` package, copied next to this file on deploy.
"""

import functions_framework

from ampbq import entry


@functions_framework.cloud_event
def load_hour(cloud_event):
    entry.load(cloud_event)
