"""The people the App API reads: the workspace's customers as Track updated them, and those Track created.

Track and the App API are two halves of one service: a person identified through Track (v1 PUT,
v2 entity or batch) shows up in App API attribute reads, lookups and searches. `WrittenPeople`
(in `CioState`, cleared by a reset) holds what Track wrote; `Directory` puts it over the fast,
read-only `People` of the workspace. Created people get rows after the workspace's (`n + j`).
With nothing written, every read is `People`'s own.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Any

import numpy as np

from .people import FilterError, People

_IDENTIFIERS = ("id", "email", "cio_id")


def attribute_string(value: Any) -> str:
    """How the App API reports an attribute written through Track: always a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return "" if value is None else str(value)


def _key(kind: str, value: str) -> tuple[str, str]:
    return kind, value.lower() if kind == "email" else value  # emails match case-insensitively


class WrittenPeople:
    """What Track wrote about people: attribute strings of workspace customers (by row) and the
    people Track created, with the identifiers each now answers to."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.lock = threading.RLock()
        self.clear()

    def clear(self) -> None:
        with self.lock:
            self.updates: dict[int, dict[str, str]] = {}
            self.created: list[dict[str, str]] = []
            self.claimed: dict[tuple[str, str], int] = {}  # identifier -> row it now belongs to
            self.released: set[tuple[str, str]] = set()  # identifiers a person gave up

    def __bool__(self) -> bool:
        return bool(self.updates or self.created)

    def new_cio_id(self) -> str:
        """A cio_id for a person Track creates: 12 hex digits, never one of the workspace's 10."""
        return f"e{self.seed % 4096:03x}{len(self.created) + 1:08x}"


class Directory:
    """Reads (find, search, identifiers, attribute items) and Track writes over one workspace."""

    def __init__(self, people: People, written: WrittenPeople, now: int) -> None:
        self.people = people
        self.written = written
        self.n = people.n
        self.now = now

    # --- reads ----------------------------------------------------------------------------

    def find(self, id_type: str, values: list[str]) -> np.ndarray:
        """Row of each identifier (-1 where unknown), Track's writes included."""
        rows = np.array(self.people.find(id_type, values), dtype=np.int64)
        written = self.written
        if not written:
            return rows
        with written.lock:
            for i, value in enumerate(values):
                key = _key(id_type, str(value))
                if key in written.claimed:
                    rows[i] = written.claimed[key]
                elif key in written.released:
                    rows[i] = -1
        return rows

    def attributes(self, row: int) -> dict[str, str]:
        """The attribute strings the App API reports for `row`."""
        with self.written.lock:
            if row >= self.n:
                return dict(self.written.created[row - self.n])
            merged = self.people.attribute_strings([row])[0]
            merged.update(self.written.updates.get(row, {}))
        return {k: v for k, v in merged.items() if v != ""}

    def search(self, filter_: Any) -> np.ndarray:
        """Rows (ascending) of the people matching `filter_`, as Track left them."""
        base = self.people.search(filter_)  # validates the filter (FilterError) before anything
        written = self.written
        if not written:
            return base
        with written.lock:
            changed = np.array(sorted(written.updates), dtype=np.int64)
            kept = base[~np.isin(base, changed)]
            again = [r for r in changed.tolist()
                     if self._matches(filter_, self.attributes(r), r)]
            created = [self.n + j for j, attrs in enumerate(written.created)
                       if self._matches(filter_, attrs, self.n + j)]
        return np.concatenate([np.sort(np.concatenate([kept, np.array(again, dtype=np.int64)])),
                               np.array(created, dtype=np.int64)])

    def identifiers(self, rows: np.ndarray) -> tuple[list[dict[str, str | None]], list[str]]:
        """(identifiers, ids) for `rows`, as search and membership pages report them."""
        if not self.written:
            return self.people.identifiers(rows)
        items = []
        for row in np.asarray(rows).tolist():
            attrs = self.attributes(int(row))
            items.append({"email": attrs.get("email"), "id": attrs.get("id"),
                          "cio_id": attrs["cio_id"]})
        return items, [i["id"] or "" for i in items]

    def attribute_items(self, rows: Iterable[int]) -> list[dict[str, Any]]:
        """Unwrapped customer items (the live shape of bulk attributes), in the order of `rows`."""
        rows = [int(r) for r in rows]
        with self.written.lock:
            base = self.people.attribute_items([r for r in rows if r < self.n], self.written.updates)
            by_row = dict(zip([r for r in rows if r < self.n], base, strict=True))
            return [by_row[r] if r < self.n else self._created_item(r) for r in rows]

    def by_email(self, email: str) -> list[dict[str, str | None]]:
        """`results` of GET /v1/customers?email= (empty when nobody has it)."""
        row = int(self.find("email", [email])[0])
        if row < 0:
            return []
        (item,), _ = self.identifiers(np.array([row]))
        return [item]

    def _created_item(self, row: int) -> dict[str, Any]:
        attrs = self.attributes(row)
        return {"id": attrs.get("id"),
                "identifiers": {k: attrs.get(k) for k in _IDENTIFIERS},
                "attributes": attrs, "timestamps": {name: self.now for name in attrs},
                "unsubscribed": attrs.get("unsubscribed") == "true", "devices": []}

    def _matches(self, node: Any, attrs: dict[str, str], row: int) -> bool:
        """`node` of the search grammar for one person (the per-row twin of People's masks)."""
        (kind, arg), = node.items()
        if kind == "and":
            return all(self._matches(child, attrs, row) for child in arg)
        if kind == "or":
            return any(self._matches(child, attrs, row) for child in arg)
        if kind == "not":
            return not self._matches(arg, attrs, row)
        if kind == "segment":
            members = self.people.ws.segment_members.get(int(arg["id"]))
            return row < self.n and members is not None and bool(np.any(members == row))
        if kind == "attribute":
            value = attrs.get(arg["field"])
            if arg["operator"] == "exists":
                return value not in (None, "")
            return value is not None and value == str(arg["value"])
        raise FilterError(f"unknown filter type {kind!r}")

    # --- Track writes ---------------------------------------------------------------------

    def write(self, kind: str, value: str, attributes: dict[str, Any], *,
              create: bool = True) -> int | None:
        """Apply an identify of the person `kind`=`value` with `attributes`; the row, or None.

        As Track does (customerio-api.md §4.1): update the person the identifier names; else the
        one an `id` or `email` in the attributes names (who then also gets the path identifier);
        else create a person, unless the identifier is a `cio_id` (an unknown one is dropped) or
        `create` is False (`_update: true`).
        """
        written = self.written
        strings = {k: attribute_string(v) for k, v in attributes.items()}
        with written.lock:
            row = int(self.find(kind, [value])[0])
            for other in ("email", "id"):
                if row < 0 and other != kind and strings.get(other):
                    row = int(self.find(other, [strings[other]])[0])
            if row < 0:
                if kind == "cio_id" or not create:
                    return None
                row = self.n + len(written.created)
                written.created.append({"cio_id": written.new_cio_id()})
                written.claimed[_key("cio_id", written.created[-1]["cio_id"])] = row
            current = self.attributes(row)
            if kind != "cio_id" and _key(kind, current.get(kind) or "") != _key(kind, value):
                strings.setdefault(kind, value)  # the person now answers to the path identifier
            for name in ("id", "email", "phone"):
                if strings.get(name) and current.get(name) != strings[name]:
                    if current.get(name):
                        written.claimed.pop(_key(name, current[name]), None)
                        written.released.add(_key(name, current[name]))
                    written.released.discard(_key(name, strings[name]))
                    written.claimed[_key(name, strings[name])] = row
            if row >= self.n:
                written.created[row - self.n].update(strings)
            else:
                written.updates.setdefault(row, {}).update(strings)
        return row
