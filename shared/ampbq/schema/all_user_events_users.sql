-- One row per Amplitude user (amplitude_id) seen in the events table:
--
--   amplitude_id                       Amplitude's user id
--   user_id, device_id                 the latest non-null ones
--   user_properties                    the latest non-null user_properties
--   first_event_time, last_event_time  the user's earliest and latest event_time
--   events                             distinct uuids (copies of one event count once)
--
-- "Latest" is by event_time, then the later _upload_hour, hour object and line, so the choice
-- is the same on every run. Events without an amplitude_id have no user here.
--
-- The view aggregates over the whole table: a filter outside it on amplitude_id, user_id or the
-- event times is applied after the grouping (or, on amplitude_id, before it, but amplitude_id
-- is neither the partitioning nor a clustering column), so every query of this view reads
-- every partition of the columns it names. To read a time window only, put the filter on
-- event_time inside the query (docs/queries.md has the parameterised form).
--
-- ARRAY_AGG(STRUCT(x AS latest) ORDER BY x IS NULL, ... LIMIT 1)[OFFSET(0)].latest is the
-- latest non-null x: non-null values sort first, and the STRUCT keeps a NULL x (all of a user's
-- x NULL) from being an array element, which BigQuery refuses. It is the usual
-- ARRAY_AGG(x IGNORE NULLS ORDER BY ... LIMIT 1), written so that the local stand-in's SQL
-- translation, which fails on IGNORE NULLS with LIMIT, runs the same text.
--
-- ${events_table} is the events table, `project.dataset.table`; Terraform (templatefile) and
-- ampbq.views fill it in.
SELECT
  amplitude_id,
  ARRAY_AGG(STRUCT(user_id AS latest)
    ORDER BY user_id IS NULL, event_time DESC, _upload_hour DESC, _source_object DESC, _source_line DESC
    LIMIT 1)[OFFSET(0)].latest AS user_id,
  ARRAY_AGG(STRUCT(device_id AS latest)
    ORDER BY device_id IS NULL, event_time DESC, _upload_hour DESC, _source_object DESC, _source_line DESC
    LIMIT 1)[OFFSET(0)].latest AS device_id,
  MIN(event_time) AS first_event_time,
  MAX(event_time) AS last_event_time,
  ARRAY_AGG(STRUCT(user_properties AS latest)
    ORDER BY user_properties IS NULL, event_time DESC, _upload_hour DESC, _source_object DESC, _source_line DESC
    LIMIT 1)[OFFSET(0)].latest AS user_properties,
  COUNT(DISTINCT uuid) AS events
FROM `${events_table}`
WHERE amplitude_id IS NOT NULL
GROUP BY amplitude_id
