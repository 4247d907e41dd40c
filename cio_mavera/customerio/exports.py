"""Customer.io exports (reference §3.9): ask for a file of people or deliveries, wait, download it.

An export is asynchronous: a POST creates it (`pending`), GETs poll it until `done` or `failed`,
`GET /v1/exports/{id}/download` hands out a signed URL that expires after 15 minutes, and that
URL, on a storage host rather than the App API, serves the file. The App API calls go through
the App client's `HttpClient` (its rate limit, retries and errors). The file comes through a
plain httpx client: no App key (the signed URL is its own credential) and no App rate limit.

The signed URL is a credential too: it is held as a `Secret`, fetched right before each
download, and never written to a log line, an error message or the cache.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pyarrow as pa

from ..errors import ApiError, InvalidParameter
from ..http import HttpClient, RequestStats, RetryPolicy, redact
from ..settings import Secret
from .errors import APP_SERVICE
from .export_files import DEFAULT_FORMAT, CorruptExportFile, ExportFormat, csv_tables
from .values import MATCH_ALL, to_unix

__all__ = ["Export", "ExportDownloadFailed", "ExportFailed", "ExportTimeout", "Exports",
           "PollPolicy", "DELIVERY_METRICS", "URL_LIFETIME"]

log = logging.getLogger("cio_mavera.customerio.exports")

URL_LIFETIME = timedelta(minutes=15)  # of a download URL (reference §3.9)
DELIVERY_METRICS = ("created", "attempted", "sent", "delivered", "opened", "clicked", "converted",
                    "bounced", "spammed", "unsubscribed", "dropped", "failed", "undeliverable")
MAX_DELIVERIES_SPAN = timedelta(days=366)  # "more than 12 months is truncated" (reference §3.9)
FILE_CHUNK_BYTES = 1 << 20
# Statuses of the file host that mean "this URL no longer works": expired, or signed wrongly.
_URL_REFUSED = frozenset({400, 401, 403, 404, 410})
_FILE_ROUTE = "GET export file"  # how file downloads are counted (never the URL itself)

TableSink = Callable[[int, pa.Table], None]
Progress = Callable[[int, "int | None"], None]


class ExportFailed(ApiError):
    """Customer.io reports the export as failed; only a new export can help."""


class ExportTimeout(ApiError):
    """The export was not done within the poll timeout (it may still finish)."""


class ExportDownloadFailed(ApiError):
    """The export's file could not be downloaded intact, even with fresh URLs."""


@dataclass(frozen=True)
class Export:
    """An export as the App API describes it (`total` is 0 until it is done)."""

    id: int
    type: str
    status: str
    failed: bool
    total: int
    created_at: int | None
    updated_at: int | None
    downloads: int
    description: str | None

    @classmethod
    def from_api(cls, item: dict[str, Any]) -> Export:
        """An `Export` from the API's object, or from a body that wraps it as {"export": ...}."""
        inner = item.get("export") if isinstance(item.get("export"), dict) else item
        try:
            export_id = int(inner["id"])
        except (KeyError, TypeError, ValueError):
            raise ApiError(f"Customer.io sent an export without a numeric id: {str(item)[:120]}",
                           service=APP_SERVICE) from None
        return cls(id=export_id, type=str(inner.get("type") or ""),
                   status=str(inner.get("status") or "").lower(),
                   failed=bool(inner.get("failed")), total=int(inner.get("total") or 0),
                   created_at=_int_or_none(inner.get("created_at")),
                   updated_at=_int_or_none(inner.get("updated_at")),
                   downloads=int(inner.get("downloads") or 0),
                   description=inner.get("description"))

    @property
    def is_failed(self) -> bool:
        return self.failed or self.status == "failed"

    @property
    def done(self) -> bool:
        return self.status == "done" and not self.failed


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class PollPolicy:
    """How an export is polled: growing pauses, and a timeout for the whole wait."""

    first_s: float = 1.0
    factor: float = 1.5
    max_s: float = 30.0
    timeout_s: float = 3600.0

    def pauses(self) -> Iterator[float]:
        """The pauses between polls: first_s, growing by `factor`, capped at max_s."""
        pause = self.first_s
        while True:
            yield pause
            pause = min(self.max_s, pause * self.factor)


class _UrlRefused(Exception):
    """The file host refused the signed URL (expired or invalid)."""


class _Transient(Exception):
    """The download broke off in a way another attempt may not."""


class Exports:
    """`AppClient.exports`: create, poll, list and download Customer.io exports."""

    def __init__(self, http: HttpClient, files: httpx.Client, *,
                 retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.http = http
        self.files = files
        self.file_stats = RequestStats()  # file downloads, apart from the App API's requests
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock

    # -- App API calls -----------------------------------------------------------------------

    def customers(self, filters: dict[str, Any] | None = None, *,
                  attributes: Sequence[str] | None = None) -> Export:
        """Start an export of the people matching `filters` (default: everyone)."""
        # The body's key is `filters` (plural), unlike the search endpoint's `filter`.
        body: dict[str, Any] = {"filters": filters or MATCH_ALL}
        if attributes is not None:
            body["attributes"] = _names(attributes)
        return self._create("/v1/exports/customers", body)

    def deliveries(self, *, campaign_id: int | None = None, action_id: int | None = None,
                   newsletter_id: int | None = None, start: Any = None, end: Any = None,
                   metric: str | None = None, attributes: Sequence[str] | None = None,
                   drafts: bool | None = None) -> Export:
        """Start an export of the deliveries of one campaign, action or newsletter.

        `start`/`end` bound the deliveries' creation time (unix seconds, ISO strings or
        datetimes); without them Customer.io exports the last 6 months, and truncates a range
        over 12 months. `metric` keeps deliveries that reached it (e.g. "unsubscribed").
        """
        owners = {name: value for name, value in (("campaign_id", campaign_id),
                                                  ("action_id", action_id),
                                                  ("newsletter_id", newsletter_id))
                  if value is not None}
        if len(owners) != 1:
            raise InvalidParameter("a deliveries export takes exactly one of campaign_id, "
                                   f"action_id or newsletter_id (got {sorted(owners) or 'none'})")
        body: dict[str, Any] = {name: int(value) for name, value in owners.items()}
        if start is not None:
            body["start"] = to_unix(start, "start")
        if end is not None:
            body["end"] = to_unix(end, "end")
        if "start" in body and "end" in body:
            if body["start"] >= body["end"]:
                raise InvalidParameter(f"start ({body['start']}) must be before end ({body['end']})")
            if body["end"] - body["start"] > MAX_DELIVERIES_SPAN.total_seconds():
                log.warning("a deliveries export covers at most 12 months; Customer.io will "
                            "truncate this one")
        if metric is not None:
            if metric not in DELIVERY_METRICS:
                raise InvalidParameter(f"metric={metric!r}; use one of {', '.join(DELIVERY_METRICS)}")
            body["metric"] = metric
        if attributes is not None:
            body["attributes"] = _names(attributes)
        if drafts is not None:
            body["drafts"] = bool(drafts)
        return self._create("/v1/exports/deliveries", body)

    def _create(self, path: str, body: dict[str, Any]) -> Export:
        # Not idempotent: an attempt that may have reached the server is not sent again (it
        # would start a second export); HttpClient retries only 429s and unopened connections.
        return Export.from_api(self.http.post_json(path, body))

    def list(self) -> list[Export]:
        """Every export of the workspace (the API answers `{"exports": null}` when there are none)."""
        return [Export.from_api(item) for item in self.http.get_json("/v1/exports").get("exports")
                or []]

    def get(self, export_id: int) -> Export:
        """One export; `NotFound` names it when it does not exist."""
        return Export.from_api(self.http.get_json(f"/v1/exports/{int(export_id)}"))

    def download_url(self, export_id: int) -> Secret:
        """A fresh signed URL for the export's file, valid for 15 minutes (held as a Secret)."""
        body = self.http.get_json(f"/v1/exports/{int(export_id)}/download")
        # The spec says `url`; the Node client's docs say `link` (reference §3.9).
        url = body.get("url") or body.get("link") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ApiError(f"Customer.io answered GET /v1/exports/{int(export_id)}/download "
                           "without a download URL", service=APP_SERVICE)
        return Secret(url)

    # -- waiting and downloading -------------------------------------------------------------

    def wait(self, export_id: int, *, poll: PollPolicy | None = None,
             on_state: Callable[[Export], None] | None = None) -> Export:
        """Poll until the export is done (returned), failed (`ExportFailed`) or `poll.timeout_s`
        has passed (`ExportTimeout`, naming the export so a later call can pick it up)."""
        poll = poll or PollPolicy()
        started = self._clock()
        pauses = poll.pauses()
        while True:
            export = self.get(export_id)
            if on_state is not None:
                on_state(export)
            if export.is_failed:
                raise ExportFailed(f"Customer.io export {export.id} failed (status "
                                   f"{export.status or 'failed'}); start a new export",
                                   service=APP_SERVICE, code="export_failed")
            if export.done:
                return export
            pause = next(pauses)
            waited = self._clock() - started
            if waited + pause > poll.timeout_s:
                raise ExportTimeout(
                    f"Customer.io export {export.id} was still {export.status or 'pending'} "
                    f"after {waited:.0f} s (timeout {poll.timeout_s:.0f} s); it may finish "
                    f"later: wait for export {export.id} again, or raise the timeout",
                    service=APP_SERVICE, code="export_timeout")
            self._sleep(pause)

    def download(self, export: Export | int, on_table: TableSink, *,
                 fmt: ExportFormat = DEFAULT_FORMAT, attempts: int = 4,
                 progress: Progress | None = None) -> tuple[int, int]:
        """Stream the export's file into `on_table(index, table)`; return (rows, tables).

        Each attempt fetches a fresh signed URL right before downloading and numbers its tables
        from 0, so a later attempt's table i replaces an earlier one's; the caller keeps tables
        0..tables-1 of the attempt that returned. An attempt fails on a refused URL (expired: a
        new one is fetched), a broken connection or 5xx, a file that does not read to its end,
        or one with another number of rows than the export's `total`. After `attempts` failures
        `ExportDownloadFailed` names the export and the last reason. The file is never trusted
        before it has been read to its end.
        """
        if isinstance(export, int) or not export.done:
            export = self.get(export if isinstance(export, int) else export.id)
            if not export.done:
                raise ApiError(f"Customer.io export {export.id} is {export.status or 'not done'}; "
                               "wait for it before downloading", service=APP_SERVICE)
        reason, unreadable = "no attempt made", False
        for attempt in range(1, max(1, attempts) + 1):
            url = self.download_url(export.id)
            try:
                rows, tables = self._attempt(export, url, on_table, fmt, progress)
            except _UrlRefused as exc:
                reason, unreadable = f"the file host refused the download URL ({exc}; expired?)", False
                pause = 0.0
            except (_Transient, CorruptExportFile) as exc:
                reason = redact(str(exc), _url_parts(url))
                unreadable = isinstance(exc, CorruptExportFile)
                pause = self._retry.backoff(attempt)
            else:
                return rows, tables
            if attempt < attempts:
                log.warning("export %d: %s; downloading again with a fresh URL (attempt %d of %d)",
                            export.id, reason, attempt + 1, attempts)
                self._sleep(pause)
        hint = ("; if every download reads this way, the file may not be in the format the kit "
                "assumes (Customer.io does not document it): see ExportFormat in "
                "cio_mavera/customerio/export_files.py" if unreadable else "; try again later")
        raise ExportDownloadFailed(
            f"Customer.io export {export.id}: the file could not be downloaded intact in "
            f"{attempts} attempts (last: {reason}){hint}", service=APP_SERVICE,
            code="export_download_failed")

    def _attempt(self, export: Export, url: Secret, on_table: TableSink, fmt: ExportFormat,
                 progress: Progress | None) -> tuple[int, int]:
        rows = tables = 0
        answered = False
        try:
            with self.files.stream("GET", url.reveal()) as response:
                self.file_stats.record(_FILE_ROUTE, response.status_code)
                answered = True
                status = response.status_code
                if status in _URL_REFUSED:
                    raise _UrlRefused(f"HTTP {status}")
                if status >= 300:
                    raise _Transient(f"the file host answered HTTP {status}")
                for table in csv_tables(response.iter_bytes(FILE_CHUNK_BYTES), fmt):
                    on_table(tables, table)
                    tables += 1
                    rows += table.num_rows
                    if progress is not None:
                        progress(rows, export.total or None)
        except httpx.DecodingError as exc:
            raise CorruptExportFile(f"the file's content encoding is damaged ({exc})") from None
        except httpx.TransportError as exc:
            if not answered:
                self.file_stats.record(_FILE_ROUTE, None)
            raise _Transient(f"the download broke off ({type(exc).__name__}: "
                             f"{redact(str(exc), _url_parts(url))})") from None
        if fmt.total_counts_rows and export.total and rows != export.total:
            raise CorruptExportFile(f"the file holds {rows:,} rows, the export says "
                                    f"{export.total:,} (truncated?)")
        if fmt.total_counts_rows and not export.total and rows:
            log.warning("export %d reports total 0 but its file holds %d rows", export.id, rows)
        return rows, tables

    def collect(self, export: Export | int, on_table: TableSink, *,
                poll: PollPolicy | None = None, fmt: ExportFormat = DEFAULT_FORMAT,
                on_state: Callable[[Export], None] | None = None,
                progress: Progress | None = None) -> tuple[Export, int, int]:
        """Wait for an export, then download it: (the done export, rows, tables).

        E.g. `exports.collect(exports.deliveries(campaign_id=7, start=..., end=...), on_table)`.
        """
        export_id = export if isinstance(export, int) else export.id
        done = self.wait(export_id, poll=poll, on_state=on_state)
        rows, tables = self.download(done, on_table, fmt=fmt, progress=progress)
        return done, rows, tables


def _names(attributes: Sequence[str]) -> list[str]:
    if isinstance(attributes, str) or not all(isinstance(a, str) and a for a in attributes):
        raise InvalidParameter("attributes must be a list of attribute names")
    return list(attributes)


def _url_parts(url: Secret) -> list[str]:
    """The URL and its query (the signature), for redaction."""
    full = url.reveal()
    return [full, full.partition("?")[2]]
