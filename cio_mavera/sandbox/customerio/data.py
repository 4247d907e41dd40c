"""What the Customer.io routes read: data derived once from the workspace, and the state behind a request."""

from __future__ import annotations

from starlette.requests import Request

from ..state import SandboxState, sandbox_of
from ..workspace import Workspace
from .deliveries import Messages
from .directory import Directory
from .people import People
from .sends import Broadcasts, Newsletters
from .state import CioState


class CioData:
    """Everything the App routes derive from the workspace, built once on first use."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.people = People(ws)
        self.broadcasts = Broadcasts(ws)
        self.newsletters = Newsletters(ws)
        # The workspace's "now": its end, so a pinned sandbox answers the same on any day.
        self.generated_at = int(ws.end.timestamp())
        self.messages = Messages(ws, self.newsletters, self.generated_at)
        self.campaign_ids = set(int(c) for c in ws.campaigns["campaign_id"])
        self.segment_ids = set(int(s) for s in ws.segments["segment_id"])


def cio_data(state: SandboxState) -> CioData:
    """The derived data of `state`'s workspace, built on first use (kept across resets)."""
    cio: CioState = state.cio
    with cio.derived_lock:
        if cio.derived is None:
            cio.derived = CioData(state.workspace)
        return cio.derived


def data_of(request: Request) -> CioData:
    """The derived workspace data of the sandbox serving `request`."""
    return cio_data(sandbox_of(request))


def directory(state: SandboxState) -> Directory:
    """The people the App API reads for `state`: the workspace's, with what Track wrote."""
    data = cio_data(state)
    return Directory(data.people, state.cio.written, data.generated_at)


def directory_of(request: Request) -> Directory:
    """The people directory of the sandbox serving `request`."""
    return directory(sandbox_of(request))


def warm_up(state: SandboxState) -> None:
    """Build the workspace and the lookups a pull's first requests need before serving.

    Built lazily, they stall the first requests for seconds (1M customers), and the requests queued
    behind the stall then reach the rate limiter in a clump and get 429s no client could avoid.
    """
    people = cio_data(state).people
    people.search({"and": [{"attribute": {"field": "cio_id", "operator": "exists"}}]})
    people.find("cio_id", [])
