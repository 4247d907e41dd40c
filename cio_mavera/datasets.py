"""Tidy DataFrames of Customer.io data, pulled through the parquet cache.

Each function returns the cached data when it is complete and fresh enough, otherwise pulls it
(resuming an interrupted pull) and caches it. `df.attrs["pulled_at"]` (or `cache.pulled_at(df)`)
says when the data left Customer.io; `df.attrs["requests"]` how many requests this call made.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from .cache import Cache, CacheEntry, MaxAge, pulled_at
from .connect import Connection, connect
from .customerio.app import (
    BULK_IDS_MAX,
    MATCH_ALL,
    AppClient,
    MetricSeries,
    _chunks,
    _validate_window,
)
from .customerio.export_files import DEFAULT_FORMAT, ExportFormat
from .customerio.exports import Export, PollPolicy
from .errors import InvalidParameter
from .export_cache import export_into_cache

__all__ = ["campaigns", "actions", "metrics", "segments", "customers", "pull_customers",
           "choose_customers_path", "export_into_cache", "CustomersPull", "PathChoice", "pulled_at",
           "DEFAULT_MAX_AGE", "EXPORT_ABOVE"]

log = logging.getLogger("cio_mavera.datasets")

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
# Above this many people `customers(via="auto")` asks for an export. The API path costs about one
# request per 90 people at 10 requests/second (50,000 people: ~560 requests, ~1 minute, growing
# linearly); an export costs a handful of requests at any size, plus the time Customer.io takes
# to write the file.
EXPORT_ABOVE = 50_000
VIA = ("auto", "api", "export")


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
    # An export's header lists attributes nobody in it has; the API path never sees those.
    rest = sorted(c for c in df.columns if c not in _IDENTIFIER_COLUMNS and df[c].notna().any())
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


@dataclass(frozen=True)
class PathChoice:
    """Which way `customers(via="auto")` pulls, and why (for the user to read)."""

    via: str
    people: int | None
    threshold: int
    reason: str


def choose_customers_path(app: AppClient, segment_id: int | None = None, *,
                          threshold: int = EXPORT_ABOVE) -> PathChoice:
    """Export above `threshold` people, else the API path (one request to count them)."""
    if segment_id is not None:
        people: int | None = app.segment_customer_count(segment_id)
        where = f"segment {segment_id} has {people:,} people"
    else:
        counts = [int(w.get("people") or 0) for w in app.workspaces()]
        if len(counts) == 1:
            people, where = counts[0], f"the workspace has {counts[0]:,} people"
        elif counts and max(counts) <= threshold:
            # The key's workspace is one of these, so it holds at most the largest count.
            people = max(counts)
            where = f"the largest of the account's {len(counts)} workspaces has {people:,} people"
        else:
            people, where = None, (f"the account has {len(counts)} workspaces and the App API "
                                   "does not say which one the key belongs to")
    via = "export" if people is None or people > threshold else "api"
    reason = (f"{where}; customers are pulled through an export above {threshold:,} people "
              f"(via {via}; --via api|export to choose)")
    return PathChoice(via, people, threshold, reason)


@dataclass(frozen=True)
class CustomersPull:
    """What `pull_customers` did: rows stored, which way, requests, seconds, where."""

    rows: int
    via: str | None  # None when the cache already held the data
    requests: int  # App API requests (file downloads not included)
    file_downloads: int
    seconds: float
    from_cache: bool
    cache_path: str
    export_id: int | None = None


@dataclass(frozen=True)
class _Options:
    """How one customers pull runs (the arguments of `customers` and `pull_customers`)."""

    segment_id: int | None
    via: str
    refresh: bool
    max_age: MaxAge
    part_size: int
    progress: Progress | None
    on_part: Callable[[str], None] | None
    on_state: Callable[[Export], None] | None
    on_choice: Callable[[PathChoice], None] | None
    export_format: ExportFormat
    poll: PollPolicy | None
    threshold: int


def _customers_entry(conn: Connection, segment_id: int | None) -> CacheEntry:
    parameters = {"segment_id": None if segment_id is None else int(segment_id)}
    return Cache(conn.cache_dir).entry("customers", parameters, SCHEMA["customers"])


def _options(segment_id: int | None, via: str, refresh: bool, max_age: MaxAge | str,
             part_size: int, **hooks: Any) -> _Options:
    if via not in VIA:
        raise InvalidParameter(f"via={via!r}; use one of {', '.join(VIA)}")
    if part_size < 1:
        raise InvalidParameter("part_size must be at least 1")
    if hooks["threshold"] is None:
        hooks["threshold"] = EXPORT_ABOVE  # read at call time, so a session can change it
    return _Options(segment_id=None if segment_id is None else int(segment_id), via=via,
                    refresh=refresh,
                    max_age=DEFAULT_MAX_AGE["customers"] if _unset(max_age) else max_age,
                    part_size=part_size, **hooks)


def _fill_customers(conn: Connection, client: AppClient | None, entry: CacheEntry,
                    options: _Options) -> tuple[str, int, int, int | None]:
    """Pull into `entry` (its lock held) the chosen way: (via, requests, file downloads, export id)."""
    with _app(conn, client) as app:
        before, files_before = app.stats.requests, app.exports.file_stats.requests
        via = options.via
        if via == "auto":
            choice = choose_customers_path(app, options.segment_id, threshold=options.threshold)
            if options.on_choice is not None:
                options.on_choice(choice)
            log.info("customers: %s", choice.reason)
            via = choice.via
        export_id = None
        if via == "export":
            export_id = _pull_by_export(app, entry, options)
        else:
            entry.begin(refresh=options.refresh, max_age=options.max_age)
            pull = _CustomerPull(app, entry, options.segment_id, options.part_size,
                                 options.progress, options.on_part)
            pull.run()
            entry.complete(keep=pull.parts)
        return (via, app.stats.requests - before,
                app.exports.file_stats.requests - files_before, export_id)


def _pull_by_export(app: AppClient, entry: CacheEntry, options: _Options) -> int:
    """Everyone (or a segment's members) through an export; returns the export's id."""
    segment_id = options.segment_id
    filters = MATCH_ALL if segment_id is None else {"segment": {"id": segment_id}}
    done = export_into_cache(app, entry, lambda: app.exports.customers(filters),
                             refresh=options.refresh, max_age=options.max_age, poll=options.poll,
                             export_format=options.export_format, progress=options.progress,
                             on_state=options.on_state, on_part=options.on_part)
    return done.id


def _fresh_manifest(entry: CacheEntry, max_age: MaxAge) -> dict[str, Any] | None:
    """The manifest of a complete, fresh entry whose data files are intact (none is parsed)."""
    manifest = entry.read_manifest()
    if manifest is None or manifest.get("status") != "complete":
        return None
    if max_age is not None:
        limit = max_age.total_seconds() if isinstance(max_age, timedelta) else float(max_age)
        try:
            age = (datetime.now(UTC) - datetime.fromisoformat(manifest["pulled_at"])).total_seconds()
        except (KeyError, TypeError, ValueError):
            return None
        if age > limit:
            return None
    for part in manifest["parts"].values():
        if part.get("kind", "data") == "data" and not _intact(entry.path / part["file"], part):
            return None
    return manifest


def _intact(path: Path, part: dict[str, Any]) -> bool:
    try:
        if path.stat().st_size != part.get("bytes"):
            return False
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return False
    return digest.hexdigest() == part.get("sha256")


def pull_customers(conn: Connection | None = None, segment_id: int | None = None, *,
                   via: str = "auto", refresh: bool = False, max_age: MaxAge | str = "default",
                   client: AppClient | None = None, part_size: int = 5000,
                   progress: Progress | None = None,
                   on_part: Callable[[str], None] | None = None,
                   on_state: Callable[[Export], None] | None = None,
                   on_choice: Callable[[PathChoice], None] | None = None,
                   export_format: ExportFormat = DEFAULT_FORMAT, poll: PollPolicy | None = None,
                   threshold: int | None = None) -> CustomersPull:
    """Fill the cache with everyone (or one segment's members) without loading it into memory.

    What `cio-mavera pull customers` runs: a million people never become one DataFrame here.
    Arguments as for `customers`; returns the rows stored, the path taken, requests and seconds.
    """
    started = time.monotonic()
    options = _options(segment_id, via, refresh, max_age, part_size, progress=progress,
                       on_part=on_part, on_state=on_state, on_choice=on_choice,
                       export_format=export_format, poll=poll, threshold=threshold)
    conn = _conn(conn)
    entry = _customers_entry(conn, options.segment_id)
    with entry.lock():
        manifest = None if refresh else _fresh_manifest(entry, options.max_age)
        if manifest is not None:
            return CustomersPull(int(manifest["rows"]), None, 0, 0,
                                 round(time.monotonic() - started, 3), True, str(entry.path))
        via, made, files, export_id = _fill_customers(conn, client, entry, options)
        manifest = entry.read_manifest() or {}
    return CustomersPull(int(manifest.get("rows", 0)), via, made, files,
                         round(time.monotonic() - started, 3), False, str(entry.path), export_id)


def customers(conn: Connection | None = None, segment_id: int | None = None, *,
              via: str = "auto", refresh: bool = False, max_age: MaxAge | str = "default",
              client: AppClient | None = None, part_size: int = 5000,
              progress: Progress | None = None,
              on_part: Callable[[str], None] | None = None,
              on_state: Callable[[Export], None] | None = None,
              on_choice: Callable[[PathChoice], None] | None = None,
              export_format: ExportFormat = DEFAULT_FORMAT, poll: PollPolicy | None = None,
              threshold: int | None = None) -> pd.DataFrame:
    """Everyone (or one segment's members) with every attribute: cio_id, id, email, then one
    string column per attribute, exactly as the API returns the values.

    `via`: "api" (search or membership, then attributes 100 a request, stored in parts of
    `part_size` people; a pull that stops half way resumes from the stored parts), "export" (a
    Customer.io export, its file streamed into parts: a few requests at any size), or "auto"
    (export above `threshold` people, default `EXPORT_ABOVE`, counted with one request first;
    `on_choice` hears the decision). `on_part(name)` is called after each part is stored, `on_state(export)` after
    each poll of an export, `progress(done, total)` as people are stored.
    """
    started = time.monotonic()
    options = _options(segment_id, via, refresh, max_age, part_size, progress=progress,
                       on_part=on_part, on_state=on_state, on_choice=on_choice,
                       export_format=export_format, poll=poll, threshold=threshold)
    conn = _conn(conn)
    entry = _customers_entry(conn, options.segment_id)
    with entry.lock():
        if not refresh:
            df = entry.load(options.max_age)
            if df is not None:
                return _finish(_order_customer_columns(df), 0, started, True)
        via, made, _, _ = _fill_customers(conn, client, entry, options)
        df = entry.load(None)
        assert df is not None
        if df.empty and not len(df.columns):
            df = _customer_frame([])
        df.attrs["via"] = via
        return _finish(_order_customer_columns(df), made, started, False)
