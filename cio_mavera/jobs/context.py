"""One run context for a notebook or a job: connection, run id, budget, Mavera client, skips.

A notebook opens it in one line (`run = open_run(JOB, parameters)`) and hands `run` to every step
that talks to Mavera. The Mavera client is opened on first use and stays open for the life of the
context, so re-running any cell in JupyterLab works; it is closed (and the credits ledger flushed)
when the kernel exits or `close()` is called, and reopened if a later cell needs it again. Its PII
guard checks every payload against the workspace's own people (`people`: the connection's customers
cache, indexed on the first call and again after a pull, kept across reopened clients).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cio_mavera.changes import compare, previous_results
from cio_mavera.connect import Connection, connect
from cio_mavera.jobs.credits import SkippedStep, credits_section, skip_reason
from cio_mavera.known_people import WorkspacePeople
from cio_mavera.mavera import CreditBudget, MaveraClient
from cio_mavera.run_results import current_run, write_results
from cio_mavera.settings import PROJECT_ROOT

DEFAULT_MAX_CREDITS = 1000
DEFAULT_REPORTS_DIR = PROJECT_ROOT / "reports"  # where `cio-mavera run` writes unless told --out


@dataclass
class RunContext:
    """Everything one run's steps share; build it with `open_run` (or `around` for a given client)."""

    job: str
    connection: Connection | None
    budget: CreditBudget
    run_id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    refresh: bool = False
    skipped: list[SkippedStep] = field(default_factory=list)
    _client: MaveraClient | None = field(default=None, repr=False)
    _people: WorkspacePeople | None = field(default=None, repr=False)
    _owns_client: bool = field(default=True, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def around(cls, client: Any, *, job: str = "", budget: CreditBudget | None = None) -> RunContext:
        """A context for a client the caller made (and closes): scripts, tests, the worker."""
        budget = budget or getattr(client, "budget", None) or CreditBudget(DEFAULT_MAX_CREDITS)
        return cls(job=job, connection=getattr(client, "connection", None), budget=budget,
                   run_id=getattr(client, "run_id", None), _client=client, _owns_client=False)

    @property
    def mode(self) -> str:
        return self.connection.mode if self.connection is not None else "unknown"

    @property
    def mavera(self) -> MaveraClient:
        """The run's Mavera client: opened on first use, reopened after `close()`."""
        with self._lock:
            if self._client is None:
                if self.connection is None:
                    raise RuntimeError("this run context has no connection to open a Mavera client on")
                self._client = MaveraClient(self.connection, run_id=self.run_id, job=self.job,
                                            budget=self.budget, refresh=self.refresh,
                                            people=self.people)
                self.run_id = self._client.run_id
                weakref.finalize(self, _close_quietly, self._client)
            return self._client

    @property
    def people(self) -> WorkspacePeople:
        """The workspace's people the PII guard checks payloads against (from the customers cache)."""
        if self._people is None:
            if self.connection is None:
                raise RuntimeError("this run context has no connection whose customers to check")
            self._people = WorkspacePeople(self.connection.cache_dir)
        return self._people

    def skip(self, step: str, what: str, reason: Exception | str) -> None:
        """Record a call that was not made; a re-run cell replaces its earlier entry."""
        text = reason if isinstance(reason, str) else skip_reason(reason)
        self.skipped[:] = [s for s in self.skipped if (s.step, s.what) != (step, what)]
        self.skipped.append(SkippedStep(step, what, text))

    def credits_spent(self) -> int:
        """Credits this run has spent so far (0 when no Mavera call was made)."""
        if self._client is None:
            return int(self.budget.spent)
        return int(self._client.credits_spent())

    def mavera_stats(self) -> dict[str, Any]:
        """Requests, retries and cache hits of the run's Mavera client (empty if none was opened)."""
        return dict(self._client.stats) if self._client is not None else {}

    def credits_markdown(self, *, bought: str = "", notes: tuple[str, ...] = ()) -> str:
        """The report's credits section for this run."""
        return credits_section(self.budget.summary(), self.skipped, bought=bought, notes=notes,
                               cache_hits=self.mavera_stats().get("cache_hits"))

    def results_footer(self) -> dict[str, Any]:
        """What every job's results.json ends with: where it ran, credits, the budget, skipped calls,
        parameters."""
        return {"mode": self.mode,
                "workspace": self.connection.workspace if self.connection is not None else None,
                "credits_spent": int(self.budget.spent), "credits": self.budget.summary(),
                "skipped": [asdict(s) for s in self.skipped], "parameters": dict(self.parameters)}

    def with_changes(self, results: Mapping[str, Any]) -> dict[str, Any]:
        """`results` plus `changes`: what is new since the previous run of the same job, parameters
        and workspace (found among the finished runs in the reports directory)."""
        run = current_run()
        reports_dir = Path(run["run_dir"]).parents[1] if run["run_dir"] else DEFAULT_REPORTS_DIR
        current = {**results, "job": self.job, "run_id": run["run_id"]}
        return {**results, "changes": compare(previous_results(reports_dir, current), current)}

    def write_results(self, results: Mapping[str, Any]) -> Any:
        """results.json for this run (inside the runner; returns None elsewhere)."""
        return write_results(results, parameters=self.parameters)

    def close(self) -> None:
        """Flush the credits ledger; close the Mavera client if this context opened it."""
        if not self._owns_client:
            ledger = getattr(self._client, "ledger", None)
            if ledger is not None:
                ledger.flush()
            return
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _close_quietly(client: MaveraClient) -> None:
    with contextlib.suppress(Exception):  # closing at interpreter exit must never raise
        client.close()


def open_run(job: str, parameters: Mapping[str, Any] | None = None, *,
             needs: tuple[str, ...] = ("customerio", "mavera"), max_credits: int | None = None,
             refresh: bool | None = None) -> RunContext:
    """Connect (live or sandbox) and open the context a job's notebook runs in.

    `max_credits` and `refresh` default to the parameters of the same name.
    """
    params = dict(parameters or {})
    budget = CreditBudget(int(max_credits if max_credits is not None
                              else params.get("max_credits", DEFAULT_MAX_CREDITS)))
    run = RunContext(job=job, connection=connect(*needs), budget=budget,
                     run_id=current_run()["run_id"], parameters=params,
                     refresh=bool(refresh if refresh is not None else params.get("refresh", False)))
    return run
