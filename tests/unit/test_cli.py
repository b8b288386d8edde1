import orjson
from click.testing import CliRunner

from ampbq.tools.cli import main
from factory import event_line, gzip_lines


def test_transform_command_writes_rows_and_rejects_beside_them(tmp_path):
    src = tmp_path / "203138_2020-11-24_9#627.json.gz"
    good = event_line("a", "2020-11-24 09:00:01.000000", "2020-11-24 09:00:00.000000", event_type=None)
    src.write_bytes(gzip_lines([good, b"{broken"]))
    result = CliRunner().invoke(main, ["transform", str(src), str(tmp_path / "rows.json")])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "transform: events=2 rows=1 rejected=1"
    row = orjson.loads((tmp_path / "rows.json").read_bytes())
    assert row["_upload_hour"] == "2020-11-24 09:00:00"
    assert orjson.loads((tmp_path / "rows.rejects.json").read_bytes())["line"] == 2


def test_transform_command_needs_an_hour_it_can_tell(tmp_path):
    src = tmp_path / "events.json.gz"
    src.write_bytes(gzip_lines([b"{}"]))
    result = CliRunner().invoke(main, ["transform", str(src), str(tmp_path / "rows.json")])
    assert result.exit_code != 0 and "--hour" in result.output


def test_every_command_has_help_with_an_example():
    for name, command in main.commands.items():
        assert "Example:" in (command.help or ""), name
