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
