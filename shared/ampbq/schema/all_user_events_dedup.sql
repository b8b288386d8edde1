-- One row per exported event: the events table keeps one row per exported line, and Amplitude's
-- export can hold the same event (uuid) twice. Of the copies, the one from the latest upload
-- hour wins (Amplitude's last word on the event), then the one from the later hour object and
-- line; (_upload_hour, _source_object, _source_line) names exactly one row, so the choice is
-- the same on every run.
--
-- event_time is in the window's PARTITION BY, not only uuid: a filter outside the view on
-- event_time then keeps or drops whole windows, so BigQuery may apply it before the window
-- function and prune the table's day partitions, as on the table itself. Copies of one event
-- share its event_time. Two rows with one uuid and different event_times are not copies of a
-- line but two different events under one id, and both stay visible.
--
-- ${events_table} is the events table, `project.dataset.table`; Terraform (templatefile) and
-- ampbq.views fill it in.
SELECT *
FROM `${events_table}`
WHERE TRUE  -- BigQuery takes QUALIFY only in a query with WHERE, GROUP BY or HAVING
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY uuid, event_time
  ORDER BY _upload_hour DESC, _source_object DESC, _source_line DESC
) = 1
