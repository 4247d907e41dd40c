"""PII guard: find and strip personal-data columns, and scan payloads before they leave for Mavera.

Columns are caught by name (email, names, phone, address, ids, ...) and by value on a sample
(emails, phone numbers, IP addresses, street addresses), so an innocuous name cannot hide them.
`city`, `zip` and similar are quasi-identifiers: dropped by default because, combined with job
title or company size, they narrow a persona to a handful of real people, and `country` keeps the
geographic signal an audience description needs. Pass `drop_quasi=False` to keep them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from cio_mavera.errors import CioMaveraError


class PiiLeak(CioMaveraError):
    """Personal data was found in something about to leave the machine; the message names the path."""

    def __init__(self, message: str, *, findings: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.findings = findings


EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# A leading "+" and 8-15 digits (E.164, optionally spaced), or the separated North American form.
_PHONE_PLUS_RE = re.compile(r"(?<![\w+])\+\d[\d\s().-]{5,22}\d(?![\w])")
_PHONE_NANP_RE = re.compile(r"(?<![\d\w])\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}(?![\d\w])")
_IPV4_RE = re.compile(
    r"(?<![\d.])(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}(?![\d.])"
)
_STREET_RE = re.compile(
    r"\b\d{1,6}[A-Za-z]?\s+(?:[A-Za-z0-9.'-]+\s+){1,4}"
    r"(?:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|way|court|ct|place|pl|"
    r"terrace|ter|circle|cir|parkway|pkwy|highway|hwy|square|sq|strasse|straße)\b",
    re.IGNORECASE,
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


def find_pii_columns(
    df: pd.DataFrame,
    *,
    drop_quasi: bool = True,
    sample_size: int = 1000,
    min_share: float = 0.02,
    seed: int = 0,
) -> dict[str, str]:
    """Return {column: reason} for columns that hold personal data, by name or by sampled values."""
    found: dict[str, str] = {}
    for col in df.columns:
        reason = _reason_by_name(str(col), drop_quasi)
        if reason is None:
            reason = _reason_by_values(df[col], sample_size, min_share, seed)
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
    """Return (path, kind) for every email/phone pattern in a string or JSON-able payload."""
    findings: list[tuple[str, str]] = []
    _walk(obj, "$", findings)
    return findings


def contains_pii(obj: Any) -> list[str]:
    """Return "path: kind" for every email/phone pattern in `obj` (a string or JSON-able payload)."""
    return [f"{path}: {kind}" for path, kind in find_pii(obj)]


def assert_no_pii(obj: Any, *, what: str = "payload") -> None:
    """Raise `PiiLeak` naming the field paths (never the values) if `obj` holds an email or phone."""
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
    """Return the kinds of PII ("email", "phone") that occur in `text`."""
    kinds = []
    if EMAIL_RE.search(text):
        kinds.append("email")
    if _has_phone(text):
        kinds.append("phone")
    return kinds


def _has_phone(text: str) -> bool:
    if _PHONE_NANP_RE.search(text):
        return True
    for m in _PHONE_PLUS_RE.finditer(text):
        if 8 <= sum(ch.isdigit() for ch in m.group()) <= 15:
            return True
    return False


def _walk(obj: Any, path: str, out: list[tuple[str, str]]) -> None:
    if obj is None or isinstance(obj, bool | int | float):
        return
    if isinstance(obj, bytes | bytearray):
        text = bytes(obj).decode("utf-8", errors="replace")
        try:
            obj = json.loads(text)
        except ValueError:
            obj = text
        if not isinstance(obj, str):
            _walk(obj, path, out)
            return
    if isinstance(obj, str):
        out.extend((path, kind) for kind in text_pii_kinds(obj))
        return
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            child = f"{path}.{k}" if isinstance(k, str) and k.isidentifier() else f"{path}[{k!r}]"
            if isinstance(k, str):
                out.extend((f"{child} (key)", kind) for kind in text_pii_kinds(k))
            _walk(v, child, out)
        return
    if isinstance(obj, list | tuple | set | frozenset):
        for i, v in enumerate(obj):
            _walk(v, f"{path}[{i}]", out)
        return
    _walk(str(obj), path, out)


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


def _reason_by_values(s: pd.Series, sample_size: int, min_share: float, seed: int) -> str | None:
    if not (pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s)):
        return None
    present = s.dropna()
    if present.empty:
        return None
    sample = present.sample(min(sample_size, len(present)), random_state=seed).astype(str)
    checks = (
        ("email addresses", sample.str.contains(EMAIL_RE)),
        ("phone numbers", sample.map(_has_phone)),
        ("IP addresses", sample.str.fullmatch(_IPV4_RE)),
        ("street addresses", sample.str.contains(_STREET_RE)),
    )
    for label, hits in checks:
        share = float(hits.mean())
        if share >= min_share:
            return f"values look like {label} ({share:.0%} of sampled values)"
    return None
