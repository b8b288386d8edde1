-- The events table under the column names and types of Amplitude's own BigQuery export (the
-- Event table schema of Amplitude's "Google BigQuery" destination), so that a query written
-- for that export runs unchanged on this view. Columns are in that schema's (alphabetical)
-- order:
--
-- * Amplitude's current schema: adid, amplitude_id BIGNUMERIC, app, city, client_event_time,
--   client_upload_time, country, data JSON, device_carrier, device_family, device_id,
--   device_type, dma, event_id, event_properties JSON, event_time, followed_an_identify BOOL,
--   group_properties JSON, groups JSON, idfa, ip_address, is_attribution_event, language,
--   library, location_lat, location_lng, os_name, os_version, paying STRING, platform,
--   processed_time, region, sample_rate BIGNUMERIC, server_received_time, server_upload_time,
--   session_id BIGNUMERIC, start_version, user_id, user_properties JSON, uuid, version_name.
-- * event_type, which every Amplitude export holds though that table does not list it.
-- * The columns Amplitude's earlier version of the schema listed as well: amplitude_event_type,
--   device_brand, device_manufacturer, device_model, user_creation_time (the earlier version
--   typed the JSON columns STRING; JSON_VALUE, JSON_QUERY and JSON_EXTRACT_SCALAR read both).
--
-- followed_an_identify is no column of the events table: an exported event's field the table's
-- schema does not name is kept in _extra, and is read from there (LAX_BOOL: NULL when absent).
-- paying is the table's BOOL as text ('true' / 'false'). The view adds nothing Amplitude's
-- export does not have (no _upload_hour, no lineage columns).
--
-- One row per row of the events table, with no aggregation, so a filter on event_time outside
-- the view prunes the table's day partitions as on Amplitude's own table (partitioned by
-- DATE(event_time) too). Like Amplitude's table it can hold an event exported twice; Amplitude's
-- deduplicated_<app> table function corresponds to the _dedup view.
--
-- ${events_table} is the events table, `project.dataset.table`; Terraform (templatefile) and
-- ampbq.views fill it in.
SELECT
  adid,
  amplitude_event_type,
  CAST(amplitude_id AS BIGNUMERIC) AS amplitude_id,
  app,
  city,
  client_event_time,
  client_upload_time,
  country,
  data,
  device_brand,
  device_carrier,
  device_family,
  device_id,
  device_manufacturer,
  device_model,
  device_type,
  dma,
  event_id,
  event_properties,
  event_time,
  event_type,
  LAX_BOOL(_extra.followed_an_identify) AS followed_an_identify,
  group_properties,
  `groups`,
  idfa,
  ip_address,
  is_attribution_event,
  language,
  library,
  location_lat,
  location_lng,
  os_name,
  os_version,
  CAST(paying AS STRING) AS paying,
  platform,
  processed_time,
  region,
  CAST(sample_rate AS BIGNUMERIC) AS sample_rate,
  server_received_time,
  server_upload_time,
  CAST(session_id AS BIGNUMERIC) AS session_id,
  start_version,
  user_creation_time,
  user_id,
  user_properties,
  uuid,
  version_name
FROM `${events_table}`
