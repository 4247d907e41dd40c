"""The workspace's own people as a lookup: names, emails, phones, ids and cio_ids found in payloads."""

from __future__ import annotations

import pandas as pd
import pytest

from cio_mavera.cache import Cache
from cio_mavera.known_people import CIO_ID, EMAIL, ID, NAME, PHONE, KnownPeople, WorkspacePeople


def _people() -> pd.DataFrame:
    return pd.DataFrame({
        "cio_id": ["a3000001", "a3000002", "03000003", "a3000004"],
        "id": ["u_000001", None, "42", "12345"],
        "email": ["ava.smith1@example.com", "liam.o'brien2@corp.example", None, "zoe.kim4@inbox.example"],
        "first_name": pd.Categorical(["Ava", "Liam", "Noah", "Zoë"]),
        "last_name": pd.Categorical(["Smith", "O'Brien", None, "Kim"]),
        "phone": ["+33612345678", "+14155550123", None, "+4915112345678"],
        "plan": ["pro", "free", "pro", "business"],
    })


@pytest.fixture(scope="module")
def known() -> KnownPeople:
    return KnownPeople.from_frame(_people())


@pytest.mark.parametrize("text", ["ask ava smith about it", "AVA   SMITH", "Ava\nSmith's team",
                                  "liam o'brien", "Liam O Brien", "zoe kim", "Zoë Kim"])
def test_full_names_are_found_whatever_their_case_accents_and_spacing(known, text) -> None:
    assert known.kinds_in(text) == [NAME]


@pytest.mark.parametrize("text", ["Ava", "Smith", "Smith Ava", "Noah", "ava and smith",
                                  "Audience cluster 1 of 4: 1,200 customers (24.0%)."])
def test_a_first_or_last_name_alone_or_in_another_order_is_not_a_full_name(known, text) -> None:
    assert known.kinds_in(text) == []


@pytest.mark.parametrize("text", ["AVA.SMITH1@example.com", "ava.smith1 (at) example (dot) com",
                                  "zoe.kim4 at inbox.example", "zoe.kim4%40inbox.example"])
def test_emails_are_found_plain_obfuscated_or_encoded(known, text) -> None:
    assert EMAIL in known.kinds_in(text)


@pytest.mark.parametrize("text", ["06 12 34 56 78", "+33 6 12 34 56 78", "%2B33612345678",
                                  "612345678", "call (415) 555-0123 now", "0151 12345678"])
def test_phones_are_found_in_national_or_international_form(known, text) -> None:
    assert PHONE in known.kinds_in(text)


@pytest.mark.parametrize(("text", "kind"), [
    ("merged into u_000001.", ID), ("see A3000002", CIO_ID), ("cio_a3000004 is a duplicate", CIO_ID),
    ("person 03000003", CIO_ID), ("https://fly.customer.io/people/a3000001/activity", CIO_ID),
])
def test_ids_and_cio_ids_are_found_as_tokens(known, text, kind) -> None:
    assert kind in known.kinds_in(text)


def test_short_or_ordinary_numeric_ids_are_not_looked_up(known) -> None:
    assert known.kinds_in("42 customers, 12345 deliveries, 612 opens") == []


def test_find_reports_paths_and_kinds_but_never_a_value(known) -> None:
    payload = {"messages": [{"role": "user", "content": "Summarise the cluster"},
                            {"role": "user", "content": "Ask Ava Smith (u_000001)"}],
               "persona": {"notes": ["reach her on 06 12 34 56 78"]}, "count": 612345678}
    assert known.find(payload) == [("$.messages[1].content", NAME), ("$.messages[1].content", ID),
                                   ("$.persona.notes[0]", PHONE)]


def test_an_empty_workspace_finds_nothing() -> None:
    assert KnownPeople().find({"text": "Ava Smith, ava.smith1@example.com"}) == []
    assert len(KnownPeople.from_frame(pd.DataFrame({"plan": ["pro"]}))) == 0


def test_workspace_people_come_from_the_customers_cache_and_follow_a_new_pull(tmp_path) -> None:
    people = WorkspacePeople(tmp_path)
    assert people.current().find("Ava Smith") == []  # nobody pulled yet
    entry = Cache(tmp_path).entry("customers", {"segment_id": None}, 1)
    entry.begin()
    entry.write_part("part-00000", _people().astype({"first_name": object, "last_name": object}))
    entry.complete()
    first = people.current()
    assert first.people == 4 and first.find("Ava Smith") == [("$", NAME)]
    assert people.current() is first  # built once while the cache is unchanged
    segment = Cache(tmp_path).entry("customers", {"segment_id": 21}, 1)
    segment.begin()
    segment.write_part("part-00000", pd.DataFrame({"cio_id": ["b9000001"], "first_name": ["Grace"],
                                                   "last_name": ["Hopper"]}))
    segment.complete()
    assert people.current().find("grace hopper") == [("$", NAME)]


def test_an_unreadable_cache_part_is_skipped_not_fatal(tmp_path) -> None:
    entry = Cache(tmp_path).entry("customers", {"segment_id": None}, 1)
    entry.begin()
    entry.write_part("part-00000", _people().astype({"first_name": object, "last_name": object}))
    entry.write_part("part-00001", pd.DataFrame({"cio_id": ["b9000001"]}))
    entry.complete()
    (entry.path / "part-00001.parquet").write_bytes(b"not parquet")
    assert KnownPeople.from_cache(tmp_path).find("Ava Smith") == [("$", NAME)]
