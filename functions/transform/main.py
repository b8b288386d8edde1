"""Cloud Function `transform`. An object finalized in the bucket: turn an export/ hour object into BigQuery-ready rows under import/.

Everything but decoding lives in the shared `ampbq` package, copied next to this file on deploy.
"""

import functions_framework

from ampbq import allocator, entry

allocator.keep_freed_buffers()  # once per instance: the hour's ~1 MiB buffers are reused, not re-faulted


@functions_framework.cloud_event
def transform_hour(cloud_event):
    entry.transform(cloud_event)
