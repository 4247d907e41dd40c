"""Track API client against the sandbox: identify, events, v2 batches split by size, 207s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import settings_for

from cio_mavera.customerio.app import AppClient
from cio_mavera.customerio.track import (
    TrackClient,
    batch_is_idempotent,
    split_batch,
)
from cio_mavera.errors import ApiError, AuthError, InvalidParameter, ServerError
from cio_mavera.http import RetryPolicy
from cio_mavera.settings import Secret, Settings


@pytest.fixture
def track(sandbox_settings: Settings) -> Iterator[TrackClient]:
    with TrackClient(sandbox_settings, retry=RetryPolicy(backoff_base_s=0.01)) as client:
        yield client


def _identify(n: int, padding: int = 0) -> dict:
    attributes = {"cluster": f"c{n % 3}"}
    # Many values under Track's 1000-byte attribute limit make a large operation.
    for i in range(padding):
        attributes[f"note_{i}"] = "x" * 900
    return {"type": "person", "action": "identify", "identifiers": {"id": f"bulk_{n}"},
            "attributes": attributes}


def _schedule_fault(sandbox, prefix: str, status: int, count: int = 1) -> None:
    httpx.post(f"{sandbox.url}/__sandbox__/faults",
               json={"prefix": prefix, "status": status, "count": count}).raise_for_status()


def test_identify_updates_a_person_the_app_api_then_reads_as_strings(track, sandbox,
                                                                    sandbox_settings) -> None:
    cio_id = str(sandbox.state.workspace.customers["cio_id"].iloc[0])
    track.identify(f"cio_{cio_id}", cluster=2, vip=True)
    assert sandbox.state.cio.identified[f"cio_{cio_id}"] == {"cluster": 2, "vip": True}
    with AppClient(sandbox_settings) as app:
        attributes = app.customer_attributes(cio_id)["attributes"]
    assert attributes["cluster"] == "2" and attributes["vip"] == "true"


def test_identify_needs_an_identifier(track, sandbox) -> None:
    with pytest.raises(InvalidParameter):
        track.identify("  ", plan="pro")
    assert sandbox.state.stats.as_json()["requests_total"] == 0


def test_track_event_is_recorded_with_its_dedup_id(track, sandbox) -> None:
    track.track("u_000001", "ordered", {"total": 12}, timestamp=1700000000, event_id="01HXYZ")
    identifier, event = sandbox.state.cio.events[-1]
    assert identifier == "u_000001"
    assert event["name"] == "ordered" and event["data"] == {"total": 12}
    assert event["id"] == "01HXYZ"


def test_small_batch_goes_in_one_request(track, sandbox) -> None:
    result = track.batch([_identify(i) for i in range(5)])
    assert (result.requests, result.sent, result.failures) == (1, 5, [])
    assert len(sandbox.state.cio.v2_operations) == 5


def test_batch_splits_to_stay_under_500_kb_a_request(track, sandbox) -> None:
    operations = [_identify(i, padding=22) for i in range(40)]  # ~20 KB each, ~800 KB in all
    groups, failures = split_batch(operations)
    assert failures == [] and len(groups) == 2
    result = track.batch(operations)
    assert result.requests == 2 and result.accepted == 40 and not result.failures
    accepted = [op["identifiers"]["id"] for op in sandbox.state.cio.v2_operations]
    assert sorted(accepted) == sorted(f"bulk_{i}" for i in range(40))


def test_split_batch_keeps_every_request_under_the_limit() -> None:
    import json

    operations = [_identify(i, padding=i % 30) for i in range(120)]
    groups, failures = split_batch(operations, max_batch_bytes=100_000)
    assert not failures
    assert sorted(i for g in groups for i in g) == list(range(120))
    for group in groups:
        body = json.dumps({"batch": [operations[i] for i in group]}, separators=(",", ":"))
        assert len(body.encode()) <= 100_000


def test_oversized_item_fails_locally_and_is_never_sent(track, sandbox) -> None:
    operations = [_identify(0), _identify(1, padding=40), _identify(2)]  # item 1 is ~36 KB
    result = track.batch(operations)
    assert [(f.index, f.reason) for f in result.failures] == [(1, "too_large")]
    sent = [op["identifiers"]["id"] for op in sandbox.state.cio.v2_operations]
    assert sent == ["bulk_0", "bulk_2"]
    assert result.accepted == 2


def test_207_failures_map_back_to_the_callers_indexes_across_splits(track, sandbox) -> None:
    operations = [_identify(i, padding=22) for i in range(40)]
    bad = {3, 27, 39}  # the second request starts at index ~24
    for i in bad:
        operations[i] = {"type": "person", "action": "fly", "identifiers": {"id": f"bad_{i}"}}
    result = track.batch(operations)
    assert result.requests == 2
    assert result.failed_indexes == sorted(bad)
    assert {f.field for f in result.failures} == {"action"}
    assert result.accepted == 37
    assert len(sandbox.state.cio.v2_operations) == 37


def test_a_request_the_server_refuses_whole_fails_each_of_its_items(track, sandbox) -> None:
    operations = [_identify(i, padding=22) for i in range(30)]  # ~600 KB in one request
    result = track.batch(operations, max_batch_bytes=2_000_000)
    assert result.requests == 1
    assert result.failed_indexes == list(range(30))
    assert {f.reason for f in result.failures} == {"request_rejected"}
    assert sandbox.state.cio.v2_operations == []


def test_identify_batches_are_retried_after_a_server_error(track, sandbox) -> None:
    _schedule_fault(sandbox, "/cio/track/api/v2/batch", 503)
    result = track.batch([_identify(1)])
    assert result.accepted == 1 and track.stats.retries == 1


def test_event_batches_without_ids_are_not_retried_after_a_server_error(track, sandbox) -> None:
    _schedule_fault(sandbox, "/cio/track/api/v2/batch", 503)
    event = {"type": "person", "action": "event", "identifiers": {"id": "u1"}, "name": "x"}
    with pytest.raises(ServerError):
        track.batch([event])
    assert sandbox.state.cio.events == []


def test_batch_idempotency_rules() -> None:
    identify = {"action": "identify"}
    event = {"action": "event", "name": "x"}
    assert batch_is_idempotent([identify, {"action": "suppress"}])
    assert not batch_is_idempotent([identify, event])
    assert batch_is_idempotent([identify, {**event, "id": "01HULID"}])
    assert not batch_is_idempotent([{"action": "merge"}])


def test_wrong_track_key_names_site_id_and_api_key(sandbox, tmp_path: Path) -> None:
    settings = settings_for(sandbox, tmp_path, api_key=Secret("bad-track-key-999"))
    with TrackClient(settings) as client, pytest.raises(AuthError) as info:
        client.identify("u1", plan="pro")
    message = str(info.value)
    assert "CIO_SITE_ID" in message and "CIO_API_KEY" in message and "CIO_REGION=eu" in message
    assert "bad-track-key-999" not in message
    # The sandbox's 401 quotes the credentials it got; the body kept on the error is redacted.
    assert "bad-track-key-999" not in info.value.body and "****" in info.value.body


def test_region_lookup_reports_the_workspace_region(track) -> None:
    body = track.region()
    assert body["region"] == "us" and isinstance(body["environment_id"], int)


def test_a_redirect_to_the_eu_host_is_an_error_naming_cio_region(make_sandbox, tmp_path: Path) -> None:
    server = make_sandbox(customers=50, region="eu")
    settings = settings_for(server, tmp_path)
    us_host = settings.with_overrides(track_url_override=settings.track_url.replace("/cio-eu/", "/cio/"))
    with TrackClient(us_host) as client:
        with pytest.raises(ApiError, match="CIO_REGION=eu") as info:
            client.identify("u1", plan="pro")
        assert info.value.status == 307 and "/cio-eu/track" in str(info.value)
        with pytest.raises(ApiError, match="CIO_REGION=eu"):
            client.batch([_identify(1)])
        with pytest.raises(ApiError, match="CIO_REGION=eu"):
            client.track("u1", "upgraded", event_id="01HULID")
        assert client.region()["region"] == "eu"  # the lookup answers on either host
    assert server.state.cio.identified == {} and server.state.cio.events == []
    with TrackClient(settings) as client:
        client.identify("u1", plan="pro")
    assert server.state.cio.identified == {"u1": {"plan": "pro"}}


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_no_redirect_is_followed_or_counted_as_success(status: int, tmp_path: Path) -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return httpx.Response(status, headers={"location": "https://collector.example/steal"})

    settings = Settings(site_id="site", api_key=Secret("track-key-123"), data_dir=tmp_path,
                        track_url_override="https://track.customer.io")
    with TrackClient(settings, transport=httpx.MockTransport(handler)) as client, \
            pytest.raises(ApiError, match="CIO_REGION=us"):
        client.identify("u1", plan="pro")
    assert sent == ["https://track.customer.io/api/v1/customers/u1"]
