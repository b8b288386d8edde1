import re

import pytest

from ampbq import views


def test_dedup_view_reads_the_events_table_it_is_given():
    sql = views.dedup_view_sql("p.ops.all_user_events")
    assert "FROM `p.ops.all_user_events`" in sql and "${" not in sql


def test_dedup_view_windows_on_uuid_and_event_time_so_event_time_filters_prune():
    # A filter outside the view may run before the window only when it keeps or drops whole
    # windows, i.e. when it is on the window's PARTITION BY columns.
    sql = re.sub(r"--[^\n]*", "", views.DEDUP_VIEW_FILE.read_text())
    window = re.search(r"ROW_NUMBER\(\) OVER \((.*?)\) = 1", sql, re.S).group(1)
    assert re.search(r"PARTITION BY uuid, event_time\s+ORDER BY _upload_hour DESC, _source_object DESC, _source_line DESC", window)


def test_a_template_expression_the_python_side_would_not_fill_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "view.sql"
    path.write_text("SELECT * FROM `${events_table}` WHERE x = '${other}'")
    monkeypatch.setattr(views, "DEDUP_VIEW_FILE", path)
    with pytest.raises(ValueError, match="other than"):
        views.dedup_view_sql("p.d.t")


# --- the query views (docs/queries.md) ------------------------------------------------------

QUERY_VIEWS = {views.PROPERTIES_SUFFIX: views.PROPERTIES_VIEW_FILE, views.USERS_SUFFIX: views.USERS_VIEW_FILE,
               views.NATIVE_SUFFIX: views.NATIVE_VIEW_FILE}


def parsed(path):
    import sqlglot  # the local stand-in's SQL translator, reading BigQuery's dialect

    return sqlglot.parse_one(views.view_sql(path, "p.ops.all_user_events"), read="bigquery")


def test_every_view_has_one_file_and_is_created_beside_the_table():
    assert views.view_files() == {views.DEDUP_SUFFIX: views.DEDUP_VIEW_FILE, **QUERY_VIEWS}
    assert list(views.all_view_sql("p.ops.t")) == ["p.ops.t" + suffix for suffix in views.view_files()]
    assert all(path.parent == views.DEDUP_VIEW_FILE.parent for path in views.view_files().values())


@pytest.mark.parametrize("suffix", QUERY_VIEWS)
def test_query_view_file_is_one_select_over_the_events_table_it_is_given(suffix):
    import sqlglot.expressions as exp

    path = QUERY_VIEWS[suffix]
    sql = views.view_sql(path, "p.ops.all_user_events")
    assert "FROM `p.ops.all_user_events`" in sql and "${" not in sql
    tree = parsed(path)
    assert isinstance(tree, exp.Select)
    tables = {".".join(part.name for part in (t.args.get("catalog"), t.args.get("db"), t.this) if part) for t in tree.find_all(exp.Table)}
    assert tables == {"p.ops.all_user_events"}  # the table only, not another view


@pytest.mark.parametrize("suffix", [views.PROPERTIES_SUFFIX, views.NATIVE_SUFFIX])
def test_per_event_views_neither_aggregate_nor_window_so_event_time_filters_prune(suffix):
    import sqlglot.expressions as exp

    tree = parsed(QUERY_VIEWS[suffix])
    assert not list(tree.find_all(exp.Group)) and not list(tree.find_all(exp.Window))
    assert not list(tree.find_all(exp.AggFunc)) and not list(tree.find_all(exp.Distinct))
    assert "event_time" in tree.named_selects  # the column a filter outside the view names


def test_properties_view_reads_the_json_property_columns_of_the_schema():
    from ampbq import schema

    types = {field["name"]: field["type"] for field in schema.fields(schema.EVENTS_SCHEMA_FILE)}
    text = views.PROPERTIES_VIEW_FILE.read_text()
    scopes = re.findall(r"STRUCT\('(\w+)' AS scope, e\.(\w+) AS properties\)", text)
    assert scopes == [(c, c) for c in ("event_properties", "user_properties", "group_properties", "data")]
    assert all(types[column] == "JSON" for column, _ in scopes)
    tree = parsed(views.PROPERTIES_VIEW_FILE)
    assert tree.named_selects == ["uuid", "event_time", "_upload_hour", "scope", "key", "value", "value_text"]
    # Top-level keys: without a depth BigQuery's JSON_KEYS returns the nested keys' paths too.
    assert "JSON_KEYS(p.properties, 1)" in text


def test_users_view_groups_by_amplitude_id_and_picks_the_latest_non_null_values():
    tree = parsed(views.USERS_VIEW_FILE)
    assert tree.named_selects == ["amplitude_id", "user_id", "device_id", "first_event_time", "last_event_time",
                                  "user_properties", "events"]
    assert [g.sql() for g in tree.args["group"].expressions] == ["amplitude_id"]
    text = re.sub(r"--[^\n]*", "", views.USERS_VIEW_FILE.read_text())
    for column in ("user_id", "device_id", "user_properties"):
        assert re.search(rf"ARRAY_AGG\(STRUCT\({column} AS latest\)\s+ORDER BY {column} IS NULL, event_time DESC, "
                         rf"_upload_hour DESC, _source_object DESC, _source_line DESC\s+LIMIT 1\)\[OFFSET\(0\)\]\.latest AS {column}", text)


# Amplitude's BigQuery export, Event table (Amplitude's "Google BigQuery" destination page): the
# current schema, event_type, and the columns of the schema's earlier version.
AMPLITUDE_EXPORT_COLUMNS = [
    "adid", "amplitude_event_type", "amplitude_id", "app", "city", "client_event_time", "client_upload_time", "country",
    "data", "device_brand", "device_carrier", "device_family", "device_id", "device_manufacturer", "device_model",
    "device_type", "dma", "event_id", "event_properties", "event_time", "event_type", "followed_an_identify",
    "group_properties", "groups", "idfa", "ip_address", "is_attribution_event", "language", "library", "location_lat",
    "location_lng", "os_name", "os_version", "paying", "platform", "processed_time", "region", "sample_rate",
    "server_received_time", "server_upload_time", "session_id", "start_version", "user_creation_time", "user_id",
    "user_properties", "uuid", "version_name"]


def test_native_view_has_amplitude_exports_columns_in_its_order():
    tree = parsed(views.NATIVE_VIEW_FILE)
    assert tree.named_selects == AMPLITUDE_EXPORT_COLUMNS == sorted(AMPLITUDE_EXPORT_COLUMNS)
    text = views.NATIVE_VIEW_FILE.read_text()
    for column in ("amplitude_id", "session_id", "sample_rate"):  # BIGNUMERIC in Amplitude's export
        assert f"CAST({column} AS BIGNUMERIC) AS {column}" in text
    assert "CAST(paying AS STRING) AS paying" in text
    assert "LAX_BOOL(_extra.followed_an_identify) AS followed_an_identify" in text


@pytest.mark.parametrize("suffix", QUERY_VIEWS)
def test_a_query_view_with_a_template_expression_terraform_would_refuse_is_refused(suffix, tmp_path):
    path = tmp_path / QUERY_VIEWS[suffix].name
    path.write_text(QUERY_VIEWS[suffix].read_text() + "\n-- ${other}\n")
    with pytest.raises(ValueError, match="other than"):
        views.view_sql(path, "p.d.t")
