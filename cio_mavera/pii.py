"""PII guard: find and strip personal-data columns, and scan payloads before they leave for Mavera.

Columns are caught by name (email, names, phone, address, ids, ...) and by value, so an innocuous
name cannot hide them: a column with even one email-shaped value (plain, obfuscated or encoded) is
personal data; phones, street addresses, customer ids in text and IP addresses count from a share
of the sampled values; person names when the values are the frame's own first and last names
(from its name columns), or "First Last" values that are nearly all different. `city`, `zip` and
similar are quasi-identifiers: dropped by default because, combined with job title or company
size, they narrow a persona to a handful of real people, and `country` keeps the geographic signal
an audience description needs. Pass `drop_quasi=False` to keep them. Text patterns live in
`pii_text`; `known_people` checks payloads against the workspace's own people.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import pandas as pd

from cio_mavera.errors import CioMaveraError
from cio_mavera.pii_text import EMAIL, EMAIL_RE, strings_in, text_kinds
from cio_mavera.pii_text import redact_text as redact_text

__all__ = ["EMAIL_RE", "PiiLeak", "assert_no_pii", "contains_pii", "find_pii", "find_pii_columns",
           "redact_text", "strip_pii", "text_pii_kinds"]


class PiiLeak(CioMaveraError):
    """Personal data was found in something about to leave the machine; the message names the path."""

    def __init__(self, message: str, *, findings: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.findings = findings


_IPV4_RE = re.compile(
    r"(?<![\d.])(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}(?![\d.])"
)
_DIRECT_NAMES = {
    "email": "email address",
    "phone": "phone number",
    "mobile": "phone number",
    "cell": "phone number",
    "telephone": "phone number",
    "tel": "phone number",
    "msisdn": "phone number",
    "address": "postal address",
    "street": "postal address",
    "ip": "IP address",
    "ssn": "government id",
    "passport": "government id",
    "dob": "date of birth",
    "birthday": "date of birth",
    "birthdate": "date of birth",
    "password": "secret",
    "token": "secret",
    "latitude": "precise location",
    "longitude": "precise location",
    "lat": "precise location",
    "lon": "precise location",
    "lng": "precise location",
}
_PERSON_NAMES = {
    "name", "first_name", "last_name", "full_name", "firstname", "lastname", "fullname",
    "surname", "given_name", "family_name", "middle_name", "maiden_name", "username",
    "user_name", "display_name", "nickname", "contact_name", "person_name",
}
_QUASI_NAMES = {
    "city": "quasi-identifier (city)",
    "town": "quasi-identifier (city)",
    "zip": "quasi-identifier (postal code)",
    "zipcode": "quasi-identifier (postal code)",
    "postcode": "quasi-identifier (postal code)",
    "postal_code": "quasi-identifier (postal code)",
    "date_of_birth": "date of birth",
    "birth_date": "date of birth",
}
_ID_RE = re.compile(r"(^|_)(id|uuid|guid)$")
# Columns whose values give the frame's own vocabulary of names (checked against other columns).
_FIRST_NAME_COLUMNS = {"first_name", "firstname", "given_name", "forename"}
_LAST_NAME_COLUMNS = {"last_name", "lastname", "surname", "family_name"}
_FULL_NAME_COLUMNS = {"name", "full_name", "fullname", "contact_name", "person_name", "display_name"}
_NAME_WORDS_RE = re.compile(r"[^\W\d_][^\W\d_'’.-]*(?:[ '’-][^\W\d_][^\W\d_'’.-]*){1,3}")
_TITLE_CASE_NAME_RE = re.compile(r"[A-Z][a-z'’-]+(?: [A-Z][a-z'’-]+){1,2}")
# An email-shaped value anywhere makes a column personal data: a cheap pre-filter for them.
_EMAIL_HINT = r"(?i)@|%40|&#0*64;|&commat;|[(\[{<]\s*at\s*[)\]}>]|\sat\s"


def find_pii_columns(
    df: pd.DataFrame,
    *,
    drop_quasi: bool = True,
    sample_size: int = 1000,
    min_share: float = 0.02,
    seed: int = 0,
) -> dict[str, str]:
    """Return {column: reason} for columns that hold personal data, by name or by value."""
    found: dict[str, str] = {}
    for col in df.columns:
        reason = _reason_by_name(str(col), drop_quasi)
        if reason is not None:
            found[str(col)] = reason
    names = _name_vocabulary(df)
    for col in df.columns:
        if str(col) in found:
            continue
        reason = _reason_by_values(df[col], sample_size, min_share, seed, names)
        if reason is not None:
            found[str(col)] = reason
    return found


def strip_pii(
    df: pd.DataFrame, *, keep: Iterable[str] = (), drop_quasi: bool = True, **kwargs: Any
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Return (df without PII columns, {dropped column: reason}); columns in `keep` are never dropped."""
    keep = set(keep)
    dropped = {
        c: r for c, r in find_pii_columns(df, drop_quasi=drop_quasi, **kwargs).items() if c not in keep
    }
    return df.drop(columns=list(dropped)), dropped


def find_pii(obj: Any) -> list[tuple[str, str]]:
    """Return (path, kind) for every personal-data pattern in a string or JSON-able payload."""
    return [(path, kind) for path, text in strings_in(obj) for kind in text_kinds(text)]


def contains_pii(obj: Any) -> list[str]:
    """Return "path: kind" for every personal-data pattern in `obj` (a string or JSON-able payload)."""
    return [f"{path}: {kind}" for path, kind in find_pii(obj)]


def assert_no_pii(obj: Any, *, what: str = "payload") -> None:
    """Raise `PiiLeak` naming the field paths (never the values) if `obj` holds personal data."""
    findings = find_pii(obj)
    if findings:
        where = ", ".join(f"{p} ({k})" for p, k in findings[:10])
        more = f" and {len(findings) - 10} more" if len(findings) > 10 else ""
        raise PiiLeak(
            f"{what} contains personal data at {where}{more}; strip it (cio_mavera.pii."
            "strip_pii) before sending it anywhere",
            findings=findings,
        )


def text_pii_kinds(text: str) -> list[str]:
    """Return the kinds of PII ("email", "phone", "street address", "customer id") in `text`."""
    return text_kinds(text)


def _normalise(name: str) -> str:
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return re.sub(r"[^a-z0-9]+", "_", snake.lower()).strip("_")


def _reason_by_name(name: str, drop_quasi: bool) -> str | None:
    norm = _normalise(name)
    tokens = norm.split("_")
    if norm in _PERSON_NAMES:
        return f"person name (column name {name!r})"
    if norm in _QUASI_NAMES:
        reason = _QUASI_NAMES[norm]
        if drop_quasi or not reason.startswith("quasi"):
            return f"{reason} (column name {name!r})"
        return None
    for token in tokens:
        if token in _DIRECT_NAMES:
            return f"{_DIRECT_NAMES[token]} (column name {name!r})"
    if _ID_RE.search(norm):
        return f"identifier (column name {name!r})"
    return None


def _is_text(s: pd.Series) -> bool:
    return (pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s)
            or isinstance(s.dtype, pd.CategoricalDtype))


def _name_vocabulary(df: pd.DataFrame) -> tuple[set[str], set[str]]:
    """(first names, last names) the frame's own name columns hold, case-folded."""
    first: set[str] = set()
    last: set[str] = set()
    for col in df.columns:
        norm = _normalise(str(col))
        if norm not in _FIRST_NAME_COLUMNS | _LAST_NAME_COLUMNS | _FULL_NAME_COLUMNS \
                or not _is_text(df[col]):
            continue
        words = [str(v).casefold().split() for v in df[col].dropna().unique()]
        if norm in _FIRST_NAME_COLUMNS:
            first.update(w[0] for w in words if w)
        elif norm in _LAST_NAME_COLUMNS:
            last.update(w[-1] for w in words if w)
        else:
            first.update(w[0] for w in words if len(w) > 1)
            last.update(w[-1] for w in words if len(w) > 1)
    return first, last


def _has_email(s: pd.Series) -> bool:
    """True when any value of `s` holds an email, plain, obfuscated or encoded (every value is read)."""
    values = pd.Series(s.dropna().unique()).astype(str)
    hints = values[values.str.contains(_EMAIL_HINT, regex=True)]
    return any(EMAIL in text_kinds(v) for v in hints)


def _reason_by_values(s: pd.Series, sample_size: int, min_share: float, seed: int,
                      names: tuple[set[str], set[str]]) -> str | None:
    if not _is_text(s):
        return None
    present = s.dropna()
    if present.empty:
        return None
    if _has_email(present):
        return "values hold email addresses (even one makes the column personal data)"
    sample = present.sample(min(sample_size, len(present)), random_state=seed).astype(str)
    kinds = sample.map(text_kinds)
    checks = (
        ("phone numbers, street addresses or customer ids", kinds.map(bool)),
        ("IP addresses", sample.str.fullmatch(_IPV4_RE)),
        ("person names", _person_names(sample, names)),
    )
    for label, hits in checks:
        share = float(hits.mean())
        if share >= min_share:
            if label.startswith("phone"):
                label = " or ".join(sorted({k for ks in kinds for k in ks}))
            return f"values look like {label} ({share:.0%} of sampled values)"
    if _mostly_distinct_names(sample):
        return "values look like person names (nearly all different 'First Last' values)"
    return None


def _person_names(sample: pd.Series, names: tuple[set[str], set[str]]) -> pd.Series:
    """True where a value is a first name and a last name the frame itself holds."""
    first, last = names
    if not first or not last:
        return pd.Series(False, index=sample.index)

    def known(value: str) -> bool:
        if not _NAME_WORDS_RE.fullmatch(value.strip()):
            return False
        words = value.casefold().split()
        return words[0] in first and words[-1] in last

    return sample.map(known)


def _mostly_distinct_names(sample: pd.Series) -> bool:
    """Half the values are "First Last" and most values differ: names, not categories."""
    if len(sample) < 20:
        return False
    shaped = sample.str.strip().str.fullmatch(_TITLE_CASE_NAME_RE)
    return float(shaped.mean()) >= 0.5 and sample[shaped].nunique() >= 0.5 * int(shaped.sum())
