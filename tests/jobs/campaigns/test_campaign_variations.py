"""Job 1's generation step: messy generated copy parsed, one Generate call per variation, credits."""

from __future__ import annotations

import pytest

from cio_mavera.connect import Connection
from cio_mavera.jobs import campaigns as cm
from cio_mavera.jobs.context import RunContext
from cio_mavera.mavera.budget import CreditBudget
from cio_mavera.mavera.client import MaveraClient

MESSY = {
    "chatty email": (
        "Sure! Here's a fresh version of your email:\n\n"
        "**Subject line:** “Your spring checklist is ready”\n"
        "**Preview text:** Three things to do before Friday.\n\n---\n\n"
        "Hi {{customer.first_name}},\n\nSpring is busy. We made a list so you don't have to.\n\n"
        "**[Open the checklist →](https://example.com)**\n\nCheers,\nThe team\n\n"
        "Let me know if you'd like a different tone!",
        ("Your spring checklist is ready", "Three things to do before Friday.",
         ["Spring is busy.", "We made a list so you don't have to.", "Open the checklist"])),
    "several options": (
        "Here are three options:\n\n### Option 1: Lead with the benefit\n\n"
        "Subject: 'Save two hours a week'\nPreheader: Reports that build themselves.\n\n"
        "Body:\n- Your Monday report, done by 9am.\n- CTA: Try it free\n\n"
        "### Option 2: Social proof\n\nSubject: Join 10,000 teams\n",
        ("Save two hours a week", "Reports that build themselves.",
         ["Your Monday report, done by 9am.", "Try it free"])),
    "heading and italic": (
        "# The spring guide we wish we had\n\n_A short note about spring._\n\n"
        "Everything in one place. Nothing to install.",
        ("The spring guide we wish we had", "A short note about spring.",
         ["Everything in one place.", "Nothing to install."])),
    "numbered with stray quote": (
        '1. **Subject:** "Last call: 20% off\n   **Preheader:** Ends at midnight.\n\nShop the sale.',
        ("Last call: 20% off", "Ends at midnight.", ["Shop the sale."])),
    "bare quoted line": ("“Your cart misses you”", ("Your cart misses you", "", [])),
}


@pytest.mark.parametrize("name", list(MESSY))
def test_messy_generated_copy_parses_into_subject_preheader_and_outline(name: str) -> None:
    text, expected = MESSY[name]
    assert cm.parse_variation(text, "email") == expected


def test_sms_copy_keeps_every_line_as_body_even_when_labelled() -> None:
    text = "Sure! Here's an SMS:\n\nSubject: Finish upgrading\nOne tap left. Reply STOP to opt out."
    assert cm.parse_variation(text, "twilio") == (
        "", "", ["Finish upgrading", "One tap left.", "Reply STOP to opt out."])


MESSAGE = {"action_id": 41, "channel": "email", "name": "Welcome 2", "subject": "Get started",
           "body": "<p>Welcome aboard.</p>", "metrics": ["human_open_rate"]}
STRATEGY = cm.Strategy("Lead with the outcome.", ["Lead with the outcome."], [], None, 0)


def _generate(connection: Connection, budget: CreditBudget, run_id: str, n: int = 3):
    with MaveraClient(connection, run_id=run_id, job=cm.JOB, budget=budget) as client:
        run = RunContext.around(client, job=cm.JOB)
        drafts = cm.generate_variations(run, MESSAGE, STRATEGY, n)
        rows = client.ledger.frame(run_id)
    return drafts, run, rows


def test_n_variations_are_n_generate_calls_with_distinct_requests(connection, sandbox) -> None:
    budget = CreditBudget(500)
    drafts, run, rows = _generate(connection, budget, "gen-first")
    sent = [r["json"] for r in sandbox.state.request_log if r["path"].endswith("/generations")]
    assert len(sent) == 3 and all("n" not in body for body in sent)
    assert len({str(body["input_data"]) for body in sent}) == 3
    assert [d.variation_id for d in drafts] == ["A", "B", "C"] and run.skipped == []
    assert all(d.subject and "\n" not in d.subject and "**" not in d.subject for d in drafts)
    generations = rows[rows["endpoint"] == "generations"]
    charged = sandbox.state.stats.as_json()["credits_charged"]
    assert len(generations) == 3 and generations["credits"].sum() == charged == budget.spent
    assert budget.reserved == 0


def test_a_rerun_of_the_variations_spends_nothing_and_sends_nothing(connection, sandbox) -> None:
    first, _, _ = _generate(connection, CreditBudget(500), "gen-one")
    before = sandbox.state.stats.as_json()
    budget = CreditBudget(500)
    again, _, rows = _generate(connection, budget, "gen-two")
    assert again == first
    assert sandbox.state.stats.as_json()["requests_total"] == before["requests_total"]
    assert budget.spent == 0 and rows["cached"].all() and rows["credits"].sum() == 0


def test_a_refused_call_keeps_the_variations_already_made(connection, sandbox) -> None:
    # A call reserves its worst case (30) and costs 10-15: two fit in 45, a third does not.
    drafts, run, rows = _generate(connection, CreditBudget(45, worst_case={"generation": 30}),
                                  "gen-refused")
    assert [d.variation_id for d in drafts] == ["A", "B"]
    assert [(s.step, s.what) for s in run.skipped] == [("generate", "1 of 3 variations of message 41")]
    assert len(rows[rows["endpoint"] == "generations"]) == 2
