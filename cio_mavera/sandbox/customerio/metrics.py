"""Metric series in the App API's shapes: v2 (`res/start/end/tz`) and deprecated v1 (`period/steps`).

`metrics_answer` answers campaign and action metrics (v2, or v1 without `version=2`);
`v1_metrics_answer` answers broadcast and newsletter metrics, which have only v1 (reference §3.2,
§3.3).

The workspace stores one count per series per calendar day. The sandbox reads a day's total as
the total of that *local* day in whatever time zone is asked for, so totals are conserved in
every zone; hourly buckets spread a day's total over its real hours (23 or 25 on DST days) with a
fixed diurnal profile and largest-remainder rounding, so hours always add up to the day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse

from .responses import AppError, app_json

# v2 series names, as the Sept-2026 spec lists them (customerio-api.md §3.1).
V2_SERIES: tuple[str, ...] = (
    "attempted", "bounced", "clicked", "converted", "created", "deferred", "delivered", "drafted",
    "failed", "human_clicked", "human_opened", "link_untracked", "machine_clicked", "open_untracked",
    "opened", "prefetch_opened", "replied", "sent", "spammed", "suppressed", "topic_unsubscribed",
    "tracking_consent_denied", "tracking_consent_granted", "undeliverable", "unsubscribed", "untracked",
)
# v1 (deprecated) series: 2xx..5xx are webhook response-code buckets, always 0 here (no webhooks).
V1_SERIES: tuple[str, ...] = (
    "2xx", "3xx", "4xx", "5xx", "attempted", "bounced", "clicked", "converted", "created", "deferred",
    "delivered", "drafted", "failed", "opened", "sent", "spammed", "suppressed", "undeliverable",
    "topic_unsubscribed", "unsubscribed",
)
RES_ALIASES = {"hours": "hours", "hourly": "hours", "days": "days", "daily": "days",
               "weeks": "weeks", "weekly": "weeks", "months": "months", "monthly": "months"}
MAX_V2_SPAN_S = 10 * 366 * 86400  # "limited to 10 years from start"
# v1: default and maximum steps per period; months default to 12 (spec), max 121 (2026 docs).
V1_MAX_STEPS = {"hours": 24, "days": 45, "weeks": 12, "months": 121}
V1_DEFAULT_STEPS = {"hours": 24, "days": 45, "weeks": 12, "months": 12}
V1_TZ = "America/New_York"  # v1 buckets are in Eastern time
# Share of a day's messages per local hour (quiet nights, busy mornings); sums to 1.
_DIURNAL = np.array([1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 7, 6, 6, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2], float)
_DIURNAL /= _DIURNAL.sum()

# (first_day, last_day) -> {series: daily int array covering every day in between, inclusive}
DailySource = Callable[[dt.date, dt.date], dict[str, np.ndarray]]


class MetricsParamError(ValueError):
    """A metrics query the API would answer with 400."""


def parse_tz(name: str | None) -> ZoneInfo:
    """The IANA zone `name` (UTC when absent)."""
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise MetricsParamError(f"unknown time zone {name!r}") from exc


def go_time(moment: dt.datetime) -> str:
    """Go's default time format, which the v2 endpoint echoes: `2025-01-01 00:00:00 +0000 UTC`."""
    return moment.strftime("%Y-%m-%d %H:%M:%S %z ") + (moment.tzname() or "UTC")


def _local_midnight(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=tz)


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def _floor_day(moment: dt.datetime, res: str) -> dt.date:
    """The local date on which the `res` bucket containing `moment` starts."""
    day = moment.date()
    if res == "weeks":  # weeks start on Sunday, as v1 documents (UNVERIFIED for v2)
        return day - dt.timedelta(days=(day.weekday() + 1) % 7)
    if res == "months":
        return day.replace(day=1)
    return day


def _next_day(day: dt.date, res: str) -> dt.date:
    if res == "weeks":
        return day + dt.timedelta(days=7)
    if res == "months":
        return _add_months(day, 1)
    return day + dt.timedelta(days=1)


def bucket_starts(res: str, start: int, end: int, tz: ZoneInfo) -> list[dt.datetime]:
    """Local starts of every `res` bucket from the one containing `start` up to `end` inclusive."""
    first = dt.datetime.fromtimestamp(start, tz)
    out: list[dt.datetime] = []
    if res == "hours":
        t = int(first.replace(minute=0, second=0, microsecond=0).timestamp())
        while t <= end:
            out.append(dt.datetime.fromtimestamp(t, tz))
            t += 3600
        return out
    day = _floor_day(first, res)
    while (moment := _local_midnight(day, tz)).timestamp() <= end:
        out.append(moment)
        day = _next_day(day, res)
    return out


def _spread_day(totals: np.ndarray, hours: list[int]) -> np.ndarray:
    """Split per-series day totals (S,) over the day's local hours -> (S, len(hours)), exact sums."""
    weights = _DIURNAL[hours]
    weights = weights / weights.sum()
    exact = totals[:, None] * weights[None, :]
    base = np.floor(exact).astype(np.int64)
    short = totals - base.sum(axis=1)
    order = np.argsort(-(exact - base), axis=1, kind="stable")
    ranks = np.argsort(order, axis=1, kind="stable")
    return base + (ranks < short[:, None])


def bucket_series(daily: DailySource, res: str, starts: list[dt.datetime],
                  names: tuple[str, ...]) -> dict[str, list[int]]:
    """One value per bucket and series, oldest first."""
    if not starts:
        return {name: [] for name in names}
    tz = starts[0].tzinfo
    if res == "hours":
        first_day, last_day = starts[0].date(), starts[-1].date()
    else:
        first_day, last_day = starts[0].date(), _next_day(starts[-1].date(), res) - dt.timedelta(days=1)
    source = daily(first_day, last_day)
    n_days = (last_day - first_day).days + 1
    matrix = np.zeros((len(names), n_days), dtype=np.int64)
    for i, name in enumerate(names):
        if name in source:
            matrix[i] = source[name]
    if res == "days":
        values = matrix
    elif res in ("weeks", "months"):
        offsets = [(s.date() - first_day).days for s in starts] + [n_days]
        values = np.stack([matrix[:, a:b].sum(axis=1) for a, b in zip(offsets, offsets[1:], strict=False)],
                          axis=1)
    else:
        values = _hourly(matrix, first_day, starts, tz)
    return {name: values[i].tolist() for i, name in enumerate(names)}


def _hourly(matrix: np.ndarray, first_day: dt.date, starts: list[dt.datetime], tz) -> np.ndarray:
    values = np.zeros((matrix.shape[0], len(starts)), dtype=np.int64)
    by_day: dict[dt.date, list[int]] = {}
    for position, moment in enumerate(starts):
        by_day.setdefault(moment.date(), []).append(position)
    for day, positions in by_day.items():
        # The day's real hours, so a partial first/last day still gets only its share.
        begin = int(_local_midnight(day, tz).timestamp())
        finish = int(_local_midnight(day + dt.timedelta(days=1), tz).timestamp())
        all_hours = [dt.datetime.fromtimestamp(t, tz) for t in range(begin, finish, 3600)]
        spread = _spread_day(matrix[:, (day - first_day).days], [h.hour for h in all_hours])
        index = {int(h.timestamp()): j for j, h in enumerate(all_hours)}
        for position in positions:
            j = index.get(int(starts[position].timestamp()))
            if j is not None:
                values[:, position] = spread[:, j]
    return values


def v2_response(daily: DailySource, params: dict[str, str]) -> dict:
    """The v2 body for query `params` (raises MetricsParamError for a 400)."""
    res_name = params.get("res") or ""
    if res_name not in RES_ALIASES:
        raise MetricsParamError("res is required for version 2 and must be one of "
                                + ", ".join(RES_ALIASES))
    try:
        start, end = int(params["start"]), int(params["end"])
    except (KeyError, ValueError) as exc:
        raise MetricsParamError("start and end (unix seconds) are required for version 2") from exc
    if end < start:
        raise MetricsParamError("end must not be before start")
    if end - start > MAX_V2_SPAN_S:
        raise MetricsParamError("end is limited to 10 years from start")
    tz = parse_tz(params.get("tz"))
    res = RES_ALIASES[res_name]
    starts = bucket_starts(res, start, end, tz)
    return {
        "start": go_time(starts[0]),
        "end": go_time(dt.datetime.fromtimestamp(end, tz)),
        "res": res_name,
        "metric": {"series": bucket_series(daily, res, starts, V2_SERIES)},
    }


def v1_response(daily: DailySource, params: dict[str, str], now: int) -> dict:
    """The deprecated v1 body: `steps` buckets of `period` ending with the one containing `now`."""
    period = params.get("period") or "days"
    if period not in V1_MAX_STEPS:
        raise MetricsParamError("period must be one of hours, days, weeks, months")
    try:
        steps = int(params.get("steps") or 0)
    except ValueError as exc:
        raise MetricsParamError("steps must be an integer") from exc
    if steps < 0:
        raise MetricsParamError("steps must not be negative")
    # 0 means the maximum; 1 means 2 (the documented minimum); beyond the maximum is clamped.
    steps = V1_DEFAULT_STEPS[period] if steps == 0 and "steps" not in params else steps
    steps = V1_MAX_STEPS[period] if steps == 0 else min(max(steps, 2), V1_MAX_STEPS[period])
    tz = ZoneInfo(V1_TZ)
    current = bucket_starts(period, now, now, tz)[0]
    if period == "hours":
        first = int(current.timestamp()) - 3600 * (steps - 1)
    elif period == "days":
        first = int(_local_midnight(current.date() - dt.timedelta(days=steps - 1), tz).timestamp())
    elif period == "weeks":
        first = int(_local_midnight(current.date() - dt.timedelta(days=7 * (steps - 1)), tz).timestamp())
    else:
        first = int(_local_midnight(_add_months(current.date(), -(steps - 1)), tz).timestamp())
    starts = bucket_starts(period, first, now, tz)
    return {"metric": {"series": bucket_series(daily, period, starts, V1_SERIES)}}


def v1_metrics_answer(request: Request, daily: DailySource, now: int) -> JSONResponse:
    """The v1 body whatever the query says: routes without a version 2 (broadcasts, newsletters)
    ignore `version`, `res`, `start`, `end` and `tz`, as the real service presumably does."""
    try:
        return app_json(v1_response(daily, dict(request.query_params), now))
    except MetricsParamError as exc:
        raise AppError(400, str(exc)) from exc


def metrics_answer(request: Request, daily: DailySource, now: int) -> JSONResponse:
    """The metrics body for this request's query: v2 with `version=2`, else v1 ending at `now`."""
    params = dict(request.query_params)
    try:
        if params.get("version") == "2":
            return app_json(v2_response(daily, params))
        return app_json(v1_response(daily, params, now))
    except MetricsParamError as exc:
        raise AppError(400, str(exc)) from exc
