"""The sandbox's exports: what was asked for, when each file is ready, and the signed URLs to it.

An export is `pending` until its file is written (in a background thread) and `delay_s` has passed
on the store's clock, then `done` with `total` rows; one marked to fail turns `failed` instead.
Download URLs point at the sandbox's file host (`/cio-files`, no App key, no App rate limit) and
carry an expiry and an HMAC signature, as a storage bucket's pre-signed URLs do; after `url_ttl_s`
(15 minutes, as documented) the file host refuses them.

Knobs (attributes of `state.cio.exports`; `POST /__sandbox__/reset` restores the defaults):
`delay_s`, `url_ttl_s`, `fail_next` (the next k exports fail), `damage_next` (the next downloads are
served damaged: "truncate" a complete answer of half the file, "garble" bytes flipped mid-file,
"cut" the connection dropped half way), and the clock (`use_clock`: tests move a fake one
instead of waiting).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

DEFAULT_DELAY_S = 5.0  # pending at least this long (real exports take minutes; UNVERIFIED)
URL_TTL_S = 15 * 60  # "the URL expires after 15 minutes" (customerio-api.md §3.9)
FIRST_EXPORT_ID = 101
DAMAGE_MODES = ("truncate", "garble", "cut")


@dataclass
class SandboxExport:
    """One export: its kind, timing, outcome and file."""

    id: int
    type: str
    description: str
    created_at: int  # sandbox unix time
    created_clock: float
    fails: bool
    file_name: str
    path: Path | None = None
    total: int = 0
    downloads: int = 0
    error: str | None = None
    rendered: threading.Event = field(default_factory=threading.Event)

    def status(self, now_clock: float, delay_s: float) -> str:
        """pending, done or failed, at `now_clock` on the store's clock."""
        if now_clock - self.created_clock < delay_s:
            return "pending"
        if self.fails or self.error:
            return "failed"
        return "done" if self.rendered.is_set() else "pending"


class ExportStore:
    """Every export of one sandbox, their files (in a temporary directory) and their URL signing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key = secrets.token_bytes(32)
        self._dir: Path | None = None
        self._defaults()
        self.exports: dict[int, SandboxExport] = {}
        self._next_id = FIRST_EXPORT_ID

    def _defaults(self) -> None:
        self.delay_s = DEFAULT_DELAY_S
        self.url_ttl_s = URL_TTL_S
        self.fail_next = 0
        self.damage_next: list[str] = []
        self.use_clock(time.monotonic)

    def use_clock(self, clock: Callable[[], float]) -> None:
        """Measure delays and URL lifetimes on `clock` (tests move a fake one instead of waiting)."""
        self.clock = clock
        self._t0 = clock()

    def now(self, base: int) -> int:
        """The sandbox's unix time: `base` (the workspace's end) plus the store's elapsed time."""
        return base + int(self.clock() - self._t0)

    def directory(self) -> Path:
        """Where export files are written (created on first use, removed at exit)."""
        with self._lock:
            if self._dir is None:
                self._holder = tempfile.TemporaryDirectory(prefix="cio-mavera-sandbox-exports-")
                self._dir = Path(self._holder.name)
            return self._dir

    def create(self, kind: str, description: str, base: int,
               render: Callable[[Path], int]) -> SandboxExport:
        """Record a new export and write its file in the background with `render(path) -> rows`."""
        with self._lock:
            export = SandboxExport(id=self._next_id, type=kind, description=description,
                                   created_at=self.now(base), created_clock=self.clock(),
                                   fails=self.fail_next > 0, file_name=f"{kind}.csv.gz")
            self._next_id += 1
            self.fail_next = max(0, self.fail_next - 1)
            self.exports[export.id] = export
        if not export.fails:
            path = self.directory() / f"{export.id}-{secrets.token_hex(4)}.csv.gz"
            threading.Thread(target=self._render, args=(export, path, render),
                             name=f"sandbox-export-{export.id}", daemon=True).start()
        return export

    def _render(self, export: SandboxExport, path: Path, render: Callable[[Path], int]) -> None:
        try:
            export.total = render(path)
            export.path = path
        except Exception as exc:  # a failed render is a failed export, as the service would say
            export.error = f"{type(exc).__name__}: {exc}"
        finally:
            export.rendered.set()

    def get(self, export_id: int) -> SandboxExport | None:
        with self._lock:
            return self.exports.get(export_id)

    def all(self) -> list[SandboxExport]:
        with self._lock:
            return list(self.exports.values())

    def status(self, export: SandboxExport) -> str:
        return export.status(self.clock(), self.delay_s)

    def describe(self, export: SandboxExport) -> dict[str, Any]:
        """The export object of the App API (`total` is 0 until done)."""
        status = self.status(export)
        finished = export.created_at + int(self.delay_s) if status != "pending" else export.created_at
        return {"id": export.id, "user_id": 0, "user_email": None,
                "total": export.total if status == "done" else 0,
                "deduplicate_id": f"{export.id}:{export.created_at}", "type": export.type,
                "failed": status == "failed", "status": status,
                "description": export.description, "downloads": export.downloads,
                "created_at": export.created_at, "updated_at": finished}

    # -- signed URLs -------------------------------------------------------------------------

    def _signature(self, export_id: int, name: str, expires: int) -> str:
        message = f"{export_id}/{name}/{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def signed_path(self, export: SandboxExport, base: int) -> str:
        """`/exports/<id>/<name>?expires=..&signature=..` under the file host, valid url_ttl_s."""
        expires = self.now(base) + int(self.url_ttl_s)
        query = urlencode({"expires": expires,
                           "signature": self._signature(export.id, export.file_name, expires)})
        return f"/exports/{export.id}/{export.file_name}?{query}"

    def check_signature(self, export_id: int, name: str, expires: str, signature: str) -> bool:
        """Whether the query was signed by this store for this file."""
        if not expires.isdigit():
            return False
        return hmac.compare_digest(self._signature(export_id, name, int(expires)), signature)

    def take_damage(self) -> str | None:
        """The damage to serve the next download with, if a test asked for some."""
        with self._lock:
            return self.damage_next.pop(0) if self.damage_next else None

    def reset(self) -> None:
        """Forget every export and its file; restore the knobs' defaults."""
        with self._lock:
            self.exports.clear()
            self._next_id = FIRST_EXPORT_ID
            self._defaults()
            folder = self._dir
        if folder is not None:
            for path in folder.iterdir():
                with contextlib.suppress(OSError):
                    path.unlink() if path.is_file() else shutil.rmtree(path)
