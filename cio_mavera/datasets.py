"""Tidy DataFrames of Customer.io data, pulled through the parquet cache.

Each function returns the cached data when it is complete and fresh enough, otherwise pulls it
(resuming an interrupted pull) and caches it. `df.attrs["pulled_at"]` (or `cache.pulled_at(df)`)
says when the data left Customer.io; `df.attrs["requests"]` how many requests this call made.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import timedelta
from typing import Any

import pandas as pd

from .cache import Cache, CacheEntry, MaxAge, pulled_at
from .connect import Connection, connect
from .customerio.app import BULK_IDS_MAX, AppClient, MetricSeries, _chunks, _validate_window
from .errors import InvalidParameter

__all__ = ["campaigns", "actions", "metrics", "segments", "customers", "pulled_at",
           "DEFAULT_MAX_AGE"]

# How old cached data may be before a read pulls it again (override per call with max_age=).
DEFAULT_MAX_AGE: dict[str, timedelta] = {
    "campaigns": timedelta(hours=6),
    "actions": timedelta(hours=6),
    "segments": timedelta(hours=6),
    "metrics": timedelta(hours=6),
    "customers": timedelta(hours=24),
}
# Bump when a dataset's columns change: older cache entries are then refetched.
SCHEMA = {"campaigns": 1, "actions": 1, "segments": 1, "metrics": 1, "customers": 1}

Progress = Callable[[int, int | None], None]
_IDENTIFIER_COLUMNS = ("cio_id", "id", "email")


def _unset(max_age: Any) -> bool:
    return max_age == "default"


def _dependency_age(refresh: bool) -> MaxAge | str:
    """Max age of a dataset another one is built from: a refresh accepts only just-pulled data."""
    return timedelta(minutes=1) if refresh else "default"


@contextlib.contextmanager
def _app(conn: Connection, client: AppClient | None) -> Iterator[AppClient]:
    if client is not None:
        yield client
        return
    with AppClient(conn) as owned:
        yield owned


def _conn(conn: Connection | None) -> Connection:
    return conn if conn is not None else connect("customerio")


def _timestamps(df: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    for column in columns:
        if column in df:
            df[column] = pd.to_datetime(pd.to_numeric(df[column], errors="coerce"), unit="s",
                                        utc=True)
    return df


def _finish(df: pd.DataFrame, requests: int, started: float, from_cache: bool) -> pd.DataFrame:
    df.attrs["requests"] = requests
    df.attrs["seconds"] = round(time.monotonic() - started, 3)
    df.attrs["from_cache"] = from_cache
    return df


def _single(conn: Connection | None, dataset: str, parameters: dict[str, Any],
            fetch: Callable[[AppClient], pd.DataFrame], *, refresh: bool, max_age: MaxAge | str,
            client: AppClient | None) -> pd.DataFrame:
    """A dataset stored as one part: load it, or fetch and store it."""
    started = time.monotonic()
    conn = _conn(conn)
    max_age = DEFAULT_MAX_AGE[dataset] if _unset(max_age) else max_age
    entry = Cache(conn.cache_dir).entry(dataset, parameters, SCHEMA[dataset])
    with entry.lock():
        if not refresh:
            df = entry.load(max_age)
            if df is not None:
                return _finish(df, 0, started, True)
        entry.begin(refresh=True)
        with _app(conn, client) as app:
            before = app.stats.requests
            frame = fetch(app)
            made = app.stats.requests - before
        entry.write_part("part-00000", frame, requests=made)
        entry.complete()
        df = entry.load(None)
        assert df is not None
        return _finish(df, made, started, False)


# -- campaigns and actions -------------------------------------------------------------------

_CAMPAIGN_COLUMNS = ["campaign_id", "name", "description", "state", "active", "type", "tags",
                     "trigger_segment_ids", "n_actions", "created_at", "updated_at",
                     "first_started"]


def _campaign_frame(items: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [{
        "campaign_id": int(c["id"]),
        "name": c.get("name"),
        "description": c.get("description"),
        "state": c.get("state"),
        "active": c.get("active"),
        "type": c.get("type"),
        "tags": ",".join(str(t) for t in c.get("tags") or []),
        "trigger_segment_ids": ",".join(str(s) for s in c.get("trigger_segment_ids") or []),
        "n_actions": len(c.get("actions") or []),
        "created_at": c.get("created"),
        "updated_at": c.get("updated"),
        "first_started": c.get("first_started"),
    } for c in items]
    df = pd.DataFrame(rows, columns=_CAMPAIGN_COLUMNS)
    df["campaign_id"] = df["campaign_id"].astype("int64")
    df["n_actions"] = df["n_actions"].astype("int64")
    return _timestamps(df, ("created_at", "updated_at", "first_started"))


def campaigns(conn: Connection | None = None, *, refresh: bool = False,
              max_age: MaxAge | str = "default", client: AppClient | None = None) -> pd.DataFrame:
    """One row per campaign: campaign_id, name, state, active, tags ("a,b"), n_actions, dates."""
    return _single(conn, "campaigns", {}, lambda app: _campaign_frame(app.campaigns()),
                   refresh=refresh, max_age=max_age, client=client)


_ACTION_COLUMNS = ["campaign_id", "action_id", "channel", "name", "subject", "preheader_text",
                   "body", "sending_state", "language", "parent_action_id", "created_at",
                   "updated_at"]


def _action_frame(per_campaign: list[tuple[int, list[dict[str, Any]]]]) -> pd.DataFrame:
    rows = [{
        "campaign_id": campaign_id,
        "action_id": int(a["id"]),
        "channel": a.get("type"),
        "name": a.get("name"),
        "subject": a.get("subject"),
        "preheader_text": a.get("preheader_text"),
        "body": a.get("body"),
        "sending_state": a.get("sending_state"),
        "language": a.get("language"),
        "parent_action_id": a.get("parent_action_id"),
        "created_at": a.get("created"),
        "updated_at": a.get("updated"),
    } for campaign_id, items in per_campaign for a in items]
    df = pd.DataFrame(rows, columns=_ACTION_COLUMNS)
    for column in ("campaign_id", "action_id"):
        df[column] = df[column].astype("int64")
    df["parent_action_id"] = pd.to_numeric(df["parent_action_id"], errors="coerce").astype("Int64")
    return _timestamps(df, ("created_at", "updated_at"))


def actions(conn: Connection | None = None, *, refresh: bool = False,
            max_age: MaxAge | str = "default", client: AppClient | None = None) -> pd.DataFrame:
    """One row per campaign action (message): campaign_id, action_id, channel, copy, state."""

    conn = _conn(conn)

    def fetch(app: AppClient) -> pd.DataFrame:
        listed = campaigns(conn, client=app, max_age=_dependency_age(refresh))
        ids = [int(c) for c in listed["campaign_id"]]
        return _action_frame(list(zip(ids, app.map(app.campaign_actions, ids), strict=True)))

    return _single(conn, "actions", {}, fetch, refresh=refresh, max_age=max_age, client=client)


# -- metrics ---------------------------------------------------------------------------------

_METRIC_COLUMNS = ["campaign_id", "action_id", "bucket_start", "metric", "value"]


def _metric_rows(campaign_id: int, action_id: int | None, series: MetricSeries) -> pd.DataFrame:
    frames = []
    for metric, values in sorted(series.series.items()):
        if not values:
            continue
        frames.append(pd.DataFrame({
            "bucket_start": series.bucket_starts(len(values)),
            "metric": metric,
            "value": pd.array(values, dtype="int64"),
        }))
    if not frames:
        return pd.DataFrame(columns=_METRIC_COLUMNS)
    df = pd.concat(frames, ignore_index=True)
    df.insert(0, "campaign_id", campaign_id)
    df.insert(1, "action_id", pd.array([action_id] * len(df), dtype="Int64"))
    return df


def metrics(conn: Connection | None = None, start: Any = None, end: Any = None, *,
            res: str = "days", tz: str = "UTC", refresh: bool = False,
            max_age: MaxAge | str = "default", client: AppClient | None = None,
            progress: Progress | None = None) -> pd.DataFrame:
    """Campaign and action metrics in long form: campaign_id, action_id (NA for the campaign
    as a whole), bucket_start (tz-aware, in `tz`), metric, value.

    `start`/`end` are unix seconds, ISO strings or datetimes; they are checked (with `res` and
    `tz`) before any request, and stored per campaign so an interrupted pull resumes.
    """
    if start is None or end is None:
        raise InvalidParameter("metrics() needs start and end (e.g. start='2025-01-01', "
                               "end='2025-04-01')")
    lo, hi, res = _validate_window(start, end, res, tz)
    started = time.monotonic()
    conn = _conn(conn)
    max_age = DEFAULT_MAX_AGE["metrics"] if _unset(max_age) else max_age
    entry = Cache(conn.cache_dir).entry("metrics", {"start": lo, "end": hi, "res": res, "tz": tz},
                                        SCHEMA["metrics"])
    with entry.lock():
        if not refresh:
            df = entry.load(max_age)
            if df is not None:
                return _finish(df, 0, started, True)
        entry.begin(refresh=refresh, max_age=max_age)
        with _app(conn, client) as app:
            before = app.stats.requests
            listed = campaigns(conn, client=app, max_age=_dependency_age(refresh))
            action_table = actions(conn, client=app, max_age=_dependency_age(refresh))
            by_campaign = {int(c): sorted(g["action_id"].tolist())
                           for c, g in action_table.groupby("campaign_id")}
            for cid in listed["campaign_id"]:
                by_campaign.setdefault(int(cid), [])
            todo = [c for c in sorted(by_campaign) if not entry.has_part(f"campaign-{c}")]

            def fetch(campaign_id: int) -> tuple[int, pd.DataFrame, int]:
                calls = 1 + len(by_campaign[campaign_id])
                frames = [_metric_rows(campaign_id, None, app.campaign_metrics(
                    campaign_id, start=lo, end=hi, res=res, tz=tz))]
                for action_id in by_campaign[campaign_id]:
                    frames.append(_metric_rows(campaign_id, action_id, app.action_metrics(
                        campaign_id, action_id, start=lo, end=hi, res=res, tz=tz)))
                return campaign_id, pd.concat(frames, ignore_index=True), calls

            done = len(by_campaign) - len(todo)
            if progress:
                progress(done, len(by_campaign))
            for campaign_id, frame, calls in app.map(fetch, todo):
                entry.write_part(f"campaign-{campaign_id}", frame, requests=calls)
                done += 1
                if progress:
                    progress(done, len(by_campaign))
            made = app.stats.requests - before
        entry.complete(keep=[f"campaign-{c}" for c in by_campaign])
        df = entry.load(None)
        assert df is not None
        if df.empty:
            df = pd.DataFrame(columns=_METRIC_COLUMNS)
        return _finish(df, made, started, False)


# -- segments --------------------------------------------------------------------------------

_SEGMENT_COLUMNS = ["segment_id", "name", "description", "state", "type", "progress", "tags",
                    "created_at", "updated_at"]


def _segment_frame(items: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [{
        "segment_id": int(s["id"]),
        "name": s.get("name"),
        "description": s.get("description"),
        "state": s.get("state"),
        "type": s.get("type"),
        "progress": s.get("progress"),
        "tags": ",".join(str(t) for t in s.get("tags") or []),
        "created_at": s.get("created_at"),
        "updated_at": s.get("updated_at"),
    } for s in items]
    df = pd.DataFrame(rows, columns=_SEGMENT_COLUMNS)
    df["segment_id"] = df["segment_id"].astype("int64")
    df["progress"] = pd.to_numeric(df["progress"], errors="coerce")
    return _timestamps(df, ("created_at", "updated_at"))


def segments(conn: Connection | None = None, *, refresh: bool = False,
             max_age: MaxAge | str = "default", client: AppClient | None = None) -> pd.DataFrame:
    """One row per segment: segment_id, name, description, state, type, tags, dates."""
    return _single(conn, "segments", {}, lambda app: _segment_frame(app.segments()),
                   refresh=refresh, max_age=max_age, client=client)


# -- customers -------------------------------------------------------------------------------

def _as_string(value: Any) -> str | None:
    """Attribute values as the API gives them: strings (anything else is serialised)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def customer_row(customer: dict[str, Any]) -> dict[str, str | None]:
    """One bulk-attributes customer as a flat row: cio_id, id, email, then each attribute."""
    identifiers = customer.get("identifiers") or {}
    attributes = customer.get("attributes") or {}
    cio_id = identifiers.get("cio_id") or attributes.get("cio_id")
    row: dict[str, str | None] = {
        "cio_id": _as_string(cio_id),
        "id": _as_string(identifiers.get("id") or attributes.get("id") or customer.get("id")) or None,
        "email": _as_string(identifiers.get("email") or attributes.get("email")),
    }
    for name, value in attributes.items():
        if name not in row:
            row[name] = _as_string(value)
    return row


def _ids_key(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def _customer_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in _IDENTIFIER_COLUMNS})
    return pd.DataFrame.from_records(rows)


def _order_customer_columns(df: pd.DataFrame) -> pd.DataFrame:
    attrs = dict(df.attrs)
    for column in _IDENTIFIER_COLUMNS:
        if column not in df:
            df[column] = pd.Series([None] * len(df), dtype="object")
    rest = sorted(c for c in df.columns if c not in _IDENTIFIER_COLUMNS)
    ordered = df[[*_IDENTIFIER_COLUMNS, *rest]]
    ordered.attrs.update(attrs)
    return ordered


class _CustomerPull:
    """Ids from search or membership, attributes 100 a request, stored in parts as they complete."""

    def __init__(self, app: AppClient, entry: CacheEntry, segment_id: int | None,
                 part_size: int, progress: Progress | None,
                 on_part: Callable[[str], None] | None) -> None:
        self.app, self.entry, self.segment_id = app, entry, segment_id
        self.part_size = part_size
        self.progress, self.on_part = progress, on_part
        self.pending: deque[tuple[str, str, int, list[Future[list[dict[str, Any]]]]]] = deque()
        self.done = 0
        self.total: int | None = None
        self.parts: list[str] = []

    def run(self) -> None:
        try:
            ids_frame = self.entry.read_part("ids")
            if ids_frame is not None:
                ids = ids_frame["cio_id"].tolist()
                self.total = len(ids)
                for k in range(0, len(ids), self.part_size):
                    self._schedule(k // self.part_size, ids[k:k + self.part_size])
            else:
                self._search_and_schedule()
            while self.pending:
                self._drain()
        finally:
            for _, _, _, futures in self.pending:
                for future in futures:
                    future.cancel()

    def _pages(self) -> Iterator[list[dict[str, Any]]]:
        if self.segment_id is None:
            return self.app.search_customers()
        return self.app.segment_members(self.segment_id)

    def _search_and_schedule(self) -> None:
        seen: set[str] = set()
        ids: list[str] = []
        identifiers: list[dict[str, Any]] = []
        scheduled = 0
        for page in self._pages():
            for person in page:
                cio_id = person.get("cio_id")
                # The bulk endpoint is keyed by cio_id; a page without one cannot be looked up.
                if cio_id is None or str(cio_id) in seen:
                    continue
                seen.add(str(cio_id))
                ids.append(str(cio_id))
                identifiers.append(person)
            while len(ids) - scheduled >= self.part_size:
                self._schedule(scheduled // self.part_size, ids[scheduled:scheduled + self.part_size])
                scheduled += self.part_size
        self.total = len(ids)
        self.entry.write_part("ids", pd.DataFrame.from_records(
            identifiers, columns=list(_IDENTIFIER_COLUMNS)).astype("object"), kind="ids")
        if scheduled < len(ids):
            self._schedule(scheduled // self.part_size, ids[scheduled:])
        self._report()

    def _schedule(self, number: int, ids: list[str]) -> None:
        name, key = f"part-{number:05d}", _ids_key(ids)
        self.parts.append(name)
        if self.entry.has_part(name, key):
            self.done += len(ids)
            self._report()
            return
        futures = [self.app.submit(self.app.customers_attributes, chunk)
                   for chunk in _chunks(ids, BULK_IDS_MAX)]
        self.pending.append((name, key, len(ids), futures))
        # Two parts' worth of requests queued keeps every worker busy across part boundaries.
        while len(self.pending) > 1 and \
                sum(len(f) for *_, f in self.pending) > 3 * self.app.max_workers:
            self._drain()

    def _drain(self) -> None:
        name, key, count, futures = self.pending[0]
        rows = [customer_row(c) for future in futures for c in future.result()]
        self.pending.popleft()
        self.entry.write_part(name, _customer_frame(rows), key=key, requests=len(futures))
        self.done += count
        self._report()
        if self.on_part:
            self.on_part(name)

    def _report(self) -> None:
        if self.progress:
            self.progress(self.done, self.total)


def customers(conn: Connection | None = None, segment_id: int | None = None, *,
              refresh: bool = False, max_age: MaxAge | str = "default",
              client: AppClient | None = None, part_size: int = 5000,
              progress: Progress | None = None,
              on_part: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Everyone (or one segment's members) with every attribute: cio_id, id, email, then one
    string column per attribute, exactly as the API returns the values.

    Stored in parts of `part_size` people; a pull that stops half way resumes from the stored
    parts. `on_part(name)` is called after each part is stored.
    """
    if part_size < 1:
        raise InvalidParameter("part_size must be at least 1")
    started = time.monotonic()
    conn = _conn(conn)
    max_age = DEFAULT_MAX_AGE["customers"] if _unset(max_age) else max_age
    parameters = {"segment_id": None if segment_id is None else int(segment_id)}
    entry = Cache(conn.cache_dir).entry("customers", parameters, SCHEMA["customers"])
    with entry.lock():
        if not refresh:
            df = entry.load(max_age)
            if df is not None:
                return _finish(_order_customer_columns(df), 0, started, True)
        entry.begin(refresh=refresh, max_age=max_age)
        with _app(conn, client) as app:
            before = app.stats.requests
            pull = _CustomerPull(app, entry, parameters["segment_id"], part_size, progress,
                                 on_part)
            pull.run()
            made = app.stats.requests - before
        entry.complete(keep=pull.parts)
        df = entry.load(None)
        assert df is not None
        if df.empty and not len(df.columns):
            df = _customer_frame([])
        return _finish(_order_customer_columns(df), made, started, False)
