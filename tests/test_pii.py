"""PII guard: columns by name and by value, and payload scanning before anything leaves."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cio_mavera.errors import CioMaveraError
from cio_mavera.jobs.campaigns.analysis import body_excerpt, redact_contacts
from cio_mavera.pii import (
    PiiLeak,
    assert_no_pii,
    contains_pii,
    find_pii_columns,
    redact_text,
    strip_pii,
    text_pii_kinds,
)

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


# --- the forms issue 14 found the guard missing ------------------------------------------------

@pytest.mark.parametrize("text", [
    "write to ada.lovelace (at) example.com", "ada [at] example [dot] com",
    "forwarded from x at corp.example", "signed up as ada%40example.com",
    "reply to ada&#64;example.com", "ADA (AT) EXAMPLE (DOT) ORG",
])
def test_obfuscated_and_encoded_emails_are_found(text: str) -> None:
    assert "email" in text_pii_kinds(text)


@pytest.mark.parametrize("text", [
    "call back on 5551234567", "mobile 555 1234567", "tel. 06 12 34 56 78", "phone 5,551,234,021",
    "whatsapp %2B33612345678", "+33 6 12 34 56 78", "0044 20 7946 0958", "07911 123456",
])
def test_digit_only_spaced_grouped_and_encoded_phones_are_found(text: str) -> None:
    assert "phone" in text_pii_kinds(text)


@pytest.mark.parametrize("text", [
    "Ship the swag to 88 Church Street.", "Office: 1200 Maple Ave, Austin", "Hauptstraße 5, Berlin",
    "12 rue de la Paix", "88 church street",
])
def test_street_addresses_in_copy_are_found(text: str) -> None:
    assert "street address" in text_pii_kinds(text)


@pytest.mark.parametrize("text", [
    "duplicate of cio_id a3000001", "same person as customer id: u_000123", "merged into cio_a3000001",
    "user_id=48213", "cio id 03000001",
])
def test_customer_ids_in_copy_are_found(text: str) -> None:
    assert "customer id" in text_pii_kinds(text)


@pytest.mark.parametrize("text", [
    "12,345 customers", "1,234,567 deliveries", "conversion 3.5% vs 4.1%", "campaign 12, action 345",
    "between 2026-03-20T00:00:00Z and 2026-03-22 12:00 UTC", "sent at 1700000000 (1700000000000 ms)",
    "mrr 1234567.89", "version 1.2.3", "Top 5 Tips For The Road", "Look at tallyfold.example for more",
    "Shop now at tallyfold.example", "windows of 24 h every 12 h; 7, 14 and 28 days",
    "adjusted p = 0.000123", "Audience cluster 1 of 4: 1,200 customers (24.0%).",
    "Three steps, about five minutes.", "Met us at a trade show.", "cluster_id 3 of the campaign_id 45",
    "Reply STOP to opt out.", "5 ways to drive more clicks", "12 campaigns and 345 actions (2024-2025)",
    "Your 14-day trial ends in 3 days", "between 08:00 and 18:00, Monday to Friday",
])
def test_ordinary_numbers_dates_and_copy_are_not_personal_data(text: str) -> None:
    assert text_pii_kinds(text) == []


def _people(n: int = N) -> dict[str, list[str]]:
    first = ["Ava", "Liam", "Noah", "Emma", "Olivia", "Mateo", "Sofia", "Lucas", "Mia", "Ethan"]
    last = ["Smith", "Garcia", "Muller", "Rossi", "Silva", "Kim", "Nguyen", "Patel", "Dubois", "Tanaka"]
    return {"first_name": [first[i % 10] for i in range(n)],
            "last_name": [last[(i * 3 + i // 10) % 10] for i in range(n)]}


def test_a_column_holding_the_workspace_s_own_full_names_is_found_by_value() -> None:
    people = _people()
    pool = [f"{people['first_name'][i]} {people['last_name'][i]}" for i in (3, 17, 42)]
    assistant = [pool[i % 3] if i % 10 == 0 else None for i in range(N)]  # 10% have one
    found = find_pii_columns(_frame(assistant_name=assistant, **people))
    assert "assistant_name" in found and "person names" in found["assistant_name"]
    assert all(name.split()[0] not in found["assistant_name"] for name in pool)


def test_a_high_cardinality_column_of_full_names_is_found_without_any_name_list() -> None:
    first = ["Amelie", "Bruno", "Carla", "Dmitri", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas"]
    last = ["Albers", "Brandt", "Castro", "Dahl", "Eriksen", "Fontaine", "Gruber", "Holm", "Ibsen", "Jovic"]
    names = [f"{first[i % 10]} {last[(i // 10) % 10]}" for i in range(N)]
    assert "person names" in find_pii_columns(_frame(account_owner=names)).get("account_owner", "")


def test_title_case_categories_are_not_mistaken_for_names() -> None:
    df = _frame(job_title=(["Marketing Manager", "Head Of Growth", "Data Analyst"] * N)[:N],
                lifecycle=(["Trial Expired", "Active", "At Risk"] * N)[:N],
                city=(["New York", "Sao Paulo", "Mexico City"] * N)[:N], **_people())
    found = find_pii_columns(df, drop_quasi=False)
    assert not {"job_title", "lifecycle", "city"} & set(found)


def test_a_column_with_even_one_email_is_personal_data() -> None:
    values = [f"note {i}" for i in range(5000)]
    values[1234] = "cc ada.lovelace (at) example.com"
    df = pd.DataFrame({"notes": values})
    assert "email" in find_pii_columns(df).get("notes", "")


def test_a_free_text_column_with_a_few_percent_of_phones_addresses_and_ids_is_personal_data() -> None:
    values = [f"Asked about feature {i % 7}." for i in range(1000)]
    for i in range(0, 1000, 100):
        values[i] = "Call back on 5551234567"
        values[i + 1] = "Ship to 88 Church Street"
        values[i + 2] = "Duplicate of cio_id a3000001"
    assert "notes" in find_pii_columns(pd.DataFrame({"notes": values}))


def test_redact_text_replaces_every_form_it_finds() -> None:
    text = ("Questions? ada (at) example.com, 06 12 34 56 78 or +1 415 555 0100; "
            "visit us at 88 Church Street. Ref cio_id a3000001. 12,345 customers on 2024-01-02.")
    redacted = redact_text(text)
    assert text_pii_kinds(redacted) == []
    assert "12,345 customers on 2024-01-02" in redacted
    assert "[email]" in redacted and "[phone]" in redacted and "[address]" in redacted


def test_job1_copy_with_a_postal_footer_and_odd_contacts_is_redacted_not_refused() -> None:
    body = ("<p>Your board is ready.</p><p>Tallyfold Inc., 88 Church Street, Springfield. Questions? "
            "help (at) tallyfold.example, 06 12 34 56 78 or support%40tallyfold.example</p>")
    excerpt = body_excerpt(body)
    assert text_pii_kinds(excerpt) == [] and "Your board is ready." in excerpt
    assert {"[address]", "[email]", "[phone]"} <= set(excerpt.replace(",", " ").split())
    assert redact_contacts("Visit us at 1200 Maple Ave or call 5551234567") == \
        "Visit us at [address] or call [phone]"
