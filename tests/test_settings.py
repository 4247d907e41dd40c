"""Settings: secrets never show, regions pick hosts, modes resolve, bad values fail early."""

import pytest

from cio_mavera.errors import ConfigError
from cio_mavera.settings import Secret, load_settings


def test_secret_never_shows_in_repr_str_or_fstring():
    secret = Secret("sk-very-secret-value")
    rendered = [repr(secret), str(secret), f"{secret}", repr({"key": secret})]
    assert all("sk-very-secret-value" not in text for text in rendered)
    assert secret.reveal() == "sk-very-secret-value"


def test_settings_repr_hides_every_key():
    settings = load_settings({"CIO_APP_KEY": "app-key-123456", "MAVERA_API_KEY": "mvra_live_abcdef",
                              "CIO_API_KEY": "track-key-9876", "CIO_WEBHOOK_SECRET": "whsec-555555"},
                             dotenv=False)
    text = repr(settings)
    for value in ("app-key-123456", "mvra_live_abcdef", "track-key-9876", "whsec-555555"):
        assert value not in text
    assert sorted(settings.secrets()) == sorted(
        ["app-key-123456", "mvra_live_abcdef", "track-key-9876", "whsec-555555"])


def test_eu_region_uses_eu_hosts():
    settings = load_settings({"CIO_REGION": "EU"}, dotenv=False)
    assert settings.app_url == "https://api-eu.customer.io"
    assert settings.track_url == "https://track-eu.customer.io"


def test_base_url_overrides_win_over_region():
    settings = load_settings({"CIO_REGION": "eu", "CIO_APP_URL": "http://127.0.0.1:9/app/"},
                             dotenv=False)
    assert settings.app_url == "http://127.0.0.1:9/app"


def test_unknown_region_fails_with_the_allowed_values():
    with pytest.raises(ConfigError, match="CIO_REGION='mars'.*us, eu"):
        load_settings({"CIO_REGION": "mars"}, dotenv=False)


def test_auto_mode_is_live_only_when_every_needed_key_is_set():
    settings = load_settings({"CIO_APP_KEY": "app-key-123456"}, dotenv=False)
    assert settings.resolve_mode("customerio") == "live"
    assert settings.resolve_mode("customerio", "mavera") == "sandbox"


def test_live_mode_names_the_missing_variables():
    settings = load_settings({"CIO_MAVERA_MODE": "live"}, dotenv=False)
    with pytest.raises(ConfigError, match="CIO_APP_KEY.*MAVERA_API_KEY"):
        settings.resolve_mode("customerio", "mavera")


def test_sandbox_mode_ignores_real_keys():
    settings = load_settings({"CIO_MAVERA_MODE": "sandbox", "CIO_APP_KEY": "app-key-123456"},
                             dotenv=False)
    assert settings.resolve_mode("customerio") == "sandbox"


def test_dotenv_file_is_read_and_environment_wins(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("CIO_REGION=eu\nMAVERA_RPM=240\n")
    settings = load_settings({"MAVERA_RPM": "600"}, dotenv=dotenv)
    assert settings.region == "eu"
    assert settings.mavera_rpm == 600


def test_non_numeric_tier_fails_before_any_request():
    with pytest.raises(ConfigError, match="MAVERA_RPM='fast' is not a number"):
        load_settings({"MAVERA_RPM": "fast"}, dotenv=False)


def test_relative_data_dir_is_resolved_from_the_project_root():
    settings = load_settings({"CIO_MAVERA_DATA_DIR": "tmp-data"}, dotenv=False)
    assert settings.data_dir.is_absolute()
    assert settings.data_dir.name == "tmp-data"
