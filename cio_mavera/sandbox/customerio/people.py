"""People in the App API's shapes: the search filter grammar, identifier pages and attribute items.

Search evaluates filters as numpy masks over the whole customers frame (a million people in a few
milliseconds once cached) and keeps the matching row numbers of recent filters, so paging through
a match-all search costs one slice per page. Attribute comparisons follow the strings the API
reports (`customer_attribute_strings`): `eq` on `mrr` with `"46.99"` matches the person whose
attribute reads `"46.99"`. This is the workspace as generated; `directory.Directory` layers what
Track wrote on top (updates and new people, for reads and searches alike).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ..workspace import Workspace

ID_TYPES = ("id", "email", "cio_id", "phone")
_FILTER_CACHE_SIZE = 8
_DEVICE_SHARE = 0.35  # share of people with a mobile device registered (sandbox choice)
_UNSUBSCRIBED_SHARE = 0.03


class FilterError(ValueError):
    """A search filter the API would reject with 400."""


class People:
    """Search and attribute reads over one workspace's customers."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.n = len(ws.customers)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._lookups: dict[str, tuple[pd.Index, np.ndarray]] = {}
        self._columns = {name: _column_reader(ws.customers[name]) for name in ws.customers.columns}

    # --- search ---------------------------------------------------------------------------

    def search(self, filter_: Any) -> np.ndarray:
        """Row numbers (ascending) of the people matching `filter_`."""
        key = json.dumps(filter_, sort_keys=True, separators=(",", ":"))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        rows = np.flatnonzero(self._mask(filter_))
        with self._lock:
            self._cache[key] = rows
            while len(self._cache) > _FILTER_CACHE_SIZE:
                self._cache.popitem(last=False)
        return rows

    def _mask(self, node: Any) -> np.ndarray:
        if not isinstance(node, dict) or len(node) != 1:
            raise FilterError("each filter node must be an object with exactly one of "
                              "and, or, not, segment, attribute")
        (kind, arg), = node.items()
        if kind in ("and", "or"):
            if not isinstance(arg, list) or not arg:
                raise FilterError(f"'{kind}' takes a non-empty array of filters")
            masks = [self._mask(child) for child in arg]
            combine = np.logical_and if kind == "and" else np.logical_or
            return combine.reduce(masks) if len(masks) > 1 else masks[0]
        if kind == "not":
            return ~self._mask(arg)
        if kind == "segment":
            if not isinstance(arg, dict) or "id" not in arg:
                raise FilterError("'segment' takes {\"id\": <segment id>}")
            mask = np.zeros(self.n, dtype=bool)
            try:
                members = self.ws.segment_members.get(int(arg["id"]))
            except (TypeError, ValueError) as exc:
                raise FilterError("segment id must be an integer") from exc
            if members is not None:
                mask[members] = True
            return mask
        if kind == "attribute":
            return self._attribute_mask(arg)
        raise FilterError(f"unknown filter type {kind!r}")

    def _attribute_mask(self, arg: Any) -> np.ndarray:
        if not isinstance(arg, dict) or not isinstance(arg.get("field"), str):
            raise FilterError("'attribute' takes {\"field\", \"operator\", \"value\"?}")
        field, operator = arg["field"], arg.get("operator")
        if operator not in ("eq", "exists"):
            raise FilterError("attribute operator must be eq or exists")
        if field not in self.ws.customers.columns:
            return np.zeros(self.n, dtype=bool)
        column = self.ws.customers[field]
        present = _present(column)
        if operator == "exists":
            return present
        if "value" not in arg:
            raise FilterError("the eq operator needs a value")
        return present & _equals(column, str(arg["value"]))

    def identifiers(self, rows: np.ndarray) -> tuple[list[dict[str, str | None]], list[str]]:
        """(identifiers, ids) for `rows`, as search and membership pages report them."""
        cio, ids, emails = (self._columns[name](rows) for name in ("cio_id", "id", "email"))
        items = [{"email": e, "id": i, "cio_id": c} for c, i, e in zip(cio, ids, emails, strict=True)]
        return items, [i or "" for i in ids]

    # --- attributes -----------------------------------------------------------------------

    def find(self, id_type: str, values: list[str]) -> np.ndarray:
        """Row of each identifier (-1 where unknown); emails match case-insensitively."""
        if id_type == "email":
            values = [v.lower() for v in values]
        index, rows = self._lookup(id_type)
        positions = index.get_indexer(pd.Index(values, dtype=object))
        return np.where(positions >= 0, rows[positions], -1)

    def _lookup(self, id_type: str) -> tuple[pd.Index, np.ndarray]:
        """A hash index over the people who have this identifier (built once, then O(1) lookups)."""
        with self._lock:
            if id_type not in self._lookups:
                column = self.ws.customers[id_type]
                rows = np.flatnonzero(column.notna().to_numpy(dtype=bool))
                index = pd.Index(column.iloc[rows].astype(object))
                if not index.is_unique:  # keep the first holder of a shared phone number
                    first = ~index.duplicated()
                    index, rows = index[first], rows[first]
                self._lookups[id_type] = (index, rows)
            return self._lookups[id_type]

    def attribute_items(self, rows: list[int], overlays: dict[int, dict[str, str]]) -> list[dict]:
        """Unwrapped customer items (the live shape of bulk attributes) for `rows`."""
        if not rows:
            return []
        attributes = self.attribute_strings(rows)
        frame = self.ws.customers
        created = frame["created_at"].to_numpy()[rows]
        seen = frame["last_seen_at"].to_numpy()[rows]
        out = []
        for row, attrs, made, last in zip(rows, attributes, created.tolist(), seen.tolist(), strict=True):
            attrs = {**attrs, **overlays.get(row, {})}
            identifiers = {"id": attrs.get("id"), "email": attrs.get("email"), "cio_id": attrs["cio_id"]}
            timestamps = {name: (last if name == "last_seen_at" else made) for name in attrs}
            out.append({
                "id": attrs.get("id"),
                "identifiers": identifiers,
                "attributes": attrs,
                "timestamps": timestamps,
                "unsubscribed": _hash_share(row, 1) < _UNSUBSCRIBED_SHARE,
                "devices": _devices(row, last),
            })
        return out

    def attribute_strings(self, rows: list[int] | np.ndarray) -> list[dict[str, str]]:
        """Same result as `workspace.customer_attribute_strings`, from column readers built once."""
        picked = np.asarray(rows, dtype=np.int64)
        columns = [(name, read(picked)) for name, read in self._columns.items()]
        return [{name: values[i] for name, values in columns if values[i] is not None}
                for i in range(len(picked))]

    def column_strings(self, name: str, rows: np.ndarray) -> list[str | None]:
        """One attribute's strings for `rows` (None where missing), as the App API reports them."""
        return self._columns[name](np.asarray(rows, dtype=np.int64))

    def by_email(self, email: str) -> list[dict[str, str | None]]:
        """`results` of GET /v1/customers?email= (empty when nobody has it)."""
        row = int(self.find("email", [email])[0])
        if row < 0:
            return []
        items, _ = self.identifiers(np.array([row]))
        return [{"email": items[0]["email"], "id": items[0]["id"], "cio_id": items[0]["cio_id"]}]


def _column_reader(column: pd.Series):
    """rows -> that column's attribute strings (None where missing), formatted as the workspace does."""
    dtype = column.dtype
    missing = column.isna().to_numpy(dtype=bool)
    if isinstance(dtype, pd.CategoricalDtype):
        labels = np.array([None if c == "" else str(c) for c in dtype.categories] + [None], dtype=object)
        codes = np.asarray(column.cat.codes)  # -1 (missing) picks the trailing None
        return lambda rows: labels[codes[rows]].tolist()
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
        chunked = column.array.__arrow_array__()
        return lambda rows: [v or None for v in chunked.take(pa.array(rows)).to_pylist()]
    if pd.api.types.is_bool_dtype(dtype):
        text = np.where(column.to_numpy(dtype=bool, na_value=False), "true", "false").astype(object)
    elif pd.api.types.is_integer_dtype(dtype):
        numbers = column.to_numpy(dtype=np.int64, na_value=0)
        return lambda rows: [None if missing[r] else str(int(numbers[r])) for r in rows]
    elif pd.api.types.is_float_dtype(dtype):
        floats = column.to_numpy(dtype=float)
        return lambda rows: [None if missing[r] else f"{floats[r]:.2f}".rstrip("0").rstrip(".")
                             for r in rows]
    elif pd.api.types.is_datetime64_dtype(dtype):
        text = np.datetime_as_string(column.to_numpy(), unit="D").astype(object)
    else:
        text = column.astype(object).to_numpy()
    text = np.where(missing, None, text)
    return lambda rows: [v if v != "" else None for v in text[rows].tolist()]


def _present(column: pd.Series) -> np.ndarray:
    missing = column.isna().to_numpy(dtype=bool)
    if isinstance(column.dtype, pd.StringDtype):
        missing |= (column == "").fillna(False).to_numpy(dtype=bool)
    return ~missing


def _equals(column: pd.Series, value: str) -> np.ndarray:
    """Where the attribute's reported string equals `value` (vectorised per dtype)."""
    dtype = column.dtype
    n = len(column)
    nothing = np.zeros(n, dtype=bool)
    if isinstance(dtype, pd.CategoricalDtype):
        categories = list(dtype.categories)
        if value not in categories:
            return nothing
        return np.asarray(column.cat.codes) == categories.index(value)
    if pd.api.types.is_bool_dtype(dtype):
        if value not in ("true", "false"):
            return nothing
        return column.to_numpy(dtype=bool, na_value=False) == (value == "true")
    if pd.api.types.is_integer_dtype(dtype):
        if not _is_int_text(value):
            return nothing
        return column.to_numpy(dtype=np.int64, na_value=0) == int(value)
    if pd.api.types.is_float_dtype(dtype):
        try:
            number = float(value)
        except ValueError:
            return nothing
        if f"{number:.2f}".rstrip("0").rstrip(".") != value:
            return nothing  # only the canonical string form matches, as a string compare would
        return np.isclose(np.round(column.to_numpy(dtype=float), 2), number, rtol=0, atol=1e-9)
    if pd.api.types.is_datetime64_dtype(dtype):
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            return nothing
        return (column == pd.Timestamp(day)).to_numpy(dtype=bool, na_value=False)
    return (column == value).fillna(False).to_numpy(dtype=bool)


def _is_int_text(value: str) -> bool:
    digits = value[1:] if value.startswith("-") else value
    return digits.isdigit() and (digits == "0" or not digits.startswith("0"))


def _hash_share(row: int, salt: int) -> float:
    """A stable pseudo-random number in [0, 1) for a row (no RNG state to keep in sync)."""
    return ((row * 2654435761 + salt * 40503) % 2**32) / 2**32


def _devices(row: int, last_used: int) -> list[dict[str, Any]]:
    if _hash_share(row, 2) >= _DEVICE_SHARE:
        return []
    platform = "ios" if _hash_share(row, 3) < 0.55 else "android"
    token = f"{platform[:1]}{(row * 2246822519) % 16**12:012x}"
    return [{"id": token, "platform": platform, "last_used": last_used,
             "attributes": {"app_version": "4.12.0", "device_os": "17" if platform == "ios" else "14"}}]
