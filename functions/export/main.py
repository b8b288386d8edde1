"""Cloud Function `export`. A daily-runs Pub/Sub message: export one day (or hour range) from Amplitude into hour objects.

Everything but decoding lives in the shared `ampbq` package, copied next to this file on deploy.
"""

import functions_framework

from ampbq import entry


@functions_framework.cloud_event
def export_day(cloud_event):
    entry.export(cloud_event)
