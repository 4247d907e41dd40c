"""The one metered call every Mavera request goes through: PII guard -> response cache -> credit
budget -> send -> ledger.

The guard refuses a body (or query) holding personal data by pattern (`pii`: emails, phones,
street addresses, customer ids) or naming one of the workspace's own people (`known_people`: full
names, emails, phones, ids and cio_ids from the customers cache, when one was pulled).

`MeteredCore.call` runs the whole sequence for a request with one JSON answer. Streaming and
focus-group polling are not one request and one answer, so they drive the same steps themselves
through a `MeteredCall` (guard, cache lookup, reserve, settle or release, store) instead of a copy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from ..errors import ApiError
from ..http import HttpClient, RetryPolicy
from ..known_people import WorkspacePeople
from ..pii import contains_pii
from .budget import DEFAULT_WORST_CASE, CreditBudget, Reservation
from .errors import SERVICE, PiiBlocked
from .ledger import CreditsLedger
from .listing_cache import ListingCache
from .models import credits_of
from .ratelimit import KeyLimits, held
from .response_cache import ResponseCache, request_key

log = logging.getLogger("cio_mavera.mavera")

PAGE_LIMIT = 100  # documented max page size
# The reference's retry advice: 429, 500 and 503 only (plus connection errors, in HttpClient).
RETRY = RetryPolicy(retry_statuses=frozenset({429, 500, 503}))

Check = Callable[[dict[str, Any]], None]


class MeteredCall:
    """One call's trip through the core's steps, for callers that send it themselves.

    `cached()` answers from the response cache (a 0-credit ledger row); `charging()` holds the
    worst case while the request runs and releases it if the block fails before `settle`;
    `settle(credits)` books what the server charged; `store(data)` caches the answer.
    """

    def __init__(self, core: MeteredCore, endpoint: str, key: str | None, cost: str | None,
                 what: str, multiplier: int) -> None:
        self.core = core
        self.endpoint = endpoint
        self.key = key
        self.cost = cost
        self.what = what or endpoint
        self.multiplier = multiplier
        self.reservation: Reservation | None = None
        self.done = False

    def cached(self) -> Any | None:
        """The stored answer (booked as a cached call), or None when it must be sent."""
        core = self.core
        if self.key is None or core.refresh:
            return None
        hit = core.cache.get(self.key)
        if hit is not None:
            core.record(self.endpoint, 0, cached=True)
            log.debug("mavera %s served from cache", self.endpoint)
        return hit

    def reserve(self) -> None:
        """Hold the call's worst case in the budget (raises BudgetExceeded before anything is sent)."""
        budget = self.core.budget
        if budget is not None and self.cost is not None:
            self.reservation = budget.reserve(self.cost, self.what, multiplier=self.multiplier)

    @contextmanager
    def charging(self) -> Iterator[MeteredCall]:
        """Reserve for the block; a block that raises before settling releases the reservation."""
        self.reserve()
        try:
            yield self
        except BaseException:
            if not self.done:
                self.release()
            raise

    def worst_case(self) -> int:
        """The most this call can cost (what is booked when its real cost cannot be known)."""
        return self.core.worst_case(self.cost) if self.cost is not None else 0

    def settle(self, credits: int, *, record: bool = True) -> None:
        """Book `credits` against the reservation, and in the ledger unless already recorded."""
        self._close_reservation(credits)
        if record:
            self.core.record(self.endpoint, credits, cached=False)

    def release(self) -> None:
        """Drop the reservation of a call the server did not charge, and flush the ledger."""
        self._close_reservation(0)
        self.core.safe_flush()  # a run stopped here keeps the calls it already made

    def hold(self) -> None:
        """Leave the reservation held: the server may still charge (a focus group that timed out)."""
        self.done = True

    def _close_reservation(self, credits: int) -> None:
        self.done = True
        budget, reservation = self.core.budget, self.reservation
        if budget is not None and reservation is not None:
            budget.settle(reservation, credits)

    def store(self, data: Any) -> None:
        """Cache the answer for re-runs (a call that was not cacheable stores nothing)."""
        if self.key is not None:
            self.core.cache.put(self.key, data, endpoint=self.endpoint)


class MeteredCore:
    """The request machinery under `MaveraClient`: guard, cache, budget, send, ledger, paging."""

    def __init__(self, *, http: HttpClient, limits: KeyLimits, cache: ResponseCache,
                 listings: ListingCache, ledger: CreditsLedger, locks_dir: Path, base_url: str,
                 run_id: str, job: str, budget: CreditBudget | None, use_cache: bool,
                 refresh: bool, pii_guard: bool, workspace_id: str | None = None,
                 people: WorkspacePeople | None = None) -> None:
        self.http = http
        self.limits = limits
        self.cache = cache
        self.listings = listings
        self.ledger = ledger
        self.locks_dir = locks_dir
        self.base_url = base_url
        self.run_id = run_id
        self.job = job
        self.budget = budget
        self.use_cache = use_cache
        self.refresh = refresh
        self.pii_guard = pii_guard
        self.people = people  # the workspace's own people, checked in every payload when given
        self.workspace_id = workspace_id  # MAVERA_WORKSPACE_ID, or what client.workspaces found

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Flush the ledger and close the connection pool."""
        try:
            self.ledger.flush()
        finally:
            self.http.close()

    def credits_spent(self) -> int:
        """Credits this run has spent so far (cached calls count 0)."""
        return self.ledger.credits_spent(self.run_id)

    @property
    def stats(self) -> dict[str, Any]:
        """Requests made, retries, 429s, seconds waited, cache hits and misses."""
        return {**self.http.stats.snapshot(), "cache_hits": self.cache.hits,
                "cache_misses": self.cache.misses,
                "gate_waited_s": round(self.limits.gate.waited_s, 3)}

    # -- the steps ---------------------------------------------------------------------------

    def guard(self, endpoint: str, body: Any) -> None:
        """Refuse (PiiBlocked) a body holding personal data: by pattern, or one of the workspace's people.

        The message names the kind of data and where it sits in the body, never the value.
        """
        if not self.pii_guard or body is None:
            return
        findings = contains_pii(body)
        known = self.people.current() if self.people is not None else None
        if known is not None:
            findings += [f"{path}: {kind}" for path, kind in known.find(body)]
        if findings:
            shown = ", ".join(findings[:5]) + (f" and {len(findings) - 5} more" if len(findings) > 5 else "")
            whose = (" ('a customer's ...': it matches someone in this workspace's customers cache)"
                     if any("a customer's" in f for f in findings) else "")
            raise PiiBlocked(
                f"refused to send {endpoint} to Mavera: personal data at {shown}{whose}; remove it "
                "first (cio_mavera.pii.strip_pii, redact_text) -- only aggregates, persona "
                "descriptions and message copy may leave the machine", findings=findings)

    def record(self, endpoint: str, credits: int, *, cached: bool) -> None:
        """One ledger row for this run."""
        self.ledger.record(run=self.run_id, job=self.job, endpoint=endpoint, credits=credits,
                           cached=cached)

    def book(self, endpoint: str, credits: int) -> None:
        """Account credits charged outside any reservation (a charge discovered after the fact)."""
        if self.budget is not None:
            self.budget.charge(credits)
        self.record(endpoint, credits, cached=False)

    def safe_flush(self) -> None:
        """Flush the ledger, logging rather than raising (used while another error propagates)."""
        try:
            self.ledger.flush()
        except OSError as exc:
            log.warning("could not flush the credits ledger: %s", exc)

    def worst_case(self, kind: str) -> int:
        """The budget's worst-case credits for one call of `kind`."""
        return int((self.budget.worst_case if self.budget else DEFAULT_WORST_CASE)[kind])

    def begin(self, endpoint: str, method: str, path: str, body: Any = None, *,
              cost: str | None = None, what: str = "", multiplier: int = 1,
              cacheable: bool = False) -> MeteredCall:
        """Guard `body` and open a metered call (cache key only when cacheable and caching is on)."""
        self.guard(endpoint, body)
        key = (request_key(method, path, body, self.base_url)
               if cacheable and self.use_cache else None)
        return MeteredCall(self, endpoint, key, cost, what, multiplier)

    def send(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None,
             idempotent: bool | None = None,
             slot: threading.BoundedSemaphore | None = None) -> httpx.Response:
        """One request through the shared HTTP layer, inside a concurrency slot when given."""
        if slot is None:
            return self.http.request(method, path, params=params, json=body, idempotent=idempotent)
        with held(slot):
            return self.http.request(method, path, params=params, json=body, idempotent=idempotent)

    # -- the whole sequence ------------------------------------------------------------------

    def call(self, endpoint: str, method: str, path: str, *, body: Any = None,
             params: dict[str, Any] | None = None, cost: str | None = None, multiplier: int = 1,
             what: str = "", cacheable: bool = False, idempotent: bool | None = None,
             slot: threading.BoundedSemaphore | None = None,
             check: Check | None = None) -> tuple[dict[str, Any], bool]:
        """Send one request through guard, cache, budget and ledger; return (JSON body, was_cached)."""
        if params:
            self.guard(endpoint, {"query": params})
        call = self.begin(endpoint, method, path, body, cost=cost, what=what,
                          multiplier=multiplier, cacheable=cacheable)
        hit = call.cached()
        if hit is not None:
            return hit, True
        with call.charging():
            response = self.send(method, path, body=body, params=params, idempotent=idempotent,
                                 slot=slot)
            data = json_body(response, endpoint)
            call.settle(credits_of(data))
        if check is not None:
            check(data)  # an answer that fails its check is paid for but never cached
        call.store(data)
        return data, False

    def paged(self, endpoint: str, path: str, params: dict[str, Any] | None = None) -> list[dict]:
        """Every item of a list endpoint: follows `next_cursor`, else `offset` while `has_more`."""
        base = {"limit": PAGE_LIMIT, **(params or {})}
        items: list[dict] = []
        page_params = dict(base)
        seen: set[str] = set()
        while True:
            data, _ = self.call(endpoint, "GET", path, params=page_params)
            page = data.get("data") or []
            items.extend(page)
            cursor = data.get("next_cursor")
            if cursor and cursor not in seen:
                seen.add(cursor)
                page_params = {**base, "cursor": cursor}
            elif data.get("has_more") and page and not cursor:
                offset = int(data.get("offset") or page_params.get("offset") or 0) + len(page)
                page_params = {**base, "offset": offset}
            else:
                return items


class Resource:
    """A namespace of endpoint methods over one `MeteredCore` (as `client.personas`)."""

    def __init__(self, core: MeteredCore) -> None:
        self._core = core


def json_body(response: httpx.Response, endpoint: str) -> dict[str, Any]:
    """The response's JSON object (a bare list becomes {"data": [...]}, no body becomes {})."""
    if not response.content:
        return {}
    try:
        data = response.json()
    except ValueError:
        raise ApiError(f"Mavera {endpoint} answered {response.status_code} with a body that is "
                       "not JSON", service=SERVICE, status=response.status_code) from None
    return data if isinstance(data, dict) else {"data": data}
