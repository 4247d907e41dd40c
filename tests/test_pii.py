"""PII guard: columns by name and by value, and payload scanning before anything leaves."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cio_mavera.errors import CioMaveraError
from cio_mavera.pii import PiiLeak, assert_no_pii, contains_pii, find_pii_columns, strip_pii

N = 200


def _frame(**columns: list) -> pd.DataFrame:
    base = {"plan": (["pro", "free"] * N)[:N], "mrr": [str(i) for i in range(N)]}
    return pd.DataFrame({**base, **columns})


def test_pii_columns_are_found_by_name() -> None:
    cols = ["email", "first_name", "lastName", "Phone Number", "street_address", "ip_address",
            "cio_id", "customer_id", "id", "date_of_birth", "username"]
    df = _frame(**{c: ["x"] * N for c in cols})
    found = find_pii_columns(df)
    assert set(found) == set(cols)
    assert "plan" not in found and "mrr" not in found


def test_city_is_a_quasi_identifier_dropped_by_default_but_country_kept() -> None:
    df = _frame(city=["Berlin"] * N, country=["DE"] * N)
    assert "city" in find_pii_columns(df)
    assert "country" not in find_pii_columns(df)
    assert "city" not in find_pii_columns(df, drop_quasi=False)


def test_innocuous_column_holding_emails_is_caught_by_value() -> None:
    df = _frame(referrer=[f"someone{i}@example.org" for i in range(N)])
    found = find_pii_columns(df)
    assert "referrer" in found and "email" in found["referrer"]
    assert "someone" not in found["referrer"]  # the reason never repeats a value


@pytest.mark.parametrize("phone", ["+14155550123", "+44 20 7946 0958", "(415) 555-0123",
                                   "415.555.0123"])
def test_phone_numbers_are_caught_by_value(phone: str) -> None:
    assert "contact" in find_pii_columns(_frame(contact=[phone] * N))


def test_street_addresses_and_ips_are_caught_by_value() -> None:
    df = _frame(loc=[f"{i + 1} Maple Street" for i in range(N)],
                last_ip=[f"10.0.{i % 250}.{i % 200}" for i in range(N)], src=["x"] * N)
    found = find_pii_columns(df)
    assert "loc" in found and "street" in found["loc"]
    assert "last_ip" in found  # by name ("ip" token) even before values


def test_timestamps_dates_and_amounts_are_not_mistaken_for_phones() -> None:
    df = _frame(created=[str(1_700_000_000 + i) for i in range(N)],
                signup=["2024-01-02 10:30:00"] * N, amount=["1234567.89"] * N,
                version=["1.2.3"] * N)
    assert find_pii_columns(df) == {}


def test_strip_pii_returns_clean_frame_and_reasons_and_honours_keep() -> None:
    df = _frame(cio_id=[str(i) for i in range(N)], email=["a@b.co"] * N,
                note=[f"mail {i}@x.io" for i in range(N)])
    clean, dropped = strip_pii(df, keep=["cio_id"])
    assert list(clean.columns) == ["plan", "mrr", "cio_id"]
    assert set(dropped) == {"email", "note"}


def test_contains_pii_finds_emails_and_phones_in_nested_payloads_by_path() -> None:
    payload = {
        "model": "mavera-1",
        "messages": [{"role": "user", "content": "Cluster 1: high mrr"},
                     {"role": "user", "content": "reach ada@example.com"}],
        "persona": {"notes": ["ok", "call +1 415 555 0123"]},
        "count": 1_700_000_000,
    }
    found = contains_pii(payload)
    assert found == ["$.messages[1].content: email", "$.persona.notes[1]: phone"]
    assert contains_pii(json.dumps(payload).encode()) != []
    assert contains_pii("plain text, 42 customers, 2024-01-02") == []


def test_contains_pii_checks_dict_keys_too() -> None:
    assert contains_pii({"ada@example.com": 1}) == ["$['ada@example.com'] (key): email"]


def test_assert_no_pii_raises_with_field_path_but_not_the_value() -> None:
    with pytest.raises(PiiLeak) as err:
        assert_no_pii({"input": [{"text": "write to grace@example.com"}]}, what="Mavera request")
    message = str(err.value)
    assert "$.input[0].text" in message and "Mavera request" in message
    assert "grace" not in message and "example.com" not in message
    assert isinstance(err.value, CioMaveraError)
    assert err.value.findings == [("$.input[0].text", "email")]


def test_assert_no_pii_passes_clean_payloads() -> None:
    assert_no_pii({"description": "Audience cluster 1 of 4: 1,200 customers (24.0%).",
                   "scores": [1.5, 2], "ok": True, "none": None})
