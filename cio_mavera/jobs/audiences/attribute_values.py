"""Reading messy attribute strings: category spellings, numbers with units, boolean words, sentinels.

Customer.io stores what each integration wrote, so one attribute arrives as "Pro", "pro " and
"PRO", as "1,200", "15 seats" and "$99.00", and as "yes", "1", "true" and "Y". These helpers map
every spelling to one value; they work on the distinct values of a column, so a million rows cost
little more than their few thousand distinct strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd

# Tokens that mean "no value"; Customer.io stores whatever the sender wrote, so "null" strings occur.
NULL_TOKENS = frozenset({"", "null", "none", "nan", "undefined", "n/a"})
TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1", "1.0", "on"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "0.0", "off"})
BOOLEAN_VALUES = {**dict.fromkeys(TRUE_WORDS, 1.0), **dict.fromkeys(FALSE_WORDS, 0.0)}
# Values a broken sync writes for "unknown" into a column of counts or amounts.
SENTINELS = (-1.0, -9.0, -99.0, -999.0, -9999.0)

_SEPARATORS = re.compile(r"[\s_\-]+")
# An optional currency, digits with optional thousands separators and decimals, an optional unit
# word ("1,200", "$99.00", "15 seats", "99.00 USD", "12%").
_NUMBER = re.compile(
    r"^(?P<currency>[$€£¥]|usd|eur|gbp)?\s*"
    r"(?P<number>[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+)"
    r"\s*(?P<unit>[a-z]+|%|[$€£¥])?$",
    re.IGNORECASE,
)


def category_key(value: str) -> str:
    """The spelling-free form of a category: lower case, one space between words ("Trial_Expired " -> "trial expired")."""
    return _SEPARATORS.sub(" ", value.lower()).strip()


def fold_spellings(counts: pd.Series) -> tuple[pd.Series, int]:
    """(counts per category with spellings merged, how many spellings were merged away).

    `counts` is value -> rows; each merged category is labelled by its most common spelling.
    """
    if counts.empty:
        return counts, 0
    frame = pd.DataFrame({"value": counts.index.astype(str), "rows": counts.to_numpy()})
    frame["key"] = [category_key(v) for v in frame["value"]]
    frame = frame.sort_values(["rows", "value"], ascending=[False, True], kind="stable")
    label = frame.groupby("key", sort=False)["value"].first()
    folded = frame.groupby("key", sort=False)["rows"].sum()
    folded.index = label.reindex(folded.index).to_numpy()
    return folded.sort_values(ascending=False, kind="stable"), len(frame) - len(folded)


def categories_of(values: pd.Series, categories: tuple[str, ...], other: str) -> pd.Series:
    """Each value as one of `categories` (matched spelling-free), `other` when unknown, NA when missing."""
    labels = {category_key(c): c for c in categories}
    return map_distinct(values, lambda v: labels.get(category_key(v), other))


def parse_number(value: str) -> float:
    """The number in "1,200", "$99.00", "15 seats" or "99.00 USD"; NaN when it holds none."""
    match = _NUMBER.match(value.strip())
    if not match:
        return np.nan
    return float(match.group("number").replace(",", ""))


def number_unit(value: str) -> str | None:
    """The currency or unit word written with a number ("$", "seats", "USD"), None when bare."""
    match = _NUMBER.match(value.strip())
    if not match:
        return None
    return match.group("currency") or match.group("unit")


def parse_numbers(values: pd.Series) -> pd.Series:
    """float64 numbers: plain ones the fast way, the rest ("1,200", "15 seats") through `parse_number`."""
    plain = pd.to_numeric(values, errors="coerce").astype("Float64").astype("float64")
    rest = plain.isna() & values.notna()
    if rest.any():
        plain[rest] = map_distinct(values[rest], parse_number).astype("float64")
    return plain


def map_distinct(values: pd.Series, fn: Callable[[str], object]) -> pd.Series:
    """`fn` applied to each distinct non-missing value once, spread back over the rows (NA stays NA)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    mapped = np.array([fn(str(u)) for u in uniques] + [None], dtype=object)
    return pd.Series(mapped[codes], index=values.index)
