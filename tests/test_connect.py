"""connect(): live vs sandbox, cache namespaces, and region auto-detection through Track."""

import pytest

from cio_mavera.connect import connect
from cio_mavera.errors import AuthError
from cio_mavera.settings import Secret, Settings

LIVE = dict(site_id="site-1", api_key=Secret("track-key-123456"), app_key=Secret("app-key-123456"),
            mavera_key=Secret("mvra_live_123456"), mode="live")


def test_live_connection_names_the_workspace_without_its_key(tmp_path):
    conn = connect("mavera", settings=Settings(data_dir=tmp_path, **LIVE))
    assert conn.mode == "live" and conn.workspace == "site-site-1"
    assert conn.cache_dir == tmp_path / "cache" / "live" / "site-site-1"


def test_region_detected_through_track_replaces_a_wrong_setting(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr("cio_mavera.customerio.region.detect_region", lambda settings: "eu")
    conn = connect("customerio", settings=Settings(data_dir=tmp_path, region="us", **LIVE))
    assert conn.settings.region == "eu"
    assert conn.settings.app_url == "https://api-eu.customer.io"
    assert "says this workspace is in eu" in caplog.text


def test_failed_region_lookup_keeps_the_configured_region(tmp_path, monkeypatch):
    def refuse(settings):
        raise AuthError("Track key rejected", service="customerio-track", status=401)

    monkeypatch.setattr("cio_mavera.customerio.region.detect_region", refuse)
    conn = connect("customerio", settings=Settings(data_dir=tmp_path, region="eu", **LIVE))
    assert conn.settings.region == "eu"


def test_region_is_not_looked_up_when_hosts_are_overridden(tmp_path, monkeypatch):
    def fail(settings):
        raise AssertionError("no lookup expected")

    monkeypatch.setattr("cio_mavera.customerio.region.detect_region", fail)
    settings = Settings(data_dir=tmp_path, app_url_override="http://127.0.0.1:9/app", **LIVE)
    assert connect("customerio", settings=settings).settings.region == "us"


@pytest.mark.parametrize("needs", [("customerio",), ("customerio", "mavera")])
def test_sandbox_mode_uses_the_in_process_sandbox_and_its_own_cache(tmp_path, needs):
    conn = connect(*needs, settings=Settings(data_dir=tmp_path, mode="sandbox", sandbox_customers=300))
    assert conn.mode == "sandbox" and conn.workspace == "seed7-n300"
    assert conn.settings.app_url.startswith("http://127.0.0.1:")
    assert conn.cache_dir.parts[-2] == "sandbox"
