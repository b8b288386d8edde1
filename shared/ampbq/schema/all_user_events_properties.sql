-- One row per (event row, property scope, top-level key) of the events table's JSON property
-- columns: event_properties, user_properties, group_properties and data. An event with no keys
-- in a scope (the column NULL, {} or not an object) has no rows of that scope.
--
--   uuid, event_time, _upload_hour  the event row's, as in the events table
--   scope                           the column the key is in: 'event_properties', ...
--   key                             the top-level key, as exported
--   value                           its value, JSON (objects and arrays stay whole)
--   value_text                      the value as text: a string without its quotes, a number or
--                                   boolean as written, an object or array as its JSON text,
--                                   NULL for JSON null
--
-- Every output row comes from exactly one row of the events table with no aggregation or window
-- in between, so a filter outside the view on event_time (or _upload_hour) is applied to the
-- table's rows before the keys are read: BigQuery prunes the day partitions (and the
-- _upload_hour clustering blocks) as on the table itself, and reads the JSON of the matching
-- rows only. The view reads the table, not the _dedup view: a copy of an event exported twice
-- has its keys twice, with the copy's _upload_hour (join the _dedup view on uuid, event_time
-- and _upload_hour, or filter on _upload_hour, to keep one copy).
--
-- JSON_KEYS(..., 1) returns the top-level keys only (without the depth BigQuery returns the
-- paths of nested keys too). BigQuery may return a key that holds characters other than
-- letters, digits and underscores quoted as a JSON string ("a.b"), so that the key can be told
-- from a path; a key that starts with a double quote is therefore read back as JSON text. The
-- local stand-in returns keys unquoted, which this leaves as they are.
--
-- ${events_table} is the events table, `project.dataset.table`; Terraform (templatefile) and
-- ampbq.views fill it in.
SELECT
  uuid,
  event_time,
  _upload_hour,
  scope,
  key,
  properties[key] AS value,
  IF(JSON_TYPE(properties[key]) = 'null', NULL,
     COALESCE(JSON_VALUE(properties[key]), TO_JSON_STRING(properties[key]))) AS value_text
FROM (
  SELECT
    e.uuid,
    e.event_time,
    e._upload_hour,
    p.scope,
    p.properties,
    IF(STARTS_WITH(listed_key, '"'), COALESCE(JSON_VALUE(SAFE.PARSE_JSON(listed_key)), listed_key), listed_key) AS key
  FROM `${events_table}` AS e
  CROSS JOIN UNNEST([
    STRUCT('event_properties' AS scope, e.event_properties AS properties),
    STRUCT('user_properties' AS scope, e.user_properties AS properties),
    STRUCT('group_properties' AS scope, e.group_properties AS properties),
    STRUCT('data' AS scope, e.data AS properties)
  ]) AS p
  CROSS JOIN UNNEST(JSON_KEYS(p.properties, 1)) AS listed_key
)
