"""Datasets through the cache, against the sandbox: shapes, freshness, faults, resume, secrets."""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pandas as pd
import pytest
from conftest import settings_for

from cio_mavera import datasets
from cio_mavera.cache import Cache, pulled_at
from cio_mavera.connect import Connection
from cio_mavera.customerio.app import AppClient
from cio_mavera.customerio.export_files import ExportFormat
from cio_mavera.customerio.exports import ExportFailed, PollPolicy
from cio_mavera.errors import InvalidParameter
from cio_mavera.ratelimit import NoLimit
from cio_mavera.settings import Secret, Settings


def _conn(server, tmp_path: Path, **overrides) -> Connection:
    return Connection(settings_for(server, tmp_path / "data", **overrides), "live", "ws-test",
                      sandbox_url=server.url)


def _stats(server) -> dict:
    return server.state.stats.as_json()


def _bulk_requests(server) -> int:
    return _stats(server)["requests"].get("POST /cio/app/v1/customers/attributes", 0)


def _search_requests(server) -> int:
    return _stats(server)["requests"].get("POST /cio/app/v1/customers", 0)


class _Stop(Exception):
    """Raised from a hook to kill a pull part way."""


# -- shapes ----------------------------------------------------------------------------------

def test_campaigns_and_actions_are_tidy(connection, sandbox) -> None:
    campaigns = datasets.campaigns(connection)
    ws = sandbox.state.workspace
    assert sorted(campaigns["campaign_id"]) == sorted(ws.campaigns["campaign_id"].astype(int))
    assert str(campaigns["created_at"].dtype) == "datetime64[ns, UTC]"
    actions = datasets.actions(connection)
    assert list(actions.columns[:6]) == ["campaign_id", "action_id", "channel", "name", "subject",
                                         "preheader_text"]
    assert actions["action_id"].dtype == "int64"
    assert set(actions["channel"]) <= {"email", "push", "twilio", "in_app", "webhook", "slack"}
    assert len(actions) == len(ws.actions)


def test_segments_are_tidy(connection, sandbox) -> None:
    segments = datasets.segments(connection)
    assert set(segments["segment_id"]) == set(sandbox.state.workspace.segment_members)
    assert segments["name"].notna().all()


def test_metrics_are_long_form_with_campaign_and_action_rows(make_sandbox, tmp_path) -> None:
    sandbox = make_sandbox(customers=300, app_rps=50)
    df = datasets.metrics(_conn(sandbox, tmp_path, app_rps=50), "2025-03-01", "2025-03-07T12:00:00", res="days",
                          tz="Europe/Berlin")
    assert list(df.columns) == ["campaign_id", "action_id", "bucket_start", "metric", "value"]
    assert str(df["bucket_start"].dt.tz) == "Europe/Berlin"
    assert df["bucket_start"].nunique() == 7
    assert df["action_id"].isna().any() and df["action_id"].notna().any()
    ws = sandbox.state.workspace
    assert df["campaign_id"].nunique() == len(ws.campaigns)
    assert df.loc[df["action_id"].notna(), "action_id"].nunique() == len(ws.actions)
    # Campaign-level counts are the sum of their actions' counts, bucket by bucket.
    sent = df[df["metric"] == "sent"]
    campaign = sent[sent["action_id"].isna()].groupby(["campaign_id", "bucket_start"])["value"].sum()
    per_action = sent[sent["action_id"].notna()].groupby(["campaign_id", "bucket_start"])["value"].sum()
    pd.testing.assert_series_equal(campaign.sort_index(), per_action.sort_index(),
                                   check_names=False)


@pytest.mark.parametrize("kwargs", [
    {"res": "yearly"},
    {"tz": "Nowhere/Special"},
    {"start": "2025-03-08", "end": "2025-03-01"},
])
def test_invalid_metrics_parameters_fail_before_any_request(connection, sandbox, kwargs) -> None:
    params = {"start": "2025-03-01", "end": "2025-03-08", **kwargs}
    with pytest.raises(InvalidParameter):
        datasets.metrics(connection, params.pop("start"), params.pop("end"), **params)
    assert _stats(sandbox)["requests_total"] == 0


def test_customers_have_identifiers_then_string_attributes(connection, sandbox) -> None:
    df = datasets.customers(connection)
    assert list(df.columns[:3]) == ["cio_id", "id", "email"]
    assert len(df) == df["cio_id"].nunique() == 2000
    assert {"plan", "industry", "mrr", "signup_date"} <= set(df.columns)
    values = df.drop(columns=["cio_id", "id", "email"]).stack()
    assert values.map(type).eq(str).all()
    # one count (to choose the path) + search pages of 1,000 + bulk requests of 100: the minimum
    # possible (a 429 the server's one-second window may send when arrivals bunch is retried,
    # and not counted here)
    stats = _stats(sandbox)
    assert df.attrs["requests"] == stats["requests_total"] and df.attrs["via"] == "api"
    assert stats["requests_total"] - stats["rate_limited_total"] == 1 + 2 + 20
    assert pulled_at(df) is not None


def test_second_read_comes_from_the_cache_with_no_request(make_sandbox, tmp_path) -> None:
    server = make_sandbox(customers=300, app_rps=50)
    conn = _conn(server, tmp_path, app_rps=50)
    first = datasets.customers(conn)
    before = _stats(server)["requests_total"]
    second = datasets.customers(conn)
    assert _stats(server)["requests_total"] == before
    assert second.attrs["requests"] == 0 and second.attrs["from_cache"]
    pd.testing.assert_frame_equal(first, second)
    assert pulled_at(second) == pulled_at(first)


def test_refresh_pulls_again(make_sandbox, tmp_path) -> None:
    server = make_sandbox(customers=300, app_rps=50)
    conn = _conn(server, tmp_path, app_rps=50)
    first = datasets.segments(conn)
    again = datasets.segments(conn, refresh=True)
    assert again.attrs["requests"] == 1 and not again.attrs["from_cache"]
    assert pulled_at(again) > pulled_at(first)


def test_max_age_zero_pulls_again(make_sandbox, tmp_path) -> None:
    server = make_sandbox(customers=300, app_rps=50)
    conn = _conn(server, tmp_path, app_rps=50)
    datasets.campaigns(conn)
    assert datasets.campaigns(conn, max_age=0).attrs["requests"] == 1


def test_segment_customers_match_membership(connection, sandbox) -> None:
    members = sandbox.state.workspace.segment_members
    segment_id = next(s for s, m in members.items() if 0 < len(m) < 400)
    df = datasets.customers(connection, segment_id)
    expected = set(sandbox.state.workspace.customers["cio_id"].iloc[members[segment_id]].astype(str))
    assert set(df["cio_id"]) == expected


def test_empty_segment_gives_an_empty_frame_with_identifier_columns(connection, sandbox) -> None:
    members = sandbox.state.workspace.segment_members
    empty = next(s for s, m in members.items() if len(m) == 0)
    df = datasets.customers(connection, empty)
    assert len(df) == 0 and list(df.columns) == ["cio_id", "id", "email"]


# -- faults ----------------------------------------------------------------------------------

def test_429_storm_loses_no_rows(make_sandbox, tmp_path) -> None:
    server = make_sandbox(customers=300, force_429_rate=0.5)
    df = datasets.customers(_conn(server, tmp_path))
    assert len(df) == df["cio_id"].nunique() == 300
    assert _stats(server)["rate_limited_total"] > 0


def test_scripted_429s_with_retry_after_lose_no_rows(make_sandbox, tmp_path) -> None:
    server = make_sandbox(customers=400)
    httpx.post(f"{server.url}/__sandbox__/faults",
               json={"prefix": "/cio/app/v1/customers", "status": 429, "count": 4,
                     "retry_after": 1}).raise_for_status()
    df = datasets.customers(_conn(server, tmp_path))
    assert len(df) == df["cio_id"].nunique() == 400
    assert _stats(server)["faults_injected"] == 4


def test_random_server_errors_lose_no_rows(make_sandbox, tmp_path) -> None:
    server = make_sandbox(customers=600, fault_rate=0.2, app_rps=50)
    df = datasets.customers(_conn(server, tmp_path, app_rps=50))
    assert len(df) == df["cio_id"].nunique() == 600
    assert _stats(server)["faults_injected"] > 0


def test_killed_pull_resumes_without_refetching_stored_parts(make_sandbox, tmp_path) -> None:
    server = make_sandbox(customers=1000, app_rps=50)
    conn = _conn(server, tmp_path, app_rps=50)
    stored: list[str] = []

    def die_after_two(name: str) -> None:
        stored.append(name)
        if len(stored) == 2:
            raise _Stop

    with pytest.raises(_Stop):
        datasets.customers(conn, via="api", part_size=200, on_part=die_after_two)
    server.state.reset()

    df = datasets.customers(conn, via="api", part_size=200)
    assert len(df) == df["cio_id"].nunique() == 1000
    # The id list was stored, and 2 of 5 parts: only the other 3 parts' 6 requests are made.
    assert _search_requests(server) == 0
    assert _bulk_requests(server) == 6 == df.attrs["requests"]


def test_corrupt_part_is_refetched_alone(make_sandbox, tmp_path, caplog) -> None:
    server = make_sandbox(customers=600, app_rps=50)
    conn = _conn(server, tmp_path, app_rps=50)
    first = datasets.customers(conn, part_size=200)
    part = Path(first.attrs["cache_path"]) / "part-00001.parquet"
    part.write_bytes(b"PAR1" + b"\x00" * 64)
    server.state.reset()
    with caplog.at_level(logging.WARNING):
        second = datasets.customers(conn, part_size=200)
    assert "damaged" in caplog.text
    assert _bulk_requests(server) == 2 and _search_requests(server) == 0
    pd.testing.assert_frame_equal(first.reset_index(drop=True), second.reset_index(drop=True))


def test_schema_mismatch_is_refetched(make_sandbox, tmp_path, monkeypatch) -> None:
    server = make_sandbox(customers=300, app_rps=50)
    conn = _conn(server, tmp_path, app_rps=50)
    datasets.segments(conn)
    monkeypatch.setitem(datasets.SCHEMA, "segments", 99)
    assert datasets.segments(conn).attrs["requests"] == 1


def test_no_secret_in_cache_files_or_logs(make_sandbox, tmp_path, caplog) -> None:
    server = make_sandbox(customers=300, app_rps=50)
    conn = _conn(server, tmp_path, app_rps=50)
    with caplog.at_level(logging.DEBUG):
        datasets.customers(conn)
        datasets.segments(conn)
        datasets.metrics(conn, "2025-01-01", "2025-01-03")
    secrets = [s.encode() for s in conn.settings.secrets()]
    files = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files)
    for path in files:
        content = path.read_bytes()
        assert not any(s in content for s in secrets), path
    assert not any(s.decode() in caplog.text for s in secrets)
    manifest = json.loads(next((tmp_path / "data").rglob("manifest.json")).read_text())
    assert set(manifest) >= {"parameters", "pulled_at", "rows", "schema_version", "parts"}


# Runs `cio-mavera <args>` with the App limiter's grants logged: each line is the clock reading
# at which FileRateLimiter granted a send (the limiter's own bookkeeping, not an arrival time).
_LOGGED_PULL = textwrap.dedent("""
    import sys
    from cio_mavera import ratelimit
    from cio_mavera.cli import main

    log = open(sys.argv[1], "a", buffering=1)
    original = ratelimit.FileRateLimiter._try_take

    def take(self):
        readings, clock = [], self._clock
        self._clock = lambda: readings.append(clock()) or readings[-1]
        try:
            pause = original(self)
        finally:
            self._clock = clock
        if pause <= 0 and not self.path.stem.endswith("-pace"):
            log.write(repr(readings[-1]) + "\\n")
        return pause

    ratelimit.FileRateLimiter._try_take = take
    sys.exit(main(sys.argv[2:]))
""")


def _busiest_second(stamps: list[float]) -> int:
    stamps = sorted(stamps)
    return max((sum(1 for t in stamps[i:] if t - s < 1.0) for i, s in enumerate(stamps)), default=0)


def test_two_pulls_at_once_share_one_limit_of_ten_a_second(make_sandbox, tmp_path) -> None:
    server = make_sandbox(customers=1200)
    members = server.state.workspace.segment_members
    segment_id = max((s for s in members if len(members[s]) < 1200), key=lambda s: len(members[s]))
    # Two processes (the server stays in this one), as two notebooks or batch runs would be.
    env = {**os.environ, **server.env(), "CIO_MAVERA_MODE": "live", "TQDM_DISABLE": "1",
           "CIO_MAVERA_DATA_DIR": str(tmp_path / "data")}
    logs = [tmp_path / "grants-1.txt", tmp_path / "grants-2.txt"]
    commands = [[sys.executable, "-c", _LOGGED_PULL, str(logs[0]), "pull", "customers"],
                [sys.executable, "-c", _LOGGED_PULL, str(logs[1]), "pull", "customers",
                 "--segment", str(segment_id)]]
    runs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for c in commands]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert outputs[0][0].startswith("1,200 customers")
    assert outputs[1][0].startswith(f"{len(members[segment_id]):,} customers")
    grants = [[float(line) for line in log.read_text().split()] for log in logs]
    # The limiter granted both processes' sends out of one budget: never 11 in a second, whatever
    # the machine's load (a separate budget each would grant up to 20).
    assert all(grants) and _busiest_second(grants[0] + grants[1]) <= 10
    stats = _stats(server)
    # each pull: one count to choose the path (both stay on the API path at this size), then
    # search or membership pages and bulk-attribute requests
    expected = 1 + 2 + 12 + 1 + 1 + math.ceil(len(members[segment_id]) / 100)
    assert stats["requests_total"] - stats["rate_limited_total"] == expected


# -- customers through an export -------------------------------------------------------------

QUICK = PollPolicy(first_s=0.02, factor=1.5, max_s=0.2, timeout_s=120)


def _export_sandbox(make_sandbox, customers: int = 1500):
    server = make_sandbox(customers=customers, app_rps=50)
    server.state.cio.exports.delay_s = 0
    return server


def _served_rows(server) -> int:
    """Data rows in the files the sandbox wrote for its done exports (what it served)."""
    store = server.state.cio.exports
    return sum(gzip.decompress(e.path.read_bytes()).count(b"\n") - 1
               for e in store.all() if e.path is not None)


def test_export_and_api_paths_store_the_same_customers(make_sandbox, tmp_path) -> None:
    server = _export_sandbox(make_sandbox)
    by_api = datasets.customers(_conn(server, tmp_path / "a", app_rps=50), via="api")
    by_export = datasets.customers(_conn(server, tmp_path / "b", app_rps=50), via="export",
                                   poll=QUICK)
    assert by_export.attrs["via"] == "export" and by_api.attrs["via"] == "api"
    # rows stored = rows served = the export's total = everyone
    (export,) = server.state.cio.exports.all()
    assert len(by_export) == _served_rows(server) == export.total == 1500
    assert by_export["cio_id"].is_unique
    pd.testing.assert_frame_equal(by_api.sort_values("cio_id").reset_index(drop=True),
                                  by_export.sort_values("cio_id").reset_index(drop=True))
    parts = json.loads((Path(by_export.attrs["cache_path"]) / "manifest.json").read_text())["parts"]
    assert {p["kind"] for p in parts.values()} == {"export", "data"}


def test_auto_exports_above_the_threshold_and_says_why(make_sandbox, tmp_path) -> None:
    server = _export_sandbox(make_sandbox)
    choices = []
    df = datasets.customers(_conn(server, tmp_path / "a", app_rps=50), threshold=1000,
                            poll=QUICK, on_choice=choices.append)
    assert df.attrs["via"] == "export" and len(df) == 1500
    assert choices[0].via == "export" and choices[0].people == 1500
    assert "1,500 people" in choices[0].reason and "above 1,000" in choices[0].reason
    small = datasets.customers(_conn(server, tmp_path / "b", app_rps=50), threshold=5000,
                               on_choice=choices.append)
    assert small.attrs["via"] == "api" and choices[1].via == "api"


def test_segment_export_matches_membership_and_an_empty_one_is_empty(make_sandbox, tmp_path) -> None:
    server = _export_sandbox(make_sandbox)
    conn = _conn(server, tmp_path, app_rps=50)
    members = server.state.workspace.segment_members
    segment_id = next(s for s, m in members.items() if 0 < len(m) < 1500)
    df = datasets.customers(conn, segment_id, via="export", poll=QUICK)
    expected = set(server.state.workspace.customers["cio_id"].iloc[members[segment_id]])
    assert set(df["cio_id"]) == expected and len(df) == len(expected)
    empty = next(s for s, m in members.items() if len(m) == 0)
    none = datasets.customers(conn, empty, via="export", poll=QUICK)
    assert len(none) == 0 and list(none.columns) == ["cio_id", "id", "email"]


def test_killed_export_pull_picks_up_the_same_export(make_sandbox, tmp_path) -> None:
    server = _export_sandbox(make_sandbox)
    conn = _conn(server, tmp_path, app_rps=50)
    small_blocks = ExportFormat(block_bytes=64 << 10)

    def die(name: str) -> None:
        raise _Stop

    with pytest.raises(_Stop):
        datasets.customers(conn, via="export", poll=QUICK, export_format=small_blocks, on_part=die)
    df = datasets.customers(conn, via="export", poll=QUICK, export_format=small_blocks)
    assert len(df) == df["cio_id"].nunique() == 1500
    assert _stats(server)["requests"]["POST /cio/app/v1/exports/customers"] == 1
    assert len(server.state.cio.exports.all()) == 1


def test_damaged_file_is_refetched_and_only_the_good_download_kept(make_sandbox, tmp_path) -> None:
    server = _export_sandbox(make_sandbox)
    server.state.cio.exports.damage_next = ["garble", "truncate"]
    stored: list[str] = []
    df = datasets.customers(_conn(server, tmp_path, app_rps=50), via="export", poll=QUICK,
                            export_format=ExportFormat(block_bytes=64 << 10),
                            on_part=stored.append)
    assert len(df) == df["cio_id"].nunique() == 1500
    manifest = json.loads((Path(df.attrs["cache_path"]) / "manifest.json").read_text())
    data = sorted(n for n, p in manifest["parts"].items() if p["kind"] == "data")
    assert len(stored) > len(data) >= 2  # the damaged attempts wrote parts; they were replaced
    assert data == [f"export-{i:05d}" for i in range(len(data))] and manifest["rows"] == 1500


def test_failed_export_leaves_no_complete_cache(make_sandbox, tmp_path) -> None:
    server = _export_sandbox(make_sandbox)
    conn = _conn(server, tmp_path, app_rps=50)
    server.state.cio.exports.fail_next = 1
    with pytest.raises(ExportFailed):
        datasets.customers(conn, via="export", poll=QUICK)
    df = datasets.customers(conn, via="export", poll=QUICK)  # a new export, not the failed one
    assert len(df) == 1500 and len(server.state.cio.exports.all()) == 2


def test_pull_customers_fills_the_cache_without_loading_it(make_sandbox, tmp_path) -> None:
    server = _export_sandbox(make_sandbox)
    conn = _conn(server, tmp_path, app_rps=50)
    pulled = datasets.pull_customers(conn, via="export", poll=QUICK)
    assert pulled.rows == 1500 and pulled.via == "export" and not pulled.from_cache
    assert pulled.file_downloads == 1 and pulled.requests >= 3 and pulled.export_id is not None
    again = datasets.pull_customers(conn, via="export", poll=QUICK)
    assert again.from_cache and again.requests == 0 and again.rows == 1500
    assert datasets.customers(conn).attrs["requests"] == 0
    part = next(Path(pulled.cache_path).glob("export-*.parquet"))
    part.write_bytes(b"PAR1" + b"\x00" * 64)
    assert not datasets.pull_customers(conn, via="export", poll=QUICK).from_cache


def test_no_key_or_signed_url_in_cache_files_or_logs(make_sandbox, tmp_path, caplog) -> None:
    server = _export_sandbox(make_sandbox)
    conn = _conn(server, tmp_path, app_rps=50)
    server.state.cio.exports.damage_next = ["cut"]
    with caplog.at_level(logging.DEBUG):
        datasets.customers(conn, via="export", poll=QUICK)
    forbidden = [*conn.settings.secrets(), "signature=", "/cio-files/", "expires="]
    files = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert any(p.name == "manifest.json" for p in files)
    for path in files:
        content = path.read_bytes()
        assert not any(s.encode() in content for s in forbidden), path
    assert "downloading again" in caplog.text  # the cut download was logged, without its URL
    assert not any(s in caplog.text for s in forbidden)


def test_a_deliveries_export_goes_into_the_cache_the_same_way(make_sandbox, tmp_path) -> None:
    server = _export_sandbox(make_sandbox, customers=400)
    conn = _conn(server, tmp_path, app_rps=50)
    records = server.state.cio.derived.messages.records
    campaign_id = next(r["campaign_id"] for r in records if r["campaign_id"] is not None)
    expected = {r["id"] for r in records if r["campaign_id"] == campaign_id}
    entry = Cache(conn.cache_dir).entry("deliveries", {"campaign_id": campaign_id}, 1)
    with AppClient(conn) as app, entry.lock():
        export = datasets.export_into_cache(
            app, entry, lambda: app.exports.deliveries(campaign_id=campaign_id), poll=QUICK)
    df = entry.load(None)
    assert export.type == "deliveries" and len(df) == export.total == len(expected)
    assert set(df["delivery_id"]) == expected and df["delivered"].map(type).isin([str, type(None)]).all()


@pytest.mark.parametrize(("people", "via", "says"), [
    ([120_000], "export", "the workspace has 120,000 people"),
    ([3_000, 40_000], "api", "the largest of the account's 2 workspaces has 40,000 people"),
    ([3_000, 400_000], "export", "does not say which one the key belongs to"),
])
def test_path_choice_with_one_or_several_workspaces(tmp_path, people, via, says) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"workspaces": [{"id": i, "people": n}
                                                        for i, n in enumerate(people)]})

    settings = Settings(app_key=Secret("mock-app-key-123"), data_dir=tmp_path,
                        app_url_override="https://api.example.test")
    with AppClient(settings, transport=httpx.MockTransport(handler), limiter=NoLimit()) as app:
        choice = datasets.choose_customers_path(app)
    assert choice.via == via and says in choice.reason and "50,000" in choice.reason
