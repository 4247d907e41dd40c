"""Type inference for Customer.io person attributes, which the App API returns as strings.

Messy spellings are read as one value (`attribute_values`): categories are matched without case,
spaces or underscores, numbers keep their meaning when written "1,200", "15 seats" or "$99.00",
booleans come in any common vocabulary, and a lone negative code in a column of counts (-1) is a
"missing" sentinel, not a value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from cio_mavera.errors import InvalidParameter
from cio_mavera.jobs.audiences.attribute_values import (
    BOOLEAN_VALUES,
    NULL_TOKENS,
    SENTINELS,
    categories_of,
    fold_spellings,
    map_distinct,
    number_unit,
    parse_numbers,
)

BOOLEAN = "boolean"
NUMBER = "number"
TIMESTAMP = "timestamp"  # unix epoch integers (seconds or milliseconds)
DATETIME = "datetime"  # ISO 8601 dates / datetimes
CATEGORICAL = "categorical"
TEXT = "text"
IDENTIFIER = "identifier"
EMPTY = "empty"
CONSTANT = "constant"
EXCLUDED = "excluded"  # dropped by the caller (e.g. PII), see `infer_schema(exclude=...)`

OTHER = "other"
DAYS_AGO_SUFFIX = "_days_ago"


# Plausible epoch range: 2000-01-01 .. 2100-01-01, in seconds; x1000 for milliseconds.
_EPOCH_MIN_S = 946_684_800
_EPOCH_MAX_S = 4_102_444_800
_ISO_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|[+-]\d{2}:?\d{2})?)?$"
)
_ID_NAME_RE = re.compile(r"(^|_)(id|uuid|guid)$", re.IGNORECASE)
_SCI_ID_RE = re.compile(r"^\d+[eE]\d+$")  # cio_id values like "30e00001" parse as floats

# Share of sampled values that must parse for a numeric/date kind; the rest become missing.
_PARSE_SHARE = 0.95


@dataclass(frozen=True)
class ColumnSchema:
    """How one attribute column is typed: its kind, whether it is kept, and why."""

    column: str
    kind: str
    keep: bool
    reason: str
    output: str | None = None
    unit: str | None = None  # "s" or "ms" for unix timestamps; the usual unit written with a number
    sentinel: float | None = None  # a code meaning "unknown" (-1), read as missing
    categories: tuple[str, ...] = ()
    missing_share: float = 0.0
    n_unique: int = 0


@dataclass(frozen=True)
class Schema:
    """The inferred schema of an attribute frame: one `ColumnSchema` per input column."""

    columns: tuple[ColumnSchema, ...]
    key: str | None = "cio_id"

    def __iter__(self) -> Iterator[ColumnSchema]:
        return iter(self.columns)

    def __len__(self) -> int:
        return len(self.columns)

    def __getitem__(self, column: str) -> ColumnSchema:
        for c in self.columns:
            if c.column == column:
                return c
        raise KeyError(column)

    def kept(self) -> list[ColumnSchema]:
        """Return the columns that survive into the typed frame."""
        return [c for c in self.columns if c.keep]

    def dropped(self) -> dict[str, str]:
        """Return {column: reason} for every dropped column."""
        return {c.column: c.reason for c in self.columns if not c.keep}

    def numeric_outputs(self) -> list[str]:
        """Return typed-frame column names holding floats (numbers, booleans, ages in days)."""
        return [c.output for c in self.kept() if c.kind != CATEGORICAL and c.output]

    def categorical_outputs(self) -> list[str]:
        """Return typed-frame column names holding pandas categoricals."""
        return [c.output for c in self.kept() if c.kind == CATEGORICAL and c.output]

    def to_frame(self) -> pd.DataFrame:
        """Return the schema as a table for the report (one row per input column)."""
        rows = [
            {
                "column": c.column,
                "kind": c.kind,
                "kept": c.keep,
                "output": c.output,
                "missing_share": round(c.missing_share, 4),
                "n_unique": c.n_unique,
                "reason": c.reason,
            }
            for c in self.columns
        ]
        return pd.DataFrame(
            rows, columns=["column", "kind", "kept", "output", "missing_share", "n_unique", "reason"]
        )


def clean_strings(s: pd.Series) -> pd.Series:
    """Return `s` as a pandas string Series, stripped, with empty and null-like tokens as <NA>."""
    # pyarrow-backed strings: strip/lower/isin run as vectorised Arrow kernels, not Python loops.
    if not (isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow"):
        s = s.astype("string[pyarrow]")
    s = s.str.strip()
    return s.mask(s.str.lower().isin(NULL_TOKENS))


def infer_schema(
    df: pd.DataFrame,
    max_categories: int = 20,
    rare_share: float = 0.01,
    *,
    key: str | None = "cio_id",
    exclude: Mapping[str, str] | None = None,
    sample_size: int = 5000,
    seed: int = 0,
) -> Schema:
    """Infer each attribute column's kind from a sample and decide what to keep.

    `key` (the person id) is neither typed nor kept as a feature; `apply_schema` moves it to the
    index. `exclude` maps columns to a reason they must be dropped (e.g. PII found by `pii.py`).
    """
    if max_categories < 1:
        raise InvalidParameter(f"max_categories must be >= 1, got {max_categories}")
    if not 0 <= rare_share < 1:
        raise InvalidParameter(f"rare_share must be in [0, 1), got {rare_share}")
    exclude = dict(exclude or {})
    cols: list[ColumnSchema] = []
    for name in df.columns:
        if name == key:
            continue
        if name in exclude:
            cols.append(ColumnSchema(str(name), EXCLUDED, False, exclude[name]))
            continue
        cols.append(
            _infer_column(str(name), df[name], max_categories, rare_share, sample_size, seed)
        )
    return Schema(tuple(cols), key=key if key in df.columns else None)


def apply_schema(
    df: pd.DataFrame, schema: Schema, now: datetime | pd.Timestamp | str | None = None
) -> pd.DataFrame:
    """Convert whole columns per `schema`: floats, categoricals, and ages in days relative to `now`.

    Numbers, booleans (0/1) and ages are float64 with NaN for missing; categoricals are pandas
    categoricals whose unseen values become "other". The key column, if any, becomes the index.
    """
    now_ts = _as_utc(now)
    out: dict[str, pd.Series | np.ndarray] = {}
    for c in schema.kept():
        if c.column not in df.columns:
            raise InvalidParameter(
                f"column {c.column!r} is in the schema but not in the frame; re-run infer_schema"
            )
        s = clean_strings(df[c.column])
        out[c.output or c.column] = _convert(s, c, now_ts)
    typed = pd.DataFrame(out, index=df.index)
    if schema.key and schema.key in df.columns:
        typed.index = pd.Index(df[schema.key].astype("string").to_numpy(), name=schema.key)
    return typed


def _as_utc(now: datetime | pd.Timestamp | str | None) -> pd.Timestamp:
    ts = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _convert(s: pd.Series, c: ColumnSchema, now: pd.Timestamp) -> pd.Series:
    if c.kind == BOOLEAN:
        return s.str.lower().map(BOOLEAN_VALUES).astype("float64")
    if c.kind == NUMBER:
        numbers = parse_numbers(s)
        return numbers.mask(numbers == c.sentinel) if c.sentinel is not None else numbers
    if c.kind == TIMESTAMP:
        secs = _to_float(s) / (1000.0 if c.unit == "ms" else 1.0)
        return (now.timestamp() - secs) / 86400.0
    if c.kind == DATETIME:
        dt = pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601")
        return (now - dt).dt.total_seconds() / 86400.0
    if c.kind == CATEGORICAL:
        grouped = categories_of(s, c.categories, OTHER)
        cats = list(c.categories) + ([OTHER] if OTHER not in c.categories else [])
        return pd.Series(pd.Categorical(grouped, categories=cats), index=s.index)
    raise InvalidParameter(f"cannot convert kind {c.kind!r} for column {c.column!r}")


def _to_float(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype("Float64").astype("float64")


def _infer_column(
    name: str,
    raw: pd.Series,
    max_categories: int,
    rare_share: float,
    sample_size: int,
    seed: int,
) -> ColumnSchema:
    s = clean_strings(raw)
    n = len(s)
    present = s.dropna()
    n_present = len(present)
    missing = 1.0 - n_present / n if n else 1.0
    if n_present == 0:
        return ColumnSchema(name, EMPTY, False, "no values", missing_share=missing)
    counts = present.value_counts()
    n_unique = len(counts)
    unique_share = n_unique / n_present
    base = {"missing_share": missing, "n_unique": n_unique}

    if _ID_NAME_RE.search(name):
        return ColumnSchema(name, IDENTIFIER, False, "identifier by column name", **base)
    if n_unique == 1 and missing < rare_share:
        return ColumnSchema(name, CONSTANT, False, "a single value: carries no information", **base)

    lowered = pd.Index(counts.index.str.lower())
    if lowered.isin(BOOLEAN_VALUES.keys()).all() and lowered.map(BOOLEAN_VALUES).nunique() <= 2:
        words = sorted(set(counts.index))
        reason = "true/false values" + (f" written {len(words)} ways" if len(words) > 2 else "")
        return ColumnSchema(name, BOOLEAN, True, reason, output=name, **base)

    sample = present.sample(min(sample_size, n_present), random_state=seed)
    nums = parse_numbers(sample)
    parsed = nums.notna().mean()
    if parsed >= _PARSE_SHARE:
        return _infer_numeric(name, sample, nums.dropna().astype("float64"), parsed, unique_share, base)

    iso = sample.str.match(_ISO_RE.pattern).mean()
    if iso >= _PARSE_SHARE:
        reason = f"ISO 8601 dates ({iso:.0%} of sample) -> age in days"
        return ColumnSchema(name, DATETIME, True, reason, output=name + DAYS_AGO_SUFFIX, **base)

    return _infer_string(name, sample, counts, n_present, unique_share, max_categories, rare_share, base)


def _infer_numeric(
    name: str,
    sample: pd.Series,
    nums: pd.Series,
    parsed: float,
    unique_share: float,
    base: dict,
) -> ColumnSchema:
    values = nums.to_numpy()
    integral = bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))
    leading_zero = sample.str.match(r"^0\d").mean()
    if integral and leading_zero > 0.01:
        return ColumnSchema(name, IDENTIFIER, False, "digit strings with leading zeros (codes/ids)", **base)
    if sample.str.match(_SCI_ID_RE.pattern).mean() > 0.01 and unique_share > 0.9:
        return ColumnSchema(name, IDENTIFIER, False, "unique codes that only look numeric", **base)
    coerced = f"; {1 - parsed:.1%} of sample not numeric -> missing" if parsed < 1 else ""
    written = _written_with(sample)
    sentinel = _sentinel(values)
    if sentinel is not None:
        values = values[values != sentinel]
        coerced += f"; {sentinel:g} read as missing (an 'unknown' code)"
    if integral and len(values) and written is None:
        for unit, factor in (("s", 1), ("ms", 1000)):
            in_range = ((values >= _EPOCH_MIN_S * factor) & (values <= _EPOCH_MAX_S * factor)).mean()
            if in_range >= 0.99:
                reason = f"unix timestamps in {unit} (2000-2100 range) -> age in days{coerced}"
                return ColumnSchema(
                    name, TIMESTAMP, True, reason, output=name + DAYS_AGO_SUFFIX, unit=unit, **base
                )
        span = values.max() - values.min() + 1
        if unique_share >= 0.99 and len(values) >= 50 and span <= 2 * len(values):
            return ColumnSchema(name, IDENTIFIER, False, "unique, near-sequential integers", **base)
    kind_txt = "integers" if integral else "numbers"
    if written is not None:
        unit, share = written
        kind_txt += f" ({_share(share)} written with units or separators, e.g. '{unit}')"
    return ColumnSchema(name, NUMBER, True, f"{kind_txt}{coerced}", output=name,
                        unit=written[0] if written else None, sentinel=sentinel, **base)


def _share(share: float) -> str:
    return "<1%" if 0 < share < 0.005 else f"{share:.0%}"


def _written_with(sample: pd.Series) -> tuple[str, float] | None:
    """(the most common unit or separator written with the numbers, share of values), or None."""
    plain = pd.to_numeric(sample, errors="coerce").notna()
    if plain.all():
        return None
    decorated = sample[~plain]
    units = map_distinct(decorated, lambda v: number_unit(v) or ("," if "," in v else None)).dropna()
    if units.empty:
        return None
    return str(units.value_counts().index[0]), len(decorated) / len(sample)


def _sentinel(values: np.ndarray) -> float | None:
    """A lone negative code (-1, -99...) in otherwise non-negative numbers, which means "unknown"."""
    negative = values[values < 0]
    if not len(negative) or len(negative) > 0.05 * len(values):
        return None
    codes = np.unique(negative)
    return float(codes[0]) if len(codes) == 1 and codes[0] in SENTINELS else None


def _infer_string(
    name: str,
    sample: pd.Series,
    counts: pd.Series,
    n_present: int,
    unique_share: float,
    max_categories: int,
    rare_share: float,
    base: dict,
) -> ColumnSchema:
    lengths = sample.str.len()
    median_len = float(lengths.median())
    spaced = sample.str.contains(r"\s", regex=True).mean()
    words = float(sample.str.count(r"\s+").median()) + 1
    counts, merged = fold_spellings(counts)
    shares = counts / n_present
    kept = shares[shares >= rare_share].head(max_categories)
    coverage = float(kept.sum())
    fits = len(counts) <= max_categories or coverage >= 0.5
    # Sentences (notes, comments) are free text even when a few canned ones repeat.
    if fits and median_len <= 40 and words < 4 and len(kept) >= 1:
        grouped = len(counts) - len(kept)
        reason = f"{len(kept)} categories" + (
            f"; {grouped} rare values ({1 - coverage:.1%} of rows) grouped as '{OTHER}'"
            if grouped
            else ""
        ) + (f"; {merged} other spellings (case, spaces) read as the same value" if merged else "")
        return ColumnSchema(
            name, CATEGORICAL, True, reason, output=name,
            categories=tuple(str(v) for v in kept.index), **base,
        )
    if unique_share >= 0.9 and spaced < 0.1 and median_len <= 64:
        return ColumnSchema(name, IDENTIFIER, False, "nearly every value unique, no spaces", **base)
    if median_len > 40 or words >= 4 or spaced >= 0.5:
        why = f"free text (median {median_len:.0f} chars, {words:.0f} words, {unique_share:.0%} unique)"
    else:
        why = (f"high-cardinality strings ({len(counts)} values; the top {len(kept)} cover "
               f"{coverage:.0%})")
    return ColumnSchema(name, TEXT, False, why, **base)
