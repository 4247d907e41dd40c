"""How integrations write customer attributes: missing groups, spellings, units, booleans, junk.

Real workspaces get attributes from several integrations, so a whole group (billing, product
usage, CRM) is there for a person or not at all; each source spells categories and numbers its own
way ("Pro", "pro ", "PRO"; "1,200", "15 seats", "$99.00"), writes booleans in its own vocabulary,
makes the odd unit mistake, and adds attributes nobody can cluster on. `write_attributes` takes the
tidy frame and writes it that way, as far as the `CustomerWorld` knobs say.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .world import CustomerWorld

# Attributes each integration sets; a person has the whole group or none of it.
ATTRIBUTE_GROUPS: dict[str, tuple[str, ...]] = {
    "billing": ("plan", "mrr", "seats", "billing_customer"),
    "product": ("logins_30d", "projects_created", "messages_sent_30d", "integrations_enabled",
                "favorite_feature"),
    "crm": ("industry", "company_size", "lifecycle_stage", "job_title", "support_tickets_90d", "notes"),
}
_MISSING_KNOBS = {"billing": "missing_billing", "product": "missing_product", "crm": "missing_crm"}
_NUMBERS = ("company_size", "seats", "mrr", "logins_30d", "projects_created", "messages_sent_30d",
            "integrations_enabled", "support_tickets_90d")
_MONEY = ("mrr",)
_RESPELT = ("plan", "industry", "lifecycle_stage", "favorite_feature", "referral_source")
_BOOLEANS = ("trial_user", "marketing_opt_in")
_VOCABULARIES = (("true", "false"), ("yes", "no"), ("1", "0"), ("Y", "N"), ("True", "False"))
_VOCABULARY_P = np.array([0.5, 0.15, 0.15, 0.1, 0.1])
# column: the styles a share `formatted_numbers` of its values are written in (else plain digits)
_NUMBER_STYLES: dict[str, tuple[str, ...]] = {
    "mrr": ("currency", "thousands", " USD"),
    "seats": (" seats",),
    "company_size": ("thousands", " employees"),
    "messages_sent_30d": ("thousands",),
    "projects_created": ("thousands",),
}
_SENTINEL = -1  # what a broken sync writes for "unknown"

_COMMENT_PARTS = (
    ("Found you through a podcast", "A colleague recommended the tool", "Saw an ad on LinkedIn",
     "Came from the comparison article", "We outgrew our spreadsheet", "Our agency set this up",
     "Switching from a competitor", "Trying it for a side project"),
    ("and we mainly need", "and we are looking for", "because we want", "so we can get"),
    ("email automation for the whole team.", "better reporting on campaigns.",
     "an API to sync our product data.", "onboarding flows for new users.",
     "SMS reminders for appointments.", "a simple newsletter tool."),
)
_UTM_PARTS = (("spring", "summer", "autumn", "winter", "bf", "launch"),
              ("search", "social", "partner", "email", "display", "video"),
              ("2023", "2024", "2025"), ("v1", "v2", "v3", "v4", "v5", "final", "test"))
_BASE62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8)


def write_attributes(rng: np.random.Generator, people: pd.DataFrame,
                     world: CustomerWorld) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the frame as integrations write it, segment facts: true plan, mrr, trial_user, last_seen_at)."""
    n = len(people)
    out = people.copy()
    absent = {group: rng.random(n) < getattr(world, _MISSING_KNOBS[group]) for group in ATTRIBUTE_GROUPS}
    missing = {column: absent[group] for group, columns in ATTRIBUTE_GROUPS.items() for column in columns}
    numbers = {c: _with_outliers(rng, people[c].to_numpy(dtype=float), world.outlier_share) for c in _NUMBERS}

    facts = pd.DataFrame({
        "plan": _without(people["plan"], missing["plan"]),
        "mrr": np.where(missing["mrr"], np.nan, numbers["mrr"]),
        "trial_user": people["trial_user"].to_numpy(),
        "last_seen_at": people["last_seen_at"].to_numpy(),
    })
    for column in _NUMBERS:
        out[column] = _number_column(rng, numbers[column], missing[column], column, world.formatted_numbers)
    for column in _RESPELT:
        out[column] = _respelt(rng, people[column], missing.get(column), world.messy_strings)
    for column in ("job_title", "notes"):
        out[column] = _without(people[column], missing[column])
    if world.mixed_booleans:
        for column in _BOOLEANS:
            out[column] = _boolean_words(rng, people[column].to_numpy(dtype=bool))
    if world.junk_attributes:
        out = out.assign(**_junk(rng, n, missing["billing_customer"]))
    return out, facts


def _with_outliers(rng: np.random.Generator, values: np.ndarray, share: float) -> np.ndarray:
    """Values with a share replaced by unit mistakes (x100) or the sentinel -1."""
    if share <= 0:
        return values
    hit = rng.random(len(values)) < share
    sentinel = rng.random(len(values)) < 0.3
    out = values.copy()
    out[hit & ~sentinel] *= 100
    out[hit & sentinel] = _SENTINEL
    return out


def _without(column: pd.Series, missing: np.ndarray) -> pd.Categorical:
    """A categorical column with the missing people's values removed."""
    codes = np.where(missing, -1, np.asarray(column.cat.codes))
    return pd.Categorical.from_codes(codes, categories=column.cat.categories)


def _respelt(rng: np.random.Generator, column: pd.Series, missing: np.ndarray | None,
             share: float) -> pd.Categorical:
    """Each value, with probability `share`, spelt as another source would ("Pro", "PRO", "pro ")."""
    categories = [str(c) for c in column.cat.categories]
    variants = [_spellings(c) for c in categories]
    codes = np.asarray(column.cat.codes).astype(np.int64)
    variant = np.where(rng.random(len(codes)) < share, rng.integers(1, 5, size=len(codes)), 0)
    new = np.where(codes < 0, -1, codes * 5 + variant)
    if missing is not None:
        new = np.where(missing, -1, new)
    return pd.Categorical.from_codes(new, categories=[v for vs in variants for v in vs])


def _spellings(value: str) -> list[str]:
    words = value.replace("_", " ").title()
    return [value, words, value.upper(), value + " ", " " + words]


def _boolean_words(rng: np.random.Generator, values: np.ndarray) -> pd.Categorical:
    """Each person's boolean in the vocabulary of the source that wrote it."""
    vocabulary = rng.choice(len(_VOCABULARIES), size=len(values), p=_VOCABULARY_P)
    codes = vocabulary * 2 + (~values).astype(np.int64)
    return pd.Categorical.from_codes(codes, categories=[w for pair in _VOCABULARIES for w in pair])


def _number_column(rng: np.random.Generator, values: np.ndarray, missing: np.ndarray, column: str,
                   share: float) -> pd.Series | pd.arrays.ArrowStringArray:
    """The numbers as their source writes them: strings with units and separators, or nullable numbers."""
    styles = _NUMBER_STYLES.get(column, ())
    money = column in _MONEY
    if share <= 0 or not styles:
        if money:
            return pd.Series(np.where(missing, np.nan, values))
        whole = np.rint(values).astype(np.int64)
        return pd.Series(pd.arrays.IntegerArray(whole, missing) if missing.any() else whole)
    plain = _plain(values, money)
    options = [plain] + [_styled(values, style, money) for style in styles]
    style = np.where(rng.random(len(values)) < share, rng.integers(1, len(options), size=len(values)), 0)
    style[values < 0] = 0  # a sentinel stays as written
    text = pc.choose(pa.array(style.astype(np.int8)), *options)
    text = pc.if_else(pa.array(missing), pa.nulls(len(values), pa.string()), text)
    return pd.arrays.ArrowStringArray(pc.cast(text, pa.large_string()))


def _plain(values: np.ndarray, money: bool) -> pa.Array:
    """Digits as the tidy world writes them: integers, or money with up to two decimals."""
    if not money:
        return pc.cast(pa.array(np.rint(values).astype(np.int64)), pa.string())
    cents = np.rint(np.abs(values) * 100).astype(np.int64)
    whole = pc.cast(pa.array(cents // 100), pa.string())
    fraction = pc.utf8_rtrim(pc.utf8_lpad(pc.cast(pa.array(cents % 100), pa.string()), 2, "0"), "0")
    text = pc.if_else(pa.array(cents % 100 > 0), pc.binary_join_element_wise(whole, fraction, "."), whole)
    return pc.if_else(pa.array(values < 0), pc.binary_join_element_wise("-", text, ""), text)


def _styled(values: np.ndarray, style: str, money: bool) -> pa.Array:
    """`values` in one style: "currency" ($1,200.00), "thousands" (1,200) or a unit suffix."""
    if style.startswith(" "):
        return pc.binary_join_element_wise(_plain(values, money), style, "")
    cents = np.rint(np.abs(values) * 100).astype(np.int64)
    whole = _thousands(cents // 100)
    if style == "currency":
        fraction = pc.utf8_lpad(pc.cast(pa.array(cents % 100), pa.string()), 2, "0")
        return pc.binary_join_element_wise("$", pc.binary_join_element_wise(whole, fraction, "."), "")
    if money:
        fraction = pc.utf8_rtrim(pc.utf8_lpad(pc.cast(pa.array(cents % 100), pa.string()), 2, "0"), "0")
        return pc.if_else(pa.array(cents % 100 > 0), pc.binary_join_element_wise(whole, fraction, "."),
                          whole)
    return whole


def _thousands(whole: np.ndarray) -> pa.Array:
    """Non-negative integers with comma thousands separators (1200 -> "1,200")."""
    groups = [pc.utf8_lpad(pc.cast(pa.array((whole // 10 ** e) % 1000), pa.string()), 3, "0")
              for e in (12, 9, 6, 3, 0)]
    trimmed = pc.utf8_ltrim(pc.binary_join_element_wise(*groups, ","), "0,")
    return pc.if_else(pc.equal(trimmed, ""), "0", trimmed)


def _junk(rng: np.random.Generator, n: int, no_billing: np.ndarray) -> dict[str, object]:
    """Attributes nobody can cluster on: a constant, a near-unique id, free text, campaign codes."""
    ids = _BASE62[rng.integers(0, len(_BASE62), size=(n, 14))]
    prefixed = np.concatenate([np.broadcast_to(np.frombuffer(b"cus_", dtype=np.uint8), (n, 4)), ids], axis=1)
    billing = pc.if_else(pa.array(no_billing), pa.nulls(n, pa.string()), _ascii(prefixed))
    comment = _combinations(rng, _COMMENT_PARTS, n, present=0.35)
    utm = _combinations(rng, _UTM_PARTS, n, present=0.6, sep="_")
    return {"source": pd.Categorical.from_codes(np.zeros(n, dtype=np.int64), categories=["api"]),
            "billing_customer": pd.arrays.ArrowStringArray(pc.cast(billing, pa.large_string())),
            "signup_comment": comment, "utm_campaign": utm}


def _combinations(rng: np.random.Generator, parts: tuple[tuple[str, ...], ...], n: int, *,
                  present: float, sep: str = " ") -> pd.Categorical:
    """Values made of one pick from each part (uniformly), present for a share of people."""
    sizes = [len(p) for p in parts]
    code = np.zeros(n, dtype=np.int64)
    for size in sizes:
        code = code * size + rng.integers(0, size, size=n)
    code = np.where(rng.random(n) < present, code, -1)
    values = [""]
    for part in parts:
        values = [f"{v}{sep}{p}" if v else p for v in values for p in part]
    return pd.Categorical.from_codes(code, categories=values)


def _ascii(chars: np.ndarray) -> pa.Array:
    n, width = chars.shape
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * width)
    return pa.StringArray.from_buffers(n, offsets.buffers()[1], pa.py_buffer(np.ascontiguousarray(chars)))
