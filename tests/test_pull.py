"""`cio-mavera pull` end to end against a sandbox server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cio_mavera.cli import main


@pytest.fixture
def live_env(make_sandbox, tmp_path: Path, monkeypatch):
    """Environment pointing the CLI at a dedicated 300-customer sandbox in live mode."""
    server = make_sandbox(customers=300, app_rps=50)
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CIO_MAVERA_MODE", "live")
    monkeypatch.setenv("CIO_MAVERA_APP_RPS", "50")
    monkeypatch.setenv("CIO_MAVERA_DATA_DIR", str(tmp_path / "data"))
    return server


def _summary(out: str) -> dict[str, float]:
    match = re.search(r"\| ([\d,]+) requests \((\d+) answered 429, (\d+) retries\) \| ([\d.]+) s",
                      out)
    assert match, out
    return {"requests": int(match[1].replace(",", "")), "429": int(match[2]),
            "seconds": float(match[4])}


def test_pull_customers_prints_rows_requests_and_seconds(live_env, capsys) -> None:
    assert main(["pull", "customers"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("300 customers | ")
    assert _summary(out)["requests"] == 1 + 1 + 3  # count, search page, bulk attributes
    assert "| via api |" in out
    assert "cached in" in out and "/cache/live/" in out


def test_second_pull_makes_no_request(live_env, capsys) -> None:
    main(["pull", "customers"])
    capsys.readouterr()
    assert main(["pull", "customers"]) == 0
    out = capsys.readouterr().out
    assert _summary(out)["requests"] == 0 and "from cache" in out


def test_refresh_pulls_again(live_env, capsys) -> None:
    main(["pull", "segments"])
    capsys.readouterr()
    main(["pull", "segments", "--refresh"])
    assert _summary(capsys.readouterr().out)["requests"] == 1


def test_pull_campaigns_fills_campaigns_and_actions(live_env, capsys) -> None:
    assert main(["pull", "campaigns"]) == 0
    out = capsys.readouterr().out
    ws = live_env.state.workspace
    assert out.startswith(f"{len(ws.campaigns)} campaigns, {len(ws.actions)} actions")


def test_pull_segment_members(live_env, capsys) -> None:
    members = live_env.state.workspace.segment_members
    segment_id = next(s for s, m in members.items() if 0 < len(m) < 300)
    assert main(["pull", "customers", "--segment", str(segment_id)]) == 0
    assert capsys.readouterr().out.startswith(f"{len(members[segment_id])} customers")


def test_pull_metrics_of_the_last_days(live_env, capsys) -> None:
    assert main(["pull", "metrics", "--days", "3"]) == 0
    out = capsys.readouterr().out
    assert "metric rows" in out
    ws = live_env.state.workspace
    # campaigns + actions lists, then one metrics request per campaign and per action (a 429 from
    # the server's one-second window, possible when arrivals bunch, is retried: not counted)
    summary = _summary(out)
    expected = 1 + len(ws.campaigns) + len(ws.campaigns) + len(ws.actions)
    assert summary["requests"] - summary["429"] == expected


def test_segment_flag_applies_to_customers_only(live_env, capsys) -> None:
    assert main(["pull", "segments", "--segment", "3"]) == 2
    assert "--segment" in capsys.readouterr().err
    assert live_env.state.stats.as_json()["requests_total"] == 0


def test_wrong_key_exits_2_with_an_actionable_message(live_env, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CIO_APP_KEY", "definitely-wrong-key")
    assert main(["pull", "segments"]) == 2
    err = capsys.readouterr().err
    assert "CIO_APP_KEY" in err and "CIO_REGION=eu" in err
    assert "definitely-wrong-key" not in err


def test_unknown_segment_exits_2_naming_it(live_env, capsys) -> None:
    assert main(["pull", "customers", "--segment", "987654"]) == 2
    assert "segment 987654 not found" in capsys.readouterr().err


def test_no_progress_bar_when_not_a_terminal(live_env, capsys) -> None:
    main(["pull", "customers"])
    err = capsys.readouterr().err
    assert "people/s" not in err and "%|" not in err


def test_pull_without_keys_uses_the_sandbox(tmp_path: Path, monkeypatch, capsys) -> None:
    for name in ("CIO_APP_KEY", "CIO_SITE_ID", "CIO_API_KEY", "CIO_APP_URL", "CIO_TRACK_URL"):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("CIO_MAVERA_MODE", "auto")
    monkeypatch.setenv("CIO_MAVERA_SANDBOX_CUSTOMERS", "250")
    monkeypatch.setenv("CIO_MAVERA_DATA_DIR", str(tmp_path / "data"))
    assert main(["pull", "segments"]) == 0
    out = capsys.readouterr().out
    assert "sandbox workspace seed7-n250" in out
    assert (tmp_path / "data" / "cache" / "sandbox" / "seed7-n250" / "segments").is_dir()


def test_pull_customers_via_export_prints_the_export_and_its_download(live_env, capsys) -> None:
    live_env.state.cio.exports.delay_s = 0
    assert main(["pull", "customers", "--via", "export"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("300 customers | ")
    (export,) = live_env.state.cio.exports.all()
    assert f"| via export {export.id} (1 file download) |" in out
    # the export (1), its polls (at least 1) and one download URL; no search, no bulk reads
    assert _summary(out)["requests"] >= 3
    stats = live_env.state.stats.as_json()["requests"]
    assert "POST /cio/app/v1/customers" not in stats and "POST /cio/app/v1/customers/attributes" not in stats


def test_default_pull_prints_the_size_threshold_it_chose_by(live_env, capsys, monkeypatch) -> None:
    assert main(["pull", "customers"]) == 0
    err = capsys.readouterr().err
    assert "the workspace has 300 people" in err and "above 50,000 people" in err
    assert "via api" in err
    live_env.state.cio.exports.delay_s = 0
    monkeypatch.setattr("cio_mavera.datasets.EXPORT_ABOVE", 200)
    assert main(["pull", "customers", "--refresh"]) == 0
    captured = capsys.readouterr()
    assert "above 200 people (via export" in captured.err
    assert captured.out.startswith("300 customers | ") and "| via export" in captured.out


def test_segment_pull_chooses_by_the_segments_size(live_env, capsys) -> None:
    members = live_env.state.workspace.segment_members
    segment_id = next(s for s, m in members.items() if 0 < len(m) < 300)
    assert main(["pull", "customers", "--segment", str(segment_id)]) == 0
    assert f"segment {segment_id} has {len(members[segment_id])} people" in capsys.readouterr().err


def test_via_flag_applies_to_customers_only(live_env, capsys) -> None:
    assert main(["pull", "segments", "--via", "export"]) == 2
    assert "--via" in capsys.readouterr().err
