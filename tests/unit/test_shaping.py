import pytest

from ampbq import schema
from ampbq.shaping import Lineage, RejectedEvent, Shaper
from factory import event as exported_event, utc

LINEAGE = Lineage(utc(2024, 1, 31, 5), "gs://b/export/2024-01-31/05.json.gz", 42)


def event(**fields):
    return exported_event("u-1", "2024-01-31 05:00:02.000000", "2024-01-31 04:59:01.000000", event_type=None) | fields


def shape(**fields):
    return Shaper(LINEAGE).shape(event(**fields), 7)


def test_every_schema_column_is_a_known_field_or_lineage():
    names = set(schema.column_names())
    assert {"insert_id", "insert_key", "schema_version", "_extra", "_upload_hour", "_source_object"} <= names
    assert not any(name.startswith("$") for name in names)


def test_dollar_fields_get_legal_column_names():
    row = shape(**{"$insert_id": "ajs-1:x", "$insert_key": "ab#4", "$schema": 13})
    assert (row["insert_id"], row["insert_key"], row["schema_version"]) == ("ajs-1:x", "ab#4", 13)


def test_lineage_columns_name_hour_object_and_line():
    row = shape()
    assert row["_upload_hour"] == "2024-01-31 05:00:00"
    assert (row["_source_object"], row["_source_generation"], row["_source_line"]) == (LINEAGE.source_object, 42, 7)


def test_amplitude_timestamp_passes_through_unchanged():
    assert shape(processed_time="2020-11-24 10:00:00.480098")["processed_time"] == "2020-11-24 10:00:00.480098"


def test_iso_timestamp_with_offset_is_converted_to_utc():
    assert shape(client_event_time="2023-08-24T09:00:00+02:00")["client_event_time"] == "2023-08-24 07:00:00.000000"


def test_nanoseconds_are_refused_unless_they_are_zeros():
    assert shape(event_time="2023-08-24 09:00:00.123456000")["event_time"] == "2023-08-24 09:00:00.123456"
    with pytest.raises(RejectedEvent, match="no finer than microseconds"):
        shape(event_time="2023-08-24 09:00:00.1234567")  # fromisoformat would cut the 7 away


@pytest.mark.parametrize("value", ["1700000000", "2022-13-01 00:00:00", "yesterday", "2022-11-14", 1700000000])
def test_unreadable_timestamp_rejects_the_event_naming_the_field(value):
    with pytest.raises(RejectedEvent, match="client_event_time"):
        shape(client_event_time=value)


def test_empty_optional_timestamp_becomes_null():
    assert "user_creation_time" not in shape(user_creation_time="")


@pytest.mark.parametrize("missing", ["uuid", "event_time", "server_upload_time"])
def test_missing_required_field_rejects_the_event(missing):
    data = event()
    del data[missing]
    with pytest.raises(RejectedEvent, match=missing):
        Shaper(LINEAGE).shape(data, 1)


def test_os_version_number_is_kept_as_text():
    assert shape(os_version=86)["os_version"] == "86"
    assert shape(os_version="18.5")["os_version"] == "18.5"


@pytest.mark.parametrize("value, expected", [(None, None), ([], []), (["a", "b"], ["a", "b"]), ("c3", ["c3"]), ("", [])])
def test_attribution_ids_always_become_an_array(value, expected):
    assert shape(amplitude_attribution_ids=value).get("amplitude_attribution_ids") == expected


def test_int64_columns_take_integral_values_and_refuse_others():
    assert shape(session_id="1668386175074")["session_id"] == 1668386175074
    assert shape(event_id=129.0)["event_id"] == 129
    for bad in (2**63, "12a", 1.5, True):
        with pytest.raises(RejectedEvent, match="event_id"):
            shape(event_id=bad)


def test_bool_columns_take_booleans_and_their_spellings():
    assert shape(paying="true")["paying"] is True
    assert shape(is_attribution_event=0)["is_attribution_event"] is False
    with pytest.raises(RejectedEvent, match="paying"):
        shape(paying="maybe")


def test_property_objects_stay_json_with_nesting_intact():
    props = {"items": [{"sku": "A", "qty": 2}], "nested": {"deep": [1, 2.5, True, None, "ü"]}}
    row = shape(event_properties=props, plan={}, global_user_properties=None)
    assert row["event_properties"] == props and row["plan"] == {}
    assert "global_user_properties" not in row


def test_unknown_top_level_field_is_kept_in_extra():
    row = shape(session_replay_id="r-1", brand_new={"a": 1})
    assert row["_extra"] == {"session_replay_id": "r-1", "brand_new": {"a": 1}}


def test_event_that_is_not_an_object_is_rejected():
    with pytest.raises(RejectedEvent, match="not an object"):
        Shaper(LINEAGE).shape([1, 2], 3)


def test_samples_shape_without_rejects_or_extra(samples):
    shaper = Shaper(LINEAGE)
    for name, number, record in samples:
        row = shaper.shape(record, number)
        assert "_extra" not in row, (name, number)
        assert row["uuid"] == record["uuid"]


def test_the_general_path_refuses_numbers_a_float_would_change_and_keeps_exact_zeros():
    from ampbq import transform

    for text, why in [(b"1e400", "beyond FLOAT64's range"), (b"-1e309", "beyond FLOAT64's range"),
                      (b"1e-400", "would become 0"), (b"-0.0000001e-330", "would become 0")]:
        with pytest.raises(RejectedEvent, match=why):
            transform.decode(b'{"v":[1,' + text + b"]}")
    assert transform.decode(b'{"v":[0e-400,-0.0e999,1e308,5e-324]}') == {"v": [0.0, -0.0, 1e308, 5e-324]}


def test_float_columns_take_integers_only_when_a_float_holds_them_exactly():
    assert shape(location_lat=2**53, location_lng=2**60, sample_rate=-7)["location_lat"] == 2.0**53
    for value in (2**53 + 1, -(2**53) - 1, 10**400):
        with pytest.raises(RejectedEvent, match="'location_lat': expected a number FLOAT64 holds exactly"):
            shape(location_lat=value)


def test_nesting_counts_the_row_as_the_first_level():
    from ampbq.shaping import MAX_NESTING, nested_deeper_than

    def deep(levels):
        value = {}
        for _ in range(levels - 1):
            value = [1, value, "x"]
        return value

    assert not nested_deeper_than(deep(MAX_NESTING - 1), MAX_NESTING - 1) and nested_deeper_than(deep(MAX_NESTING), MAX_NESTING - 1)
    assert shape(plan=deep(MAX_NESTING - 1))["plan"] == deep(MAX_NESTING - 1)
    with pytest.raises(RejectedEvent, match="field 'plan' is nested deeper than BigQuery's JSON limit of 500 levels"):
        shape(plan=deep(MAX_NESTING))


def test_timestamps_converted_to_utc_stay_within_bigquerys_range_with_four_digit_years():
    assert shape(client_event_time="0001-01-01T00:00:00")["client_event_time"] == "0001-01-01 00:00:00.000000"
    assert shape(client_event_time="0999-06-01T12:00:00+02:00")["client_event_time"] == "0999-06-01 10:00:00.000000"
    for value in ("0001-01-01T00:59:59+01:00", "9999-12-31T23:00:00-01:00", "0000-01-01 00:00:00.000000"):
        with pytest.raises(RejectedEvent, match="'client_event_time': expected a timestamp within BigQuery's range"):
            shape(client_event_time=value)
