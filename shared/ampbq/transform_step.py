"""The transform step: one hour object (a generation of it) → its BigQuery-ready import object
under `import/`, and its rejects under `rejects/`.

An hour object bigger than `transform_unit_bytes` is not transformed by one invocation: it fans
out into units of its parts (hour_parts.units), one small task object each under
`export/…/HH/unit-KKKK-of-PPPP.json`, whose finalize starts one transform of just that unit.
Each unit's rows go to their own import object, and the load loads the hour once every unit of
the generation is there (load_step). Re-dropping a task transforms that unit again.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

from google.cloud import storage

from . import gcs, hour_parts, naming, transform
from .config import Config
from .errors import Ignored, PermanentError, TransientError
from .events import StorageObject
from .monitoring import hour_fields, project_field
from .shaping import Lineage

log = logging.getLogger("ampbq.transform")
# A unit's lines are numbered from unit index × this (+1), so that (upload hour, source object,
# line) names one line of a fanned-out hour as it does of any other; no unit holds 10^9 lines.
UNIT_LINE_STRIDE = 1_000_000_000


@dataclass(frozen=True)
class FannedOut:
    """What a transform of a big hour object did: wrote the tasks of its units."""

    hour: datetime
    units: int
    written: int  # task objects written now (fewer when a retry finds some already there)
    project: str = ""

    def log_fields(self) -> dict:
        return {"units": self.units, "tasks_written": self.written, **project_field(self.project)}


def transform_object(obj: StorageObject, bucket: storage.Bucket, config: Config) -> transform.Counts | FannedOut:
    """The transform of whatever finalized under `export/`: a unit's task, or an hour object."""
    unit = naming.parse_unit_task(obj.name)
    if unit is not None:
        return transform_unit(obj, unit, bucket)
    return transform_hour(obj, bucket, config.transform_unit_bytes)


def transform_hour(obj: StorageObject, bucket: storage.Bucket, unit_bytes: int = Config.transform_unit_bytes
                   ) -> transform.Counts | FannedOut:
    scoped = naming.scoped_hour_object(obj.name)
    if scoped is None:
        raise Ignored(f"not an export hour object: {obj.name}")
    project, hour = scoped
    gcs.live(bucket, obj)
    import_name = naming.import_object_name(hour, project)
    _skip_if_written(bucket, import_name, (obj.generation, 0), obj.name)
    parts = _parts(bucket, obj)
    planned = hour_parts.units(parts, unit_bytes) if parts else []
    if len(planned) > 1:
        return _fan_out(obj, bucket, project, hour, planned)
    return _transform_into(bucket, obj.name, obj.generation, parts, hour, import_name,
                           naming.rejects_object_name(hour, project), whole=True)


def transform_unit(obj: StorageObject, unit: naming.Unit, bucket: storage.Bucket) -> transform.Counts:
    """Transform the parts one task names, of the hour object generation it names, if that is
    still the live one (else the newer generation's fan-out has its own tasks)."""
    plan = (gcs.live(bucket, obj).metadata or {}).get("plan", "")
    task = gcs.read_bytes(bucket, obj.name, obj.generation)
    if task is None:
        raise Ignored(f"{obj.name} generation {obj.generation} is gone")
    try:
        hour_object, generation, parts = hour_parts.parse_unit_task(task)
    except ValueError as why:
        raise PermanentError(f"{obj.name}: {why}") from None
    source = gcs.current(bucket, hour_object)
    if source is None or source.generation != generation:
        now = "gone" if source is None else f"now generation {source.generation}"
        raise Ignored(f"{obj.name} is for generation {generation} of {hour_object} ({now}); its newer tasks transform it")
    import_name = naming.unit_import_name(unit)
    _skip_if_written(bucket, import_name, (generation, obj.generation), obj.name)
    log.info("unit started", extra={"fields": hour_fields(unit.hour, hour_object, generation) | {
        "unit": unit.label, "parts": len(parts), "bytes": sum(p.size for p in parts)}})
    return _transform_into(bucket, hour_object, generation, parts, unit.hour, import_name,
                           naming.unit_rejects_name(unit), whole=False, unit_generation=obj.generation,
                           first_line=unit.index * UNIT_LINE_STRIDE, plan=plan)


def _transform_into(bucket: storage.Bucket, source_name: str, generation: int, parts: list[hour_parts.Part] | None,
                    hour: datetime, import_name: str, rejects_name: str, whole: bool, unit_generation: int = 0,
                    first_line: int = 0, plan: str = "") -> transform.Counts:
    """Transform `parts` of generation `generation` of `source_name` into `import_name` and
    `rejects_name`, published only over what an older source made (gcs.made_from); lines are
    numbered from `first_line + 1`."""
    lineage = Lineage(hour, naming.gs_uri(bucket.name, source_name), generation)
    token = secrets.token_hex(4)
    scratch, rejects_scratch = (naming.scratch_name(n, generation, token) for n in (import_name, rejects_name))
    rejects_meta = {"source_object": lineage.source_object, "source_generation": str(generation)}
    if unit_generation:
        rejects_meta |= {"unit_generation": str(unit_generation), "plan": plan}
    with gcs.reader(bucket, source_name, generation) as raw, gcs.writer(
        bucket, scratch, content_type="application/x-ndjson"
    ) as out, transform.LazyWriter(
        lambda: gcs.writer(bucket, rejects_scratch, content_type="application/x-ndjson")
    ) as rejects:
        counts = transform.transform_parts(raw, parts, out, rejects, lineage, whole=whole, first_line=first_line)
    # Publish in the order a crash can resume: the rejects first, then the import object, whose
    # finalize starts the load. Each is published only over an older source generation's object,
    # so a transform of an older generation that finishes last changes nothing.
    if rejects.opened:
        gcs.publish_if_newer(bucket, rejects_scratch, rejects_name, rejects_meta, "application/x-ndjson")
    else:
        gcs.delete_if_older(bucket, rejects_name, generation, unit_generation)  # an older source's rejects no longer apply
    metadata = rejects_meta | counts.as_metadata() | {"upload_hour": f"{hour:%Y-%m-%dT%H}"}
    if not gcs.publish_if_newer(bucket, scratch, import_name, metadata, "application/x-ndjson"):
        # A newer generation's import object won; rejects this invocation published are not its.
        if rejects.opened:
            gcs.delete_if_source(bucket, rejects_name, generation, unit_generation)
        raise Ignored(f"{import_name} already holds generation {generation} of {source_name} or a newer one")
    return counts


def _fan_out(obj: StorageObject, bucket: storage.Bucket, project: str, hour: datetime,
             planned: list[list[hour_parts.Part]]) -> FannedOut:
    """Write one task object per unit. A retry of this event writes only the tasks it has not
    (rewriting one would transform its unit again); each write is conditional on the task just
    read, and never over a task of a newer generation of the hour object: a fan-out of an older
    generation that runs late stops there (Ignored)."""
    plan = hour_parts.plan_id(planned)
    metadata = {"source_object": naming.gs_uri(bucket.name, obj.name), "source_generation": str(obj.generation),
                "upload_hour": f"{hour:%Y-%m-%dT%H}", "plan": plan}
    written = 0
    for index, parts in enumerate(planned):
        name = naming.unit_task_name(naming.Unit(project, hour, index, len(planned)))
        written += _write_task(bucket, name, obj, hour_parts.unit_task(obj.name, obj.generation, parts),
                               metadata | {"parts": str(len(parts)), "bytes": str(sum(p.size for p in parts))})
    # The whole-hour outputs of an older generation no longer describe the hour.
    gcs.delete_if_older(bucket, naming.import_object_name(hour, project), obj.generation)
    gcs.delete_if_older(bucket, naming.rejects_object_name(hour, project), obj.generation)
    log.info("hour fanned out", extra={"fields": hour_fields(hour, obj.name, obj.generation) | {
        "units": len(planned), "tasks_written": written, "plan": plan,
        "bytes": sum(p.size for unit in planned for p in unit)}})
    return FannedOut(hour, len(planned), written, project)


def _write_task(bucket: storage.Bucket, name: str, obj: StorageObject, body: str, metadata: dict[str, str]) -> int:
    """1 when this call wrote the task, 0 when the same plan of this generation had it already."""
    for _ in range(gcs.PUBLISH_ATTEMPTS):
        live = gcs.current(bucket, name)
        made_from = gcs.source_generation(live)
        if made_from > obj.generation:
            raise Ignored(f"{name} is a task of generation {made_from} of {obj.name}, newer than {obj.generation}")
        if made_from == obj.generation and (live.metadata or {}).get("plan") == metadata["plan"]:
            return 0
        try:
            gcs.put_if_generation(bucket, name, body, "application/json", live.generation if live else 0, metadata)
            return 1
        except gcs.GenerationChanged:
            continue  # written meanwhile: decide again on what is there now
    raise TransientError(f"{name} kept changing while the tasks of generation {obj.generation} were written; retrying")


def _parts(bucket: storage.Bucket, obj: StorageObject) -> list[hour_parts.Part] | None:
    """The part index of exactly the generation the transform reads (None: read it as one part).
    Its own small read, so the index always belongs to the bytes being read."""
    blob = gcs.version(bucket, obj.name, obj.generation)
    return hour_parts.decode(blob.metadata, blob.size) if blob is not None else None


def _skip_if_written(bucket: storage.Bucket, import_name: str, ours: tuple[int, int], name: str) -> None:
    live = gcs.current(bucket, import_name)
    written = gcs.made_from(live.metadata if live is not None else None)
    if written == ours:
        raise Ignored(f"{import_name} already holds generation {ours[0]} of the hour object ({name})")
    if written > ours:
        raise Ignored(f"{import_name} already holds generation {written[0]}, newer than {ours[0]} ({name})")
