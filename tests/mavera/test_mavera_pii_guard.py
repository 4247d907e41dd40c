"""The PII guard in the metered core: the workspace's own people are refused before any request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pandas as pd
import pytest

from cio_mavera import datasets
from cio_mavera.connect import Connection
from cio_mavera.jobs.context import RunContext
from cio_mavera.mavera.budget import CreditBudget
from cio_mavera.mavera.client import MaveraClient
from cio_mavera.mavera.errors import PiiBlocked
from cio_mavera.sandbox.server import SandboxServer


def _mavera_requests(server: SandboxServer) -> list[dict[str, Any]]:
    log = httpx.get(f"{server.url}/__sandbox__/requests").json()["requests"]
    return [r for r in log if r["path"].startswith("/mavera")]


@pytest.fixture
def make_client(connection: Connection) -> Callable[..., MaveraClient]:
    made: list[MaveraClient] = []

    def make(**kwargs: Any) -> MaveraClient:
        client = MaveraClient(connection, run_id="run-pii", job="test", **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def customers(connection: Connection) -> pd.DataFrame:
    """The sandbox's people, pulled into the connection's cache (as job 2 or a `pull` would)."""
    return datasets.customers(connection, via="api")


def _someone(customers: pd.DataFrame) -> pd.Series:
    has_all = customers[["id", "email", "phone", "first_name", "last_name"]].notna().all(axis=1)
    return customers[has_all].iloc[7]


def _forms(person: pd.Series) -> dict[str, str]:
    national = str(person["phone"])[-9:]
    local, _, domain = str(person["email"]).partition("@")
    return {
        "a customer's full name": f"Draft a thank-you note to {person['first_name']} {str(person['last_name']).upper()}.",
        "a customer's email": f"Loop in {local} (at) {domain.replace('.', ' dot ')}",
        "a customer's phone number": f"Call them back on 0{national[0]} {national[1:3]} {national[3:5]} {national[5:]}",
        "a customer's id": f"What does {person['id']} think of the new plan?",
        "a customer's cio_id": f"Summarise the journey of {person['cio_id']}.",
    }


def test_a_payload_naming_one_of_the_workspace_s_people_never_reaches_mavera(
        make_client, customers, sandbox) -> None:
    person = _someone(customers)
    client = make_client()
    before = len(_mavera_requests(sandbox))
    for kind, text in _forms(person).items():
        with pytest.raises(PiiBlocked) as caught:
            client.chat.create([{"role": "system", "content": "You write copy."},
                                {"role": "user", "content": text}])
        message = str(caught.value)
        assert f"$.messages[1].content: {kind}" in message
        for value in (person["first_name"], person["last_name"], person["email"], person["id"],
                      person["cio_id"], str(person["phone"])[-6:]):
            assert str(value) not in message and str(value).lower() not in message.lower()
    assert len(_mavera_requests(sandbox)) == before  # nothing was sent
    assert client.credits_spent() == 0


def test_the_workspace_s_people_are_refused_in_every_resource_and_in_query_strings(
        make_client, customers, sandbox) -> None:
    person = _someone(customers)
    name = f"{person['first_name']} {person['last_name']}"
    client = make_client()
    before = len(_mavera_requests(sandbox))
    with pytest.raises(PiiBlocked, match="description: a customer's full name"):
        client.personas.ensure("Loyal customers", description=f"Customers like {name}")
    with pytest.raises(PiiBlocked, match="a customer's cio_id"):
        client.mave.chat(f"Why did {person['cio_id']} unsubscribe?")
    with pytest.raises(PiiBlocked, match=r"\$\.query\.q: a customer's full name"):
        client.call("search", "GET", "/personas", params={"q": name})
    assert all(r["method"] == "GET" for r in _mavera_requests(sandbox)[before:])  # lookups only


def test_aggregates_and_copy_pass_with_the_people_loaded(make_client, customers, sandbox) -> None:
    client = make_client()
    description = ("B2B persona for an audience of business buyers and users, built by cio-mavera from "
                   "aggregated Customer.io attributes (no individual's data). Audience cluster 2 of 4: "
                   "1,204 customers (24.1%). Compared with all customers: plan enterprise (x3.2); high "
                   "seats (median 412 vs 15). Also typical: logins 30d 12, country US.")
    answer = client.chat.create(f"Score this subject line for: {description} -- 'Welcome to "
                                "Tallyfold, let's set up your first board' (sent 2026-03-20, 12,345 "
                                "deliveries, click rate 3.5% vs 4.1%, campaign 12 action 345)")
    assert answer.content


def test_without_pulled_customers_the_pattern_guard_still_applies(make_client, connection, sandbox) -> None:
    client = make_client()
    assert client.people.current().people == 0
    client.chat.create("Write a note to Ava Smith")  # a name alone is not a pattern
    with pytest.raises(PiiBlocked, match="email"):
        client.chat.create("Write to ava.smith1 (at) example.com")


def test_a_run_context_builds_the_people_once_and_keeps_them_for_a_reopened_client(
        connection, customers, sandbox) -> None:
    run = RunContext(job="test", connection=connection, budget=CreditBudget(100), run_id="run-ctx")
    first = run.mavera
    assert first.people is run.people
    known = run.people.current()
    assert known.people == len(customers)
    run.close()
    assert run.mavera is not first and run.mavera.people is run.people
    assert run.people.current() is known
    run.close()
