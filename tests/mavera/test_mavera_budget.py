"""CreditBudget: worst-case reservations refuse calls before they are sent, actual costs settle after."""

from __future__ import annotations

import threading

import pytest

from cio_mavera.errors import BudgetExceeded
from cio_mavera.mavera.budget import DEFAULT_WORST_CASE, CreditBudget


def test_budget_refuses_a_call_whose_worst_case_exceeds_what_remains() -> None:
    budget = CreditBudget(100)
    with pytest.raises(BudgetExceeded) as caught:
        budget.reserve("focus_group", "score 5 variations")
    assert caught.value.needed == 200
    assert caught.value.remaining == 100
    assert "max_credits" in str(caught.value)
    assert [(s.kind, s.what, s.needed) for s in budget.skipped] == [
        ("focus_group", "score 5 variations", 200)]
    assert budget.spent == 0 and budget.remaining == 100


def test_settle_replaces_the_reservation_with_the_actual_cost() -> None:
    budget = CreditBudget(100)
    held = budget.reserve("mave")
    assert budget.remaining == 25
    budget.settle(held, 18)
    assert (budget.spent, budget.reserved, budget.remaining) == (18, 0, 82)


def test_release_returns_the_reservation_when_nothing_was_charged() -> None:
    budget = CreditBudget(10)
    held = budget.reserve("chat")
    budget.release(held)
    assert (budget.spent, budget.remaining) == (0, 10)


def test_reservations_in_flight_count_against_the_remaining_budget() -> None:
    budget = CreditBudget(12)
    budget.reserve("chat")
    budget.reserve("chat")
    with pytest.raises(BudgetExceeded):
        budget.reserve("chat")  # 10 held, 2 left: a third call could cost 5


def test_worst_case_costs_are_configurable_per_kind() -> None:
    budget = CreditBudget(500, worst_case={"focus_group": 500})
    assert budget.cost("focus_group") == 500
    assert budget.cost("persona") == DEFAULT_WORST_CASE["persona"]
    with pytest.raises(KeyError, match="worst_case"):
        budget.cost("video_analysis")


def test_concurrent_reservations_never_overrun_max_credits() -> None:
    budget = CreditBudget(1000)
    granted: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(50):
            try:
                held = budget.reserve("mave")
            except BudgetExceeded:
                continue
            budget.settle(held, 75)  # every call costs its worst case
            with lock:
                granted.append(75)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == budget.spent <= 1000
    assert len(granted) == 1000 // 75
    assert len(budget.skipped) == 8 * 50 - len(granted)


def test_summary_lists_skipped_calls_for_the_report() -> None:
    budget = CreditBudget(50)
    with pytest.raises(BudgetExceeded):
        budget.reserve("persona", "persona 'Bargain hunters'")
    summary = budget.summary()
    assert summary["remaining"] == 50
    assert summary["skipped"][0]["what"] == "persona 'Bargain hunters'"
    assert "300" in summary["skipped"][0]["reason"]
