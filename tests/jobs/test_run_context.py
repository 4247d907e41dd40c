"""The run context a notebook opens once: survives re-running cells, records skips, renders credits."""

from __future__ import annotations

from cio_mavera.errors import BudgetExceeded
from cio_mavera.jobs import campaigns as cm
from cio_mavera.jobs.context import RunContext
from cio_mavera.jobs.credits import SkippedStep, credits_section
from cio_mavera.mavera import CreditBudget


def test_the_mavera_client_reopens_after_close_so_a_rerun_cell_still_works(connection, sandbox):
    run = RunContext(job=cm.JOB, connection=connection, budget=CreditBudget(100))
    first = run.mavera
    assert run.mavera is first  # one client for every cell
    first_answer = run.mavera.chat.create("hello")
    run.close()  # e.g. the end of a notebook, then the reader re-runs a cell
    again = run.mavera.chat.create("hello again")
    assert run.mavera is not first
    assert first_answer.content and again.content
    assert run.budget.spent == first_answer.credits + again.credits > 0
    run.close()


def test_a_rerun_step_replaces_its_skip_instead_of_listing_it_twice():
    run = RunContext(job=cm.JOB, connection=None, budget=CreditBudget(0))
    refused = BudgetExceeded("refused", needed=75, remaining=0)
    run.skip("strategy", "Mave diagnosis", refused)
    run.skip("strategy", "Mave diagnosis", refused)
    run.skip("generate", "3 variations of message 7", "no credits")
    assert [s.step for s in run.skipped] == ["strategy", "generate"]
    assert run.skipped[0].reason.startswith("over budget: could cost up to 75 credits")


def test_a_context_around_a_given_client_never_closes_it():
    class Client:
        budget = CreditBudget(10)
        closed = False

        def close(self) -> None:
            self.closed = True

    client = Client()
    run = RunContext.around(client, job="x")
    assert run.mavera is client and run.budget is client.budget
    run.close()
    assert not client.closed


def test_results_end_with_credits_skips_and_parameters():
    run = RunContext(job=cm.JOB, connection=None, budget=CreditBudget(50), parameters={"days": 7})
    run.skip("score", "message 3 variation A", "over budget")
    footer = run.results_footer()
    assert footer["credits_spent"] == 0 and footer["credits"]["max_credits"] == 50
    assert footer["skipped"] == [{"step": "score", "what": "message 3 variation A",
                                  "reason": "over budget"}]
    assert footer["parameters"] == {"days": 7}


def test_the_credits_section_lists_every_skip_or_says_none():
    summary = {"spent": 120, "max_credits": 600, "remaining": 480}
    text = credits_section(summary, [SkippedStep("research", "campaign:3:opt_out", "over budget")],
                           bought="on 2 Mave request(s)", notes=("1 trigger(s) reused a brief.",),
                           cache_hits=4)
    assert text.startswith("Spent **120 of 600 credits** this run on 2 Mave request(s) (480 left).")
    assert "4 Mavera answer(s) came from the local cache" in text and "reused a brief" in text
    assert "**1 call(s) skipped**" in text and "- research: campaign:3:opt\\_out — over budget" in text
    assert credits_section(summary, []).endswith("Nothing was skipped.")
