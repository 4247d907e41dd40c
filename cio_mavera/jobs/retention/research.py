"""Job 3 research: one Mave research request per trigger, deduplicated by a persisted cooldown.

Each trigger becomes a prompt built from aggregates only (counts, rates, baselines, plan mix, the
audience cluster's name and shares) and checked with `assert_no_pii` before it leaves. A SQLite state
file under `<data dir>/research/<mode>/<workspace>/` records when each trigger key was last asked:
a key is claimed atomically before the call (so two workers, or a restarted one, never ask twice
within the cooldown) and released again when the call is refused by the budget or fails. Briefs are
stored as JSON files beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cio_mavera.connect import Connection
from cio_mavera.errors import ApiError, BudgetExceeded, CreditsExhausted, InvalidParameter
from cio_mavera.jobs.context import RunContext
from cio_mavera.jobs.retention.triggers import Trigger
from cio_mavera.pii import assert_no_pii

__all__ = ["Brief", "CooldownStore", "load_briefs", "research_dir", "research_prompt", "research_triggers"]

METRIC_WORDS = {"opt_out": "unsubscribe and spam-complaint rate", "unsubscribed": "unsubscribe rate",
                "spammed": "spam-complaint rate",
                "churn": "churn-signal rate (unsubscribes, spam complaints, hard bounces)"}


@dataclass
class Brief:
    """The research for one trigger: Mave's answer, or why there is none this time."""

    key: str
    status: str  # "asked", "cooldown" (an earlier brief within the cooldown), "skipped" (budget), "failed"
    trigger: dict[str, Any]
    prompt: str = ""
    content: str = ""
    sources: list[dict[str, Any]] = field(default_factory=list)
    confidence: float | None = None
    personas_used: list[str] = field(default_factory=list)
    thread_id: str | None = None
    credits: int = 0
    cached: bool = False
    asked_at: str | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def research_dir(conn: Connection) -> Path:
    """`<data dir>/research/<mode>/<workspace>`: sandbox and live research never mix."""
    return conn.settings.data_dir / "research" / conn.mode / conn.workspace


class CooldownStore:
    """When each trigger key was last asked (SQLite, WAL), with an atomic claim before asking."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "state.sqlite3"
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS asks (key TEXT PRIMARY KEY, asked_at REAL NOT NULL, "
                       "status TEXT NOT NULL, brief TEXT)")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            yield db
        finally:
            db.close()

    def last(self, key: str) -> dict[str, Any] | None:
        """The latest ask of `key` (asked_at, status, brief path), or None."""
        with self._connect() as db:
            row = db.execute("SELECT asked_at, status, brief FROM asks WHERE key = ?", (key,)).fetchone()
        return None if row is None else {"asked_at": row[0], "status": row[1], "brief": row[2]}

    def claim(self, key: str, cooldown_s: float, now: float | None = None) -> tuple[bool, dict[str, Any] | None]:
        """(True, previous) when `key` may be asked now (and is marked as being asked), else (False, last)."""
        now = time.time() if now is None else now
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")  # one claimer at a time across processes
            try:
                row = db.execute("SELECT asked_at, status, brief FROM asks WHERE key = ?", (key,)).fetchone()
                previous = None if row is None else {"asked_at": row[0], "status": row[1], "brief": row[2]}
                if previous is not None and now - previous["asked_at"] < cooldown_s:
                    db.execute("COMMIT")
                    return False, previous
                db.execute("INSERT INTO asks (key, asked_at, status, brief) VALUES (?, ?, 'asking', NULL) "
                           "ON CONFLICT(key) DO UPDATE SET asked_at = excluded.asked_at, status = 'asking'",
                           (key, now))
                db.execute("COMMIT")
                return True, previous
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def complete(self, key: str, brief_path: Path) -> None:
        """Record that `key` was asked and where its brief is."""
        with self._connect() as db:
            db.execute("UPDATE asks SET status = 'asked', brief = ? WHERE key = ?", (str(brief_path), key))

    def release(self, key: str, previous: dict[str, Any] | None) -> None:
        """Undo a claim whose call did not happen (budget, error), restoring the earlier ask if any."""
        with self._connect() as db:
            if previous is None:
                db.execute("DELETE FROM asks WHERE key = ?", (key,))
            else:
                db.execute("UPDATE asks SET asked_at = ?, status = ?, brief = ? WHERE key = ?",
                           (previous["asked_at"], previous["status"], previous["brief"], key))


def _pct(x: float) -> str:
    return f"{x * 100:.2f}%"


def research_prompt(trigger: Trigger, *, campaign_name: str | None = None) -> str:
    """The Mave request for `trigger`: aggregates only, never a person."""
    what = METRIC_WORDS.get(trigger.metric, trigger.metric)
    when = (f"{trigger.window_start:%Y-%m-%d %H:%M} to {trigger.window_end:%Y-%m-%d %H:%M} UTC")
    audience = trigger.audience or {}
    plans = ", ".join(f"{plan}: {n}" for plan, n in sorted(audience.get("plans", {}).items(), key=lambda kv: -kv[1]))
    if trigger.kind == "campaign":
        subject = f"campaign {trigger.campaign_id}" + (f' ("{campaign_name}")' if campaign_name else "")
        scope = (f" among recipients in the audience segment \"{trigger.cluster_name}\"" if trigger.series == "cluster"
                 and trigger.cluster_name else "")
        lines = [f"Retention research request. The {what} of lifecycle {subject}{scope} spiked between {when}: "
                 f"{trigger.count} events from {trigger.exposure} delivered messages ({_pct(trigger.rate)}), "
                 f"against a normal {_pct(trigger.baseline)} for this campaign "
                 f"(about {trigger.ratio:.0f}x; adjusted p = {trigger.p_adjusted:.1g})."]
        top = next(iter(audience.get("clusters", [])), None)
        if top and top.get("events"):
            lines.append(f"{top['event_share']:.0%} of these events came from the audience segment "
                         f"\"{top['cluster_name']}\", which received {top['exposure_share']:.0%} of the messages.")
    else:
        lines = [f"Retention research request. Among customers on valuable plans in the audience segment "
                 f"\"{trigger.cluster_name}\", the {what} spiked between {when}: {trigger.count} signals from "
                 f"{trigger.exposure} messages sent ({_pct(trigger.rate)}) against a normal "
                 f"{_pct(trigger.baseline)} for this segment (adjusted p = {trigger.p_adjusted:.1g})."]
    if plans:
        lines.append(f"Plans of the people involved (counts): {plans}.")
    lines.append("Research the most likely causes (message content, frequency, timing, audience fit, "
                 "deliverability), what similar SaaS companies do to win such customers back, and give three "
                 "prioritised actions for the retention team, each with how to measure it.")
    return " ".join(lines)


def _brief_path(directory: Path, key: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", key).strip("-")
    return directory / "briefs" / f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{slug}-{os.getpid()}.json"


def _save(brief: Brief, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(brief.to_dict(), indent=2, default=str))
    os.replace(tmp, path)
    return path


def _read(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def research_triggers(run: RunContext, triggers: Sequence[Trigger], *, directory: str | Path,
                      cooldown_hours: float = 24, campaign_names: Mapping[int, str] | None = None,
                      now: float | None = None) -> list[Brief]:
    """One Mave request per trigger outside its key's cooldown; a Brief for every trigger either way."""
    if cooldown_hours < 0:
        raise InvalidParameter(f"cooldown_hours must be >= 0, got {cooldown_hours}")
    directory = Path(directory)
    store = CooldownStore(directory)
    names = dict(campaign_names or {})
    briefs = []
    for trigger in triggers:
        prompt = research_prompt(trigger, campaign_name=names.get(trigger.campaign_id or -1))
        assert_no_pii(prompt, what=f"the Mave research request for {trigger.key}")
        info = trigger.to_dict()
        claimed, previous = store.claim(trigger.key, cooldown_hours * 3600, now)
        if not claimed:
            earlier = _read(previous.get("brief") if previous else None) or {}
            asked = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(previous["asked_at"])) if previous else "?"
            briefs.append(Brief(**{**_brief_fields(earlier), "key": trigger.key, "status": "cooldown",
                                   "trigger": info, "credits": 0, "cached": True,
                                   "reason": f"asked at {asked}, within the {cooldown_hours:g} h cooldown"}))
            continue
        try:
            answer = run.mavera.mave.chat(prompt)
        except (BudgetExceeded, CreditsExhausted) as exc:
            store.release(trigger.key, previous)
            run.skip("research", trigger.key, exc)
            briefs.append(Brief(trigger.key, "skipped", info, prompt, reason=str(exc)))
            continue
        except ApiError as exc:  # a failed call is reported; the key stays askable
            store.release(trigger.key, previous)
            run.skip("research", trigger.key, f"failed: {exc}")
            briefs.append(Brief(trigger.key, "failed", info, prompt, reason=str(exc)))
            continue
        except BaseException:
            store.release(trigger.key, previous)
            raise
        validation = answer.validation or {}
        brief = Brief(trigger.key, "asked", info, prompt, content=answer.content, sources=list(answer.sources),
                      confidence=validation.get("confidence_score"),
                      personas_used=[str(p.get("name", p)) if isinstance(p, dict) else str(p)
                                     for p in answer.personas_used],
                      thread_id=answer.thread_id, credits=int(answer.credits), cached=bool(answer.cached),
                      asked_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now or time.time())))
        store.complete(trigger.key, _save(brief, _brief_path(directory, trigger.key)))
        briefs.append(brief)
    return briefs


def _brief_fields(saved: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("prompt", "content", "sources", "confidence", "personas_used", "thread_id", "asked_at")
    return {k: saved[k] for k in keep if k in saved}


def load_briefs(directory: str | Path) -> pd.DataFrame:
    """Every stored brief under `directory` (newest first)."""
    files = sorted((Path(directory) / "briefs").glob("*.json"), reverse=True)
    rows = [r for r in (_read(str(f)) for f in files) if r]
    return pd.DataFrame(rows)
