"""Customer.io App API reads: every method builds a request and parses the response.

Rate limiting (one budget per workspace shared by every process), retries and redaction live in
`HttpClient`; concurrency lives here: a thread pool keeps enough requests in flight to spend the
whole 10 req/s budget even when each request takes hundreds of milliseconds.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import pandas as pd

from ..connect import Connection, live_workspace
from ..errors import ApiError, ConfigError, InvalidParameter
from ..http import HttpClient, RequestStats, RetryPolicy
from ..ratelimit import RateLimiter, shared_limiter
from ..settings import Settings
from .errors import APP_SERVICE, app_error
from .exports import Exports
from .paging import cursor_pages, inclusive_windows
from .values import MATCH_ALL, to_unix

__all__ = ["AppClient", "MetricSeries", "MATCH_ALL", "normalize_res", "to_unix"]

log = logging.getLogger("cio_mavera.customerio")

T = TypeVar("T")
R = TypeVar("R")

SEARCH_PAGE_MAX = 1000
MEMBERSHIP_PAGE_MAX = 30000
MESSAGES_PAGE_MAX = 1000
BULK_IDS_MAX = 100
MAX_METRICS_SPAN = timedelta(days=3653)  # "limited to 10 years from start"
MAX_MESSAGES_WINDOW = timedelta(days=182)  # one request may cover at most 6 months
# Extra width of the client's 1 s window on top of the limiter's own 50 ms margin. The server
# counts arrivals, which trail sends by a varying delay (GC pauses, a busy loop, a loaded
# machine); with 50 ms alone about 1 request in 300 still drew a 429 in bench_pull. 100 ms in
# all costs ~5% of throughput (10 per 1.1 s) and measured zero 429s.
APP_WINDOW_SLACK_S = 0.05

_RES_ALIASES = {"hours": "hours", "hourly": "hours", "days": "days", "daily": "days",
                "weeks": "weeks", "weekly": "weeks", "months": "months", "monthly": "months"}
# v1-style (`period`/`steps`) maxima for broadcast and newsletter metrics (reference §3.3).
_V1_MAX_STEPS = {"hours": 24, "days": 45, "weeks": 12, "months": 121}


def normalize_res(res: str) -> str:
    """The canonical metrics resolution for `res` (aliases like "daily" accepted)."""
    value = _RES_ALIASES.get(str(res).strip().lower())
    if value is None:
        raise InvalidParameter(f"res={res!r} is not a metrics resolution; use one of "
                               "hours, days, weeks, months")
    return value


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidParameter(f"tz={tz!r} is not an IANA time zone name "
                               "(e.g. UTC, Europe/Berlin, America/New_York)") from None


def _validate_window(start: Any, end: Any, res: str, tz: str) -> tuple[int, int, str]:
    res = normalize_res(res)
    _zone(tz)
    lo, hi = to_unix(start, "start"), to_unix(end, "end")
    if lo >= hi:
        raise InvalidParameter(f"start ({lo}) must be before end ({hi})")
    if hi - lo > MAX_METRICS_SPAN.total_seconds():
        raise InvalidParameter("the metrics window is limited to 10 years from start")
    return lo, hi, res


@dataclass(frozen=True)
class MetricSeries:
    """A metrics v2 response: one integer per bucket for each metric, oldest bucket first."""

    start: int
    end: int
    res: str
    tz: str
    series: dict[str, list[int]]

    def bucket_starts(self, n: int | None = None) -> pd.DatetimeIndex:
        """Start of each bucket as tz-aware timestamps in `tz` (`n` defaults to the longest series)."""
        if n is None:
            n = max((len(v) for v in self.series.values()), default=0)
        zone = self.tz
        first = pd.Timestamp(self.start, unit="s", tz="UTC").tz_convert(zone)
        if self.res == "hours":
            return pd.date_range(first.floor("h"), periods=n, freq="h").tz_convert(zone)
        # Day, week and month buckets follow the wall clock of `tz` across DST changes.
        local = first.tz_localize(None).normalize()
        if self.res == "weeks":
            # Weeks start on Sunday as in the v1 docs; v2's week start is UNVERIFIED.
            local -= pd.Timedelta(days=(local.dayofweek + 1) % 7)
            naive = pd.date_range(local, periods=n, freq="7D")
        elif self.res == "months":
            naive = pd.date_range(local.replace(day=1), periods=n, freq="MS")
        else:
            naive = pd.date_range(local, periods=n, freq="D")
        return naive.tz_localize(zone, ambiguous=False, nonexistent="shift_forward")


def _customer(item: dict[str, Any]) -> dict[str, Any]:
    """A bulk-attributes item, unwrapped: the spec wraps it in {"customer": ...}, live does not."""
    inner = item.get("customer")
    return inner if isinstance(inner, dict) else item


def _identifiers(page: dict[str, Any]) -> list[dict[str, Any]]:
    """Identifiers of a search or membership page; `null` lists (empty segment) become []."""
    identifiers = page.get("identifiers")
    if identifiers:
        return [{"cio_id": i.get("cio_id"), "id": i.get("id") or None, "email": i.get("email")}
                for i in identifiers]
    # Older responses carry only `ids` ("" for people without an id).
    return [{"cio_id": None, "id": i or None, "email": None} for i in page.get("ids") or []]


class PacedLimiter:
    """Spaces sends `interval_s` apart (across processes too), then takes the window limiter.

    A sliding window alone lets the processes of a workspace send their 10 requests of a second
    in one burst; the server then admits them one after another, each late by its queueing time,
    and the next burst one window later can land inside the same server-side second (a 429).
    Evenly spaced sends arrive as regularly as they leave.
    """

    def __init__(self, window: RateLimiter, pace: RateLimiter) -> None:
        self.window = window
        self.pace = pace

    def acquire(self) -> float:
        return self.pace.acquire() + self.window.acquire()


def _app_limiter(name: str, settings: Settings) -> RateLimiter:
    rps = max(1, int(settings.app_rps))
    window_s = 1.0 + APP_WINDOW_SLACK_S
    window = shared_limiter(name, limit=rps, window_s=window_s, data_dir=settings.data_dir,
                            redis_url=settings.redis_url)
    # The pacer needs no safety margin (the window has one).
    pace = shared_limiter(f"{name}-pace", limit=1, window_s=window_s / rps,
                          data_dir=settings.data_dir, redis_url=settings.redis_url, margin_s=0.0)
    return PacedLimiter(window, pace)


class AppClient:
    """The Customer.io App API (Bearer key), rate-limited per workspace and concurrent."""

    def __init__(
        self,
        source: Settings | Connection,
        *,
        max_workers: int | None = None,
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        file_transport: httpx.BaseTransport | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        if isinstance(source, Connection):
            settings, workspace = source.settings, source.workspace
        else:
            settings, workspace = source, live_workspace(source)
        if not settings.app_key:
            raise ConfigError("CIO_APP_KEY is not set; put your App API key in .env "
                              "(see .env.example) or use CIO_MAVERA_MODE=sandbox")
        self.settings = settings
        self.workspace = workspace
        self.max_workers = max_workers or max(1, min(32, int(settings.app_rps)))
        if limiter is None:
            limiter = _app_limiter(f"cio-app-{workspace}", settings)
        self.http = HttpClient(
            service=APP_SERVICE,
            base_url=settings.app_url,
            headers={"Authorization": f"Bearer {settings.app_key.reveal()}",
                     "Accept": "application/json"},
            secrets=settings.secrets(),
            limiter=limiter,
            # A 429 or 5xx costs only time on these reads; more tries ride out a busy workspace.
            retry=retry or RetryPolicy(max_retries=10),
            timeout_s=timeout_s,
            max_connections=max(16, self.max_workers + 2),
            error_factory=app_error,
            transport=transport,
        )
        self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="cio-app")
        # Export files come from a storage host by signed URL: no App key, no App rate limit.
        self._files = httpx.Client(timeout=httpx.Timeout(120.0, connect=10.0),
                                   headers={"User-Agent": "cio-mavera/0.1"},
                                   follow_redirects=True, transport=file_transport)
        self.exports = Exports(self.http, self._files)

    @property
    def stats(self) -> RequestStats:
        """Requests, retries and 429s this client has seen."""
        return self.http.stats

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.http.close()
        self._files.close()

    def __enter__(self) -> AppClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- concurrency -------------------------------------------------------------------------

    def submit(self, fn: Callable[..., R], *args: Any) -> Future[R]:
        """Run `fn(*args)` on the client's pool (its requests still pass the shared limiter)."""
        return self._pool.submit(fn, *args)

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """`fn` over `items` concurrently, results in input order, a bounded number in flight."""
        in_flight: deque[Future[R]] = deque()
        try:
            for item in items:
                in_flight.append(self._pool.submit(fn, item))
                if len(in_flight) >= 2 * self.max_workers:
                    yield in_flight.popleft().result()
            while in_flight:
                yield in_flight.popleft().result()
        finally:
            for future in in_flight:
                future.cancel()

    # -- plumbing ----------------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.http.get_json(path, params=params)

    def _search(self, path: str, body: Any, params: dict[str, Any]) -> Any:
        # These POSTs only read, so retrying one that reached the server is safe.
        return self.http.post_json(path, body, params=params, idempotent=True)

    def _pages(self, path: str, key: str, params: dict[str, Any] | None = None) -> Iterator[list]:
        def fetch(start: str | None) -> tuple[list, str | None]:
            query = dict(params or {})
            if start:
                query["start"] = start
            body = self._get(path, query)
            return body.get(key) or [], body.get("next")

        return cursor_pages(fetch)

    # -- campaigns ---------------------------------------------------------------------------

    def campaigns(self) -> list[dict[str, Any]]:
        """Every campaign of the workspace (one request; the endpoint has no pagination)."""
        return self._get("/v1/campaigns").get("campaigns") or []

    def campaign(self, campaign_id: int) -> dict[str, Any]:
        """One campaign; `NotFound` names it when it does not exist."""
        return self._get(f"/v1/campaigns/{int(campaign_id)}")["campaign"]

    def campaign_actions(self, campaign_id: int) -> list[dict[str, Any]]:
        """Every action of a campaign, following cursor pages (10 a page); `id` as int."""
        actions: list[dict[str, Any]] = []
        for page in self._pages(f"/v1/campaigns/{int(campaign_id)}/actions", "actions"):
            actions.extend(_int_id(a) for a in page)
        return actions

    def campaign_action(self, campaign_id: int, action_id: int) -> dict[str, Any]:
        """One action of a campaign."""
        return _int_id(self._get(f"/v1/campaigns/{int(campaign_id)}/actions/{int(action_id)}")
                       ["action"])

    def campaign_metrics(self, campaign_id: int, *, start: Any, end: Any, res: str = "days",
                         tz: str = "UTC", type: str | None = None) -> MetricSeries:
        """Campaign metrics v2 between `start` and `end`, one bucket per `res` in `tz`."""
        return self._metrics(f"/v1/campaigns/{int(campaign_id)}/metrics", start, end, res, tz, type)

    def action_metrics(self, campaign_id: int, action_id: int, *, start: Any, end: Any,
                       res: str = "days", tz: str = "UTC", type: str | None = None) -> MetricSeries:
        """Metrics v2 of one campaign action."""
        return self._metrics(f"/v1/campaigns/{int(campaign_id)}/actions/{int(action_id)}/metrics",
                             start, end, res, tz, type)

    def _metrics(self, path: str, start: Any, end: Any, res: str, tz: str,
                 type: str | None) -> MetricSeries:
        lo, hi, res = _validate_window(start, end, res, tz)
        params: dict[str, Any] = {"version": 2, "res": res, "start": lo, "end": hi, "tz": tz}
        if type:
            params["type"] = type
        body = self._get(path, params)
        series = (body.get("metric") or {}).get("series") or {}
        return MetricSeries(lo, hi, res, tz,
                            {k: [int(x or 0) for x in v] for k, v in series.items()
                             if isinstance(v, list)})

    # -- broadcasts and newsletters ----------------------------------------------------------

    def broadcasts(self) -> list[dict[str, Any]]:
        """Every API-triggered broadcast (no pagination)."""
        return self._get("/v1/broadcasts").get("broadcasts") or []

    def broadcast(self, broadcast_id: int) -> dict[str, Any]:
        """One broadcast."""
        return self._get(f"/v1/broadcasts/{int(broadcast_id)}")["broadcast"]

    def broadcast_actions(self, broadcast_id: int) -> list[dict[str, Any]]:
        """Actions of a broadcast (one per language variant), following `next` when present."""
        actions: list[dict[str, Any]] = []
        for page in self._pages(f"/v1/broadcasts/{int(broadcast_id)}/actions", "actions"):
            actions.extend(_int_id(a) for a in page)
        return actions

    def broadcast_metrics(self, broadcast_id: int, *, period: str = "days",
                          steps: int | None = None, type: str | None = None) -> dict[str, list[int]]:
        """A broadcast's metric series, oldest first: `steps` buckets of `period` (v1 only).

        Broadcast metrics have no version 2: their parameters are `period`, `steps` and `type`
        (reference §3.2); v2 parameters would be ignored and answered in v1's shape.
        """
        return self._v1_metrics(f"/v1/broadcasts/{int(broadcast_id)}/metrics", period, steps, type)

    def broadcast_action_metrics(self, broadcast_id: int, action_id: int, *, period: str = "days",
                                 steps: int | None = None,
                                 type: str | None = None) -> dict[str, list[int]]:
        """Metric series of one broadcast action, oldest first (v1 only, as `broadcast_metrics`)."""
        return self._v1_metrics(
            f"/v1/broadcasts/{int(broadcast_id)}/actions/{int(action_id)}/metrics",
            period, steps, type)

    def _v1_metrics(self, path: str, period: str, steps: int | None,
                    type: str | None) -> dict[str, list[int]]:
        """The v1 (`period`/`steps`) metrics at `path`: {series: counts oldest first}.

        Buckets are in US Eastern time and end with the current one; `steps=0` means the most
        the period allows, `steps=1` gets 2 (the documented minimum).
        """
        period = normalize_res(period)
        if steps is not None and not 0 <= steps <= _V1_MAX_STEPS[period]:
            raise InvalidParameter(f"steps={steps} must be 0..{_V1_MAX_STEPS[period]} for "
                                   f"period={period}")
        params: dict[str, Any] = {"period": period}
        if steps is not None:
            params["steps"] = steps
        if type:
            params["type"] = type
        body = self._get(path, params)
        series = (body.get("metric") or {}).get("series") or {}
        return {k: [int(x or 0) for x in v] for k, v in series.items() if isinstance(v, list)}

    def newsletters(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """Every newsletter (one-time send), following cursor pages."""
        if not 1 <= limit <= 1000:
            raise InvalidParameter(f"limit={limit} must be between 1 and 1000")
        found: list[dict[str, Any]] = []
        for page in self._pages("/v1/newsletters", "newsletters", {"limit": limit}):
            found.extend(page)
        return found

    def newsletter(self, newsletter_id: int) -> dict[str, Any]:
        """One newsletter."""
        return self._get(f"/v1/newsletters/{int(newsletter_id)}")["newsletter"]

    def newsletter_metrics(self, newsletter_id: int, *, period: str = "days",
                           steps: int | None = None, type: str | None = None) -> dict[str, list[int]]:
        """Newsletter metric series, oldest first (v1 only: `period`/`steps`, reference §3.3)."""
        return self._v1_metrics(f"/v1/newsletters/{int(newsletter_id)}/metrics", period, steps,
                                type)

    # -- workspaces, segments and people -----------------------------------------------------

    def workspaces(self) -> list[dict[str, Any]]:
        """The account's workspaces with their `people` counts (cached up to 2 h by Customer.io)."""
        return self._get("/v1/workspaces").get("workspaces") or []

    def segments(self) -> list[dict[str, Any]]:
        """Every (non-archived) segment (no pagination)."""
        return self._get("/v1/segments").get("segments") or []

    def segment(self, segment_id: int) -> dict[str, Any]:
        """One segment; `NotFound` names it when it does not exist."""
        return self._get(f"/v1/segments/{int(segment_id)}")["segment"]

    def segment_customer_count(self, segment_id: int) -> int:
        """How many people a segment holds."""
        return int(self._get(f"/v1/segments/{int(segment_id)}/customer_count")["count"])

    def segment_members(self, segment_id: int, *, limit: int = MEMBERSHIP_PAGE_MAX
                        ) -> Iterator[list[dict[str, Any]]]:
        """Pages of a segment's members as {"cio_id", "id", "email"} (empty segment: no pages)."""
        if not 1 <= limit <= MEMBERSHIP_PAGE_MAX:
            raise InvalidParameter(f"limit={limit} must be between 1 and {MEMBERSHIP_PAGE_MAX}")
        path = f"/v1/segments/{int(segment_id)}/membership"

        def fetch(start: str | None) -> tuple[list, str | None]:
            params: dict[str, Any] = {"limit": limit}
            if start:
                params["start"] = start
            body = self._get(path, params)
            return _identifiers(body), body.get("next")

        return cursor_pages(fetch)

    def search_customers(self, filter: dict[str, Any] | None = None, *,
                         limit: int = SEARCH_PAGE_MAX) -> Iterator[list[dict[str, Any]]]:
        """Pages of people matching `filter` (default: everyone) as {"cio_id", "id", "email"}."""
        if not 1 <= limit <= SEARCH_PAGE_MAX:
            raise InvalidParameter(f"limit={limit} must be between 1 and {SEARCH_PAGE_MAX}")
        body = {"filter": filter or MATCH_ALL}

        def fetch(start: str | None) -> tuple[list, str | None]:
            params: dict[str, Any] = {"limit": limit}
            if start:
                params["start"] = start
            page = self._search("/v1/customers", body, params)
            return _identifiers(page), page.get("next")

        return cursor_pages(fetch)

    def customers_attributes(self, cio_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Attributes of up to 100 people by cio_id in one request; unknown ids are omitted."""
        ids = [str(i) for i in cio_ids]
        if not ids:
            return []
        if len(ids) > BULK_IDS_MAX:
            raise InvalidParameter(f"{len(ids)} ids given; the bulk endpoint takes at most "
                                   f"{BULK_IDS_MAX} (use customers_attributes_many)")
        # cio_ids go without the `cio_` prefix here: live, prefixed ids returned no one.
        body = self._search("/v1/customers/attributes", {"ids": ids}, {"id_type": "cio_id"})
        return [_customer(item) for item in body.get("customers") or []]

    def customers_attributes_many(self, cio_ids: Iterable[str]) -> Iterator[dict[str, Any]]:
        """Attributes of any number of people, 100 per request, requests in parallel."""
        for batch in self.map(self.customers_attributes, _chunks(cio_ids, BULK_IDS_MAX)):
            yield from batch

    def customer_attributes(self, customer_id: str, *, id_type: str = "cio_id") -> dict[str, Any]:
        """One person's attributes (`NotFound` names the identifier when unknown)."""
        if id_type not in ("id", "email", "cio_id", "phone"):
            raise InvalidParameter(f"id_type={id_type!r}; use id, email, cio_id or phone")
        path = f"/v1/customers/{quote(str(customer_id), safe='')}/attributes"
        return self._get(path, {"id_type": id_type})["customer"]

    # -- messages ----------------------------------------------------------------------------

    def messages(self, *, start: Any, end: Any, window: timedelta = timedelta(days=30),
                 limit: int = MESSAGES_PAGE_MAX, **filters: Any) -> Iterator[dict[str, Any]]:
        """Deliveries created in [start, end] (inclusive), fetched window by window.

        `filters` are the endpoint's own (campaign_id, action_id, newsletter_id, type, metric).
        """
        lo, hi = to_unix(start, "start"), to_unix(end, "end")
        if lo > hi:
            raise InvalidParameter(f"start ({lo}) must not be after end ({hi})")
        if not timedelta(seconds=1) <= window <= MAX_MESSAGES_WINDOW:
            raise InvalidParameter("window must be between 1 second and 6 months")
        if not 1 <= limit <= MESSAGES_PAGE_MAX:
            raise InvalidParameter(f"limit={limit} must be between 1 and {MESSAGES_PAGE_MAX}")
        seen: set[str] = set()
        for w_start, w_end in inclusive_windows(lo, hi, int(window.total_seconds())):
            params = {k: v for k, v in filters.items() if v is not None}
            params.update(start_ts=w_start, end_ts=w_end, limit=limit)
            for page in self._pages("/v1/messages", "messages", params):
                for message in page:
                    key = message.get("id")
                    if key in seen:
                        continue
                    if key:
                        seen.add(key)
                    yield message


def _int_id(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` with `id` as an int: live action lists send it as a string ("18")."""
    try:
        return {**obj, "id": int(obj["id"])}
    except (KeyError, TypeError, ValueError):
        raise ApiError(f"Customer.io sent an object without a numeric id: {str(obj)[:120]}",
                       service=APP_SERVICE) from None


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
