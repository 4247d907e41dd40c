"""Parameters are data: declared per job, plain JSON only, checked before any request or credit."""

from __future__ import annotations

import pytest

from cio_mavera import cli, reports
from cio_mavera.errors import InvalidParameter
from cio_mavera.parameters import contains_secret, parse_cli_value, plain_data


@pytest.mark.parametrize("job", sorted(reports.JOBS))
def test_each_job_declares_exactly_its_notebook_parameters_and_defaults(job):
    spec = reports.JOBS[job].spec()
    assert spec.defaults == reports.notebook_parameters(reports.NOTEBOOKS_DIR / reports.JOBS[job].notebook)


@pytest.mark.parametrize(("name", "text", "says"), [
    ("campaign_ids", "45", "campaign_ids must be a list, e.g. [45, 49]; got 45"),
    ("campaign_ids", "45,49", "campaign_ids must be a list"),
    ("days", "abc", "days must be a whole number; got 'abc'"),
    ("days", "1e20", "days must be between 1 and 3,650"),
    ("days", "NaN", "days must be a whole number; got 'NaN'"),
    ("validation", "focus", "validation must be one of responses, focus_group; got 'focus'"),
    ("channel", '{"$gt":""}', "channel must be one of all, email, push, sms, twilio"),
    ("start", "yesterday", "start must be a date like 2026-03-01"),
    ("campaign_ids", "[[1, 2]]", "each item of campaign_ids must be a whole number"),
])
def test_bad_values_give_one_clear_line_before_anything_runs(tmp_path, name, text, says):
    with pytest.raises(InvalidParameter) as info:
        reports.run_job("campaign-messaging", {name: parse_cli_value(text)}, out_dir=tmp_path / "out")
    assert says in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_cross_field_rules_are_checked():
    with pytest.raises(InvalidParameter, match=r"k_min \(9\) must not be greater than k_max \(3\)"):
        reports.check_parameters(reports.JOBS["attribute-personas"], {"k_min": 9, "k_max": 3})


def test_only_plain_json_data_is_accepted():
    assert plain_data("x", {"a": [1, 2.5, None, True, "s"]}) == {"a": [1, 2.5, None, True, "s"]}
    for value in ([("id",)], {1, 2}, b"bytes", float("inf"), {1: "non-text key"}, object()):
        with pytest.raises(InvalidParameter, match="plain data|finite"):
            plain_data("x", value)
    with pytest.raises(InvalidParameter, match="plain data"):
        reports.check_parameters(reports.JOBS["campaign-messaging"], {"personas": [("id",)]})


def test_cli_values_are_never_evaluated():
    assert parse_cli_value("__import__('os').system('id')") == "__import__('os').system('id')"
    assert parse_cli_value("(1, 2)") == "(1, 2)"
    assert parse_cli_value("[45, 49]") == [45, 49]


def test_a_configured_key_is_refused_inside_lists_and_dicts(monkeypatch):
    key = "mvra_live_leakme123456"
    monkeypatch.setenv("MAVERA_API_KEY", key)
    assert contains_secret({"nested": [1, {"deep": f"x{key}y"}]}, [key])
    for value in ([key], {"k": [key]}):
        with pytest.raises(InvalidParameter, match="contains a configured key") as info:
            reports.check_parameters(reports.JOBS["campaign-messaging"], {"personas": value})
        assert key not in str(info.value)


def test_an_unusable_out_directory_is_refused_before_anything_runs(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(InvalidParameter, match="cannot write reports to .*pass a writable --out"):
        reports.run_job("campaign-messaging", {}, out_dir=blocker / "reports")


def test_run_help_lists_each_parameter_with_default_and_allowed_values(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "campaign-messaging", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert 'validation = "responses"  (one of responses, focus_group)' in text
    assert "days = 30  (a whole number between 1 and 3,650)" in text
    assert "campaign_ids = []  (a list of whole numbers)" in text


def test_the_command_line_prints_only_the_error_for_a_bad_value(tmp_path, capsys):
    assert cli.main(["run", "campaign-messaging", "-p", "days", "abc", "--out", str(tmp_path / "out")]) != 0
    printed = capsys.readouterr()
    assert "running" not in printed.out and "days must be a whole number; got 'abc'" in printed.err
    assert not (tmp_path / "out").exists()
