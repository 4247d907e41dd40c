"""The parquet cache: `<cache_dir>/<dataset>/<key>/` with a manifest, written atomically, in parts.

Each entry is one dataset pulled with one set of parameters. Its `manifest.json` records the
parameters, schema version, status (`partial` while a pull runs, `complete` after), when it was
pulled, its rows, and every stored part with its size and SHA-256. A pull stores its data in
parts as it goes, so a pull that dies half way resumes from the parts already stored. Any file
that is unreadable, altered, or of another schema version is refetched, never trusted.
Only what the API returned and the pull's parameters are stored: never a key or a URL with one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import CacheError
from .files import atomic_path, atomic_write

log = logging.getLogger("cio_mavera.cache")

MANIFEST = "manifest.json"
MaxAge = timedelta | float | int | None


def _now() -> datetime:
    return datetime.now(UTC)


def _seconds(max_age: MaxAge) -> float | None:
    if max_age is None:
        return None
    return max_age.total_seconds() if isinstance(max_age, timedelta) else float(max_age)


def entry_key(parameters: dict[str, Any]) -> str:
    """A short stable name for a parameter set (its hash; the manifest keeps the full values)."""
    text = json.dumps(parameters, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pulled_at(df: pd.DataFrame) -> pd.Timestamp | None:
    """When the data in `df` was pulled from the API (UTC), if it came through the cache."""
    value = df.attrs.get("pulled_at")
    return pd.Timestamp(value) if value is not None else None


class CacheEntry:
    """One dataset pulled with one parameter set: its manifest and its parquet parts."""

    def __init__(self, root: Path, dataset: str, parameters: dict[str, Any],
                 schema_version: int) -> None:
        self.dataset = dataset
        # A JSON round trip makes the stored and the compared parameters the same types.
        self.parameters = json.loads(json.dumps(parameters, sort_keys=True, default=str))
        self.schema_version = schema_version
        self.path = Path(root) / dataset / entry_key(self.parameters)
        self._manifest: dict[str, Any] | None = None

    # -- manifest ----------------------------------------------------------------------------

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def read_manifest(self) -> dict[str, Any] | None:
        """The stored manifest if it is readable and belongs to this dataset and schema."""
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("cache manifest %s is unreadable (%s); refetching", self.manifest_path, exc)
            return None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("parts"), dict):
            log.warning("cache manifest %s is malformed; refetching", self.manifest_path)
            return None
        if manifest.get("schema_version") != self.schema_version:
            log.warning("cache %s has schema version %s, expected %s; refetching", self.path,
                        manifest.get("schema_version"), self.schema_version)
            return None
        if manifest.get("dataset") != self.dataset or manifest.get("parameters") != self.parameters:
            log.warning("cache manifest %s describes another pull; refetching", self.manifest_path)
            return None
        return manifest

    def _write_manifest(self) -> None:
        assert self._manifest is not None
        data = json.dumps(self._manifest, indent=1, sort_keys=True).encode()
        atomic_write(self.manifest_path, data)

    @staticmethod
    def _age_s(manifest: dict[str, Any]) -> float:
        stamp = manifest.get("pulled_at") or manifest.get("started_at")
        try:
            return (_now() - datetime.fromisoformat(stamp)).total_seconds()
        except (TypeError, ValueError):
            return float("inf")

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold this entry exclusively (a second pull of the same data waits, then reads it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.parent / f".{self.path.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- reading -----------------------------------------------------------------------------

    def load(self, max_age: MaxAge = None) -> pd.DataFrame | None:
        """The complete, intact, fresh-enough data, or None when it must be (re)fetched.

        A damaged part is dropped from the manifest, so the next pull refetches only that part.
        """
        manifest = self.read_manifest()
        if manifest is None or manifest.get("status") != "complete":
            return None
        limit = _seconds(max_age)
        if limit is not None and self._age_s(manifest) > limit:
            log.info("cache %s is older than %.0f s; refetching", self.path, limit)
            return None
        self._manifest = manifest
        frames = []
        for name in self.data_parts():
            frame = self.read_part(name)
            if frame is None:
                self._manifest["status"] = "partial"
                self._write_manifest()
                return None
            frames.append(frame)
        if frames:
            df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        else:
            df = pd.DataFrame()
        df.attrs["pulled_at"] = pd.Timestamp(manifest["pulled_at"])
        df.attrs["cache_path"] = str(self.path)
        return df

    def data_parts(self) -> list[str]:
        """Names of the stored data parts, in order."""
        parts = (self._manifest or {}).get("parts", {})
        return sorted(n for n, p in parts.items() if p.get("kind", "data") == "data")

    def has_part(self, name: str, key: str | None = None) -> bool:
        """True when part `name` is recorded (with the same `key`, if given) and its file exists."""
        part = (self._manifest or {}).get("parts", {}).get(name)
        return bool(part) and (key is None or part.get("key") == key) and \
            (self.path / part["file"]).is_file()

    def read_part(self, name: str) -> pd.DataFrame | None:
        """Part `name` if recorded and intact; a damaged one is forgotten (with a warning)."""
        part = (self._manifest or {}).get("parts", {}).get(name)
        if not part:
            return None
        path = self.path / part["file"]
        try:
            if _sha256(path) != part["sha256"]:
                raise CacheError("checksum mismatch")
            table = pq.read_table(path)
            if table.num_rows != part["rows"]:
                raise CacheError(f"{table.num_rows} rows, manifest says {part['rows']}")
            return table.to_pandas()
        except (OSError, CacheError, pa.ArrowException, KeyError) as exc:
            log.warning("cache file %s is damaged (%s); it will be refetched", path, exc)
            self._forget(name)
            return None

    def _forget(self, name: str) -> None:
        part = self._manifest["parts"].pop(name, None) if self._manifest else None
        if part:
            with contextlib.suppress(OSError):
                (self.path / part["file"]).unlink()
            self._write_manifest()

    # -- writing -----------------------------------------------------------------------------

    def begin(self, *, refresh: bool = False, max_age: MaxAge = None,
              resume: bool = True) -> list[str]:
        """Start a pull; keep the parts of an unfinished recent pull of the same data (resume).

        Returns the names of the parts kept.
        """
        manifest = None if refresh else self.read_manifest()
        limit = _seconds(max_age)
        keep = (resume and manifest is not None and manifest.get("status") == "partial"
                and (limit is None or self._age_s(manifest) <= limit))
        if keep:
            assert manifest is not None
            self._manifest = manifest
            kept = [n for n in list(manifest["parts"]) if self.has_part(n)]
            manifest["parts"] = {n: manifest["parts"][n] for n in kept}
            self._write_manifest()
            if kept:
                log.info("resuming %s pull with %d stored part(s)", self.dataset, len(kept))
            return kept
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._manifest = {
            "dataset": self.dataset,
            "parameters": self.parameters,
            "schema_version": self.schema_version,
            "status": "partial",
            "started_at": _now().isoformat(),
            "pulled_at": None,
            "rows": 0,
            "requests": 0,
            "parts": {},
        }
        self._write_manifest()
        return []

    def write_part(self, name: str, df: pd.DataFrame, *, key: str | None = None,
                   kind: str = "data", requests: int = 0) -> None:
        """Store part `name` atomically and record it (with `key`, e.g. a hash of its ids)."""
        if self._manifest is None:
            raise CacheError("CacheEntry.begin() must be called before write_part()")
        file = f"{name}.parquet"
        path = self.path / file
        with atomic_path(path) as tmp:
            df.to_parquet(tmp, index=False)
        self._manifest["parts"][name] = {"file": file, "rows": len(df), "kind": kind,
                                         "key": key, "bytes": path.stat().st_size,
                                         "sha256": _sha256(path)}
        self._manifest["requests"] = int(self._manifest.get("requests", 0)) + requests
        self._write_manifest()

    def complete(self, keep: Iterable[str] | None = None) -> None:
        """Mark the pull finished: drop data parts not in `keep` (if given), count rows, stamp."""
        if self._manifest is None:
            raise CacheError("CacheEntry.begin() must be called before complete()")
        parts = self._manifest["parts"]
        if keep is not None:
            wanted = set(keep)
            for name in [n for n, p in parts.items()
                         if p.get("kind", "data") == "data" and n not in wanted]:
                with contextlib.suppress(OSError):
                    (self.path / parts.pop(name)["file"]).unlink()
        self._manifest["rows"] = sum(p["rows"] for p in parts.values()
                                     if p.get("kind", "data") == "data")
        self._manifest["status"] = "complete"
        self._manifest["pulled_at"] = _now().isoformat()
        self._write_manifest()


class Cache:
    """The cache of one connection: `Cache(connection.cache_dir)`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def entry(self, dataset: str, parameters: dict[str, Any], schema_version: int) -> CacheEntry:
        """The entry for `dataset` pulled with `parameters`."""
        return CacheEntry(self.root, dataset, parameters, schema_version)
