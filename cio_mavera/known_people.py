"""The workspace's own people as a fast lookup: does this payload name one of them?

Built from the customers cache (every audience pulled, however old: stale data still names real
people), it holds 64-bit hashes of each person's full name (first and last together; case,
accents, punctuation and spacing normalised), email, phone (its last nine digits, so +33 6 12 34 56
78 and 06 12 34 56 78 are one number), id and cio_id, one sorted array per kind. Checking a string
hashes its word pairs and triples, its email addresses (obfuscated ones written out), its digit
runs and its tokens, then does one binary search per kind: about 8 bytes per identifier, and a
typical payload checked in well under a millisecond. Ids that cannot be told from ordinary words
or numbers are left out: shorter than 6 characters, or digits only with fewer than 8 and no
leading zero.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cio_mavera.cache import MANIFEST
from cio_mavera.pii_text import decode, digit_groups, email_addresses, strings_in

log = logging.getLogger("cio_mavera.pii")

NAME = "a customer's full name"
EMAIL = "a customer's email"
PHONE = "a customer's phone number"
ID = "a customer's id"
CIO_ID = "a customer's cio_id"
KINDS = (NAME, EMAIL, PHONE, ID, CIO_ID)

PHONE_DIGITS = 9  # phones are compared on their last nine digits (national numbers, any prefix)
_FIRST = {"first_name", "firstname", "given_name", "forename"}
_LAST = {"last_name", "lastname", "surname", "family_name"}
_FULL = {"name", "full_name", "fullname", "contact_name", "person_name", "display_name"}
_PHONE_WORDS = {"phone", "mobile", "cell", "telephone", "tel", "msisdn", "whatsapp", "sms"}
_WORD_RE = re.compile(r"[^\W\d_]+")
_TOKEN_RE = re.compile(r"[\w][\w.:@+/-]*")
_COMBINING_RE = re.compile(r"[\u0300-\u036f]")
_JOINERS_RE = re.compile(r"[.:@+/]")  # an id inside a URL, an address or a path is looked up alone


@dataclass(frozen=True)
class KnownPeople:
    """Hashed identifiers of a workspace's people; `find(payload)` says which kinds a payload holds."""

    hashes: Mapping[str, np.ndarray] = field(default_factory=dict)  # kind -> sorted uint64
    name_lengths: tuple[int, ...] = ()  # how many words the full names held have
    people: int = 0  # distinct people (by cio_id) the identifiers came from

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> KnownPeople:
        """The people of a customers frame (cio_id, id, email, name and phone columns)."""
        return cls.from_frames([df])

    @classmethod
    def from_frames(cls, frames: Iterable[pd.DataFrame]) -> KnownPeople:
        """The people of several customers frames (parts of a pull, or several pulls)."""
        keys: dict[str, set[str]] = {kind: set() for kind in KINDS}
        cio_ids: set[str] = set()
        unkeyed = 0  # rows without a cio_id, counted as people of their own
        for df in frames:
            if "cio_id" in df:
                cio_ids.update(_distinct(df["cio_id"]))
                unkeyed += int(df["cio_id"].isna().sum())
            else:
                unkeyed += len(df)
            for kind, values in _identifiers(df).items():
                keys[kind].update(values)
        lengths = sorted({k.count(" ") + 1 for k in keys[NAME]})
        hashes = {kind: np.unique(_hash(sorted(values))) for kind, values in keys.items() if values}
        return cls(hashes, tuple(lengths), len(cio_ids) + unkeyed)

    @classmethod
    def from_cache(cls, cache_dir: Path) -> KnownPeople:
        """Everyone in the customers cache under `cache_dir` (empty when nobody was pulled yet)."""
        return cls.from_frames(_cached_frames(Path(cache_dir)))

    def __len__(self) -> int:
        return sum(len(h) for h in self.hashes.values())

    def kinds_in(self, text: str) -> list[str]:
        """Which kinds of this workspace's identifiers occur in `text`."""
        if not self.hashes:
            return []
        text = decode(text)
        tokens = _tokens(text)
        candidates = {NAME: _name_grams(text, self.name_lengths), EMAIL: email_addresses(text),
                      PHONE: _phone_keys(text), ID: tokens, CIO_ID: tokens}
        flat = [c for kind in (NAME, EMAIL, PHONE, ID) for c in candidates[kind]]
        if not flat:
            return []
        hashed = _hash(flat)  # one call for every candidate: hashing has a fixed cost per call
        found, at = [], 0
        for kind in KINDS:
            start = at if kind != CIO_ID else at - len(tokens)  # cio_ids are looked up among the tokens
            stop = start + len(candidates[kind])
            if kind != CIO_ID:
                at = stop
            if kind in self.hashes and stop > start and _any_in(self.hashes[kind], hashed[start:stop]):
                found.append(kind)
        return found

    def find(self, obj: Any) -> list[tuple[str, str]]:
        """(path, kind) for every string of a JSON-able payload holding one of these identifiers."""
        if not self.hashes:
            return []
        return [(path, kind) for path, text in strings_in(obj) for kind in self.kinds_in(text)]


class WorkspacePeople:
    """The `KnownPeople` of one customers cache: built on first use, rebuilt when the cache changes."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)
        self._lock = threading.Lock()
        self._signature: tuple | None = None
        self._known = KnownPeople()

    def current(self) -> KnownPeople:
        """The people the cache holds now (a pull since the last call is picked up)."""
        signature = _signature(self.cache_dir)
        with self._lock:
            if signature != self._signature:
                self._known = KnownPeople.from_cache(self.cache_dir) if signature else KnownPeople()
                self._signature = signature
            return self._known


# --- building ---------------------------------------------------------------------------------


def _column_kind(name: str) -> str | None:
    norm = re.sub(r"[^a-z0-9]+", "_", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()).strip("_")
    if norm == "cio_id":
        return CIO_ID
    if norm in ("id", "customer_id", "user_id"):
        return ID
    if norm == "email" or norm.endswith("_email"):
        return EMAIL
    if norm in _FIRST:
        return "first"
    if norm in _LAST:
        return "last"
    if norm in _FULL:
        return NAME
    if _PHONE_WORDS & set(norm.split("_")):
        return PHONE
    return None


def _identifiers(df: pd.DataFrame) -> dict[str, set[str]]:
    """Normalised identifiers of a frame's people, by kind."""
    out: dict[str, set[str]] = {kind: set() for kind in KINDS}
    columns: dict[str, list[str]] = {}
    for column in df.columns:
        kind = _column_kind(str(column))
        if kind is not None:
            columns.setdefault(kind, []).append(column)
    for column in columns.get(NAME, []):
        out[NAME].update(k for k in map(_name_key, _distinct(df[column])) if " " in k)
    for first in columns.get("first", []):
        for last in columns.get("last", []):
            out[NAME].update(_full_names(df[first], df[last]))
    for column in columns.get(EMAIL, []):
        out[EMAIL].update(v.strip().lower() for v in _distinct(df[column]) if "@" in v)
    for column in columns.get(PHONE, []):
        out[PHONE].update(d[-PHONE_DIGITS:] for d in (re.sub(r"\D", "", v) for v in _distinct(df[column]))
                          if len(d) >= PHONE_DIGITS)
    for kind in (ID, CIO_ID):
        for column in columns.get(kind, []):
            out[kind].update(v for v in (v.strip().lower() for v in _distinct(df[column])) if _distinct_id(v))
    return out


def _distinct(s: pd.Series) -> list[str]:
    return [str(v) for v in s.dropna().unique() if str(v)]


def _full_names(first: pd.Series, last: pd.Series) -> set[str]:
    """"first last" keys of every person with both names (each distinct name normalised once)."""
    pairs = pd.DataFrame({"f": first.astype("object"), "l": last.astype("object")}).dropna()
    pairs = pairs.drop_duplicates()
    f = {v: _name_key(str(v)) for v in pairs["f"].unique()}
    ln = {v: _name_key(str(v)) for v in pairs["l"].unique()}
    return {f"{f[a]} {ln[b]}" for a, b in zip(pairs["f"], pairs["l"], strict=True) if f[a] and ln[b]}


def _name_key(value: str) -> str:
    """A name as compared: accents, case, punctuation and spacing normalised ("O'Brien" -> "o brien")."""
    text = _COMBINING_RE.sub("", unicodedata.normalize("NFKD", value)).casefold()
    return " ".join(_WORD_RE.findall(text))


def _distinct_id(value: str) -> bool:
    """True for an id distinct enough to look for (not a short word or an ordinary number)."""
    if len(value) < 6:
        return False
    return not value.isdigit() or len(value) >= 8 or value.startswith("0")


def _cached_frames(cache_dir: Path) -> Iterable[pd.DataFrame]:
    """The identifier columns of every stored customers part (unreadable files are skipped)."""
    for manifest in sorted((cache_dir / "customers").glob(f"*/{MANIFEST}")):
        try:
            parts = json.loads(manifest.read_text()).get("parts") or {}
        except (OSError, ValueError, AttributeError):
            continue
        for part in parts.values():
            path = manifest.parent / str(part.get("file", ""))
            try:
                names = pq.read_schema(path).names
                wanted = [c for c in names if _column_kind(c) is not None]
                if wanted:
                    yield pq.read_table(path, columns=wanted).to_pandas()
            except (OSError, pa.ArrowException) as exc:
                log.warning("customers cache file %s is unreadable (%s); its people are not checked",
                            path, exc)


def _signature(cache_dir: Path) -> tuple:
    """What identifies the cache's current state: each customers manifest's path, size and time."""
    out = []
    for manifest in sorted((cache_dir / "customers").glob(f"*/{MANIFEST}")):
        try:
            stat = manifest.stat()
        except OSError:
            continue
        out.append((str(manifest), stat.st_size, stat.st_mtime_ns))
    return tuple(out)


# --- looking up -------------------------------------------------------------------------------


def _hash(values: list[str]) -> np.ndarray:
    return pd.util.hash_array(np.asarray(values, dtype=object), categorize=False)


def _any_in(sorted_hashes: np.ndarray, wanted: np.ndarray) -> bool:
    at = np.searchsorted(sorted_hashes, wanted)
    at[at == len(sorted_hashes)] = 0
    return bool((sorted_hashes[at] == wanted).any())


def _name_grams(text: str, lengths: tuple[int, ...]) -> list[str]:
    words = _name_key(text).split()
    return [" ".join(words[i:i + n]) for n in lengths for i in range(len(words) - n + 1)]


def _phone_keys(text: str) -> list[str]:
    """The last nine digits up to each group's end, of every digit run long enough to be a phone."""
    keys = []
    for groups in digit_groups(text):
        digits = ""
        for group in groups:
            digits += group
            if len(digits) >= PHONE_DIGITS:
                keys.append(digits[-PHONE_DIGITS:])
    return keys


def _tokens(text: str) -> list[str]:
    """Id-like tokens of `text`, lower-cased, with the cio_ prefix and joined parts also split off."""
    out = []
    for token in _TOKEN_RE.findall(text.lower()):
        token = token.rstrip(".:@+/-")
        out.append(token)
        if token.startswith("cio_"):
            out.append(token[4:])
        if _JOINERS_RE.search(token):
            out.extend(p for p in _JOINERS_RE.split(token) if p)
    return out
