"""Batch runs: a list or grid of jobs, one credit budget, failures isolated, done runs skipped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PINNED_END

from cio_mavera.batch import CreditPool, Outcome, load_batch, run_batch
from cio_mavera.errors import InvalidParameter
from cio_mavera.settings import PROJECT_ROOT


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "batch.yaml"
    path.write_text(text)
    return path


def test_a_grid_expands_to_one_checked_run_per_combination(tmp_path):
    planned, budget = load_batch(_write(tmp_path, """
max_credits: 3000
runs:
  - job: campaign-messaging
    parameters: {days: 14}
    matrix: {channel: [email, push, sms]}
  - job: attribute-personas
    parameters: {segment_id: 21}
"""))
    assert budget == 3000
    assert [(p.job, p.parameters) for p in planned] == [
        ("campaign-messaging", {"days": 14, "channel": "email"}),
        ("campaign-messaging", {"days": 14, "channel": "push"}),
        ("campaign-messaging", {"days": 14, "channel": "sms"}),
        ("attribute-personas", {"segment_id": 21}),
    ]
    assert len({p.key for p in planned}) == 4


@pytest.mark.parametrize(("text", "says"), [
    ("runs:\n  - job: nope\n", "unknown job 'nope'"),
    ("runs:\n  - job: campaign-messaging\n    parameters: {days: abc}\n", "run 1: campaign-messaging: days"),
    ("runs:\n  - job: campaign-messaging\n    environment: {MAVERA_API_KEY: x}\n", "keys come from .env"),
    ("runs:\n  - job: campaign-messaging\n  - job: campaign-messaging\n", "listed twice"),
    ("jobs: []\n", "needs a 'runs:' list"),
    ("runs:\n  - job: campaign-messaging\n    matrix: {days: 7}\n", "non-empty list"),
])
def test_a_bad_batch_file_is_refused_before_any_run(tmp_path, text, says):
    with pytest.raises(InvalidParameter, match=says):
        load_batch(_write(tmp_path, text))


def _fake(fail: set[str], spend: dict[str, int], granted_log: list[int]):
    """An in-process stand-in for `cio-mavera run` that writes results.json like a real run."""
    counter = iter(range(1000))

    def execute(run, granted, reports_dir, say):
        granted_log.append(granted)
        run_id = f"20260101T000000Z-{next(counter):04x}"
        if run.parameters.get("channel") in fail:
            return Outcome(run, "failed", run_id, error="cell 3 raised JobInputError")
        spent = min(granted, spend.get(run.parameters.get("channel"), 0))
        folder = reports_dir / run.job / run_id
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps({"credits_spent": spent}))
        return Outcome(run, "succeeded", run_id, credits=spent)

    return execute


def test_one_budget_failures_isolated_and_a_rerun_skips_what_is_done(tmp_path):
    planned, _ = load_batch(_write(tmp_path, """
runs:
  - job: campaign-messaging
    parameters: {max_credits: 1000}
    matrix: {channel: [email, push, sms]}
"""))
    granted: list[int] = []
    execute = _fake(fail={"push"}, spend={"email": 900, "sms": 50}, granted_log=granted)
    result = run_batch(planned, max_credits=1500, out_dir=tmp_path / "reports", parallel=1,
                       say=lambda _: None, execute=execute)
    assert [o.status for o in result.outcomes] == ["succeeded", "failed", "succeeded"]
    assert granted == [1000, 600, 600]  # 1500 - 900 spent; the failed run gave its grant back
    assert result.credits_spent == 950 <= 1500

    granted.clear()
    again = run_batch(planned, max_credits=1500, out_dir=tmp_path / "reports", parallel=1,
                      say=lambda _: None, execute=execute)
    assert [o.status for o in again.outcomes] == ["skipped", "failed", "skipped"]
    assert granted == [1000]  # only the failed run ran again


def test_the_pool_never_grants_more_than_is_left_with_runs_in_flight():
    pool = CreditPool(1000)
    first, second, third = pool.reserve(600), pool.reserve(600), pool.reserve(600)
    assert (first, second, third) == (600, 400, 0)
    pool.settle(first, 100)
    assert pool.reserve(600) == 500


@pytest.mark.notebook
@pytest.mark.slow
def test_the_batch_command_runs_real_jobs_and_exits_non_zero_when_one_fails(tmp_path):
    batch = _write(tmp_path, """
runs:
  - job: campaign-messaging
    parameters: {max_underperformers: 0, max_credits: 100}
    matrix: {campaign_ids: [[], [999999]]}
""")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CIO_MAVERA_MODE": "sandbox",
           "CIO_MAVERA_SANDBOX_CUSTOMERS": "300", "CIO_MAVERA_DATA_DIR": str(tmp_path / "data"),
           **PINNED_END}
    command = [sys.executable, "-m", "cio_mavera.cli", "batch", str(batch), "--out",
               str(tmp_path / "reports")]
    first = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 1, first.stdout + first.stderr
    record = json.loads((tmp_path / "reports" / "batch.json").read_text())
    assert [r["status"] for r in record["runs"]] == ["succeeded", "failed"]
    assert "not in this workspace" in record["runs"][1]["error"]
    assert "batch: 1 succeeded, 0 skipped, 1 failed" in first.stdout
    index = (tmp_path / "reports" / "index.html").read_text()
    assert index.count("failed") >= 1 and record["runs"][0]["run_id"] in index

    second = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 1
    assert "batch: 0 succeeded, 1 skipped, 1 failed" in second.stdout
