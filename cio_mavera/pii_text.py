"""Personal data in free text: emails (plain, obfuscated, encoded), phones, street addresses, ids.

Patterns only: what a string looks like, not whose it is (`known_people` checks that). Text is
first decoded the ways it hides things (`%40`, `%2B`, `&#64;`); dates and times are set aside so
they never read as phone numbers; a run of digits is a phone only with 10-15 digits (8-15 after
"+" or "00"), grouped as phones are written. So counts (12,345), rates, campaign and action ids,
dates, unix times, amounts and versions stay ordinary numbers. A count of ten digits or more
written with separators (5,551,234,021) reads as a phone: no aggregate the kit sends is that large.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote

EMAIL = "email"
PHONE = "phone"
ADDRESS = "street address"
CUSTOMER_ID = "customer id"
KINDS = (EMAIL, PHONE, ADDRESS, CUSTOMER_ID)
_PLACEHOLDERS = {EMAIL: "[email]", PHONE: "[phone]", ADDRESS: "[address]", CUSTOMER_ID: "[id]"}

EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_AT = r"(?:\s*[(\[{<]\s*at\s*[)\]}>]\s*|\s+at\s+)"
_DOT = r"(?:\s*[(\[{<]\s*dot\s*[)\]}>]\s*|\s+dot\s+|\.)"
# An obfuscated address is found from its "at": the mailbox before it, a dotted domain after it.
_AT_RE = re.compile(_AT, re.IGNORECASE)
_LOCAL_RE = re.compile(r"(?<![\w.+-])[a-z0-9._+-]+\Z", re.IGNORECASE)
_DOMAIN_RE = re.compile(rf"[a-z0-9-]+(?:{_DOT}[a-z0-9-]+)*{_DOT}[a-z]{{2,}}(?![\w-])", re.IGNORECASE)
# Words that precede a plain " at <domain>" in copy ("Shop now at tallyfold.example"): not a mailbox.
_NOT_A_MAILBOX = frozenset((
    "a", "an", "the", "and", "or", "but", "so", "is", "are", "was", "were", "be", "been", "am",
    "pm", "us", "me", "you", "him", "her", "them", "it", "we", "they", "our", "your", "now",
    "here", "there", "online", "look", "looking", "available", "visit", "visiting", "find",
    "found", "shop", "shopping", "buy", "order", "book", "booking", "sign", "signed", "log",
    "logged", "login", "click", "tap", "apply", "register", "registered", "read", "watch",
    "listen", "download", "get", "try", "chat", "call", "write", "email", "mail", "reach",
    "contact", "message", "text", "dm", "join", "meet", "see", "stay", "live", "free", "more",
    "info", "details", "help", "support", "team", "today", "tomorrow", "tonight", "only",
    "starting", "starts", "start", "arrive", "arrives", "arrived", "up", "out", "in", "on",
    "off", "sale", "deals", "deal", "prices", "price", "go", "come", "back", "check",
    "checkout", "pay", "web", "site", "app", "store", "stores", "page", "hello", "hi",
    "everything", "anything", "something", "all", "started"
))

_DATE_TIME_RE = re.compile(
    r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b"
    r"|\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b|\b\d{1,2}:\d{2}(?::\d{2})?\b")
_PHONE_CANDIDATE_RE = re.compile(
    r"(?<![\w+%.,/-])(?:\+\s?)?\(?\d+\)?(?:[ .,/-]\(?\d+\)?)*(?!\w)")
_THOUSANDS_RE = re.compile(r"\d{1,3}(?:,\d{3})+")
_PHONE_NANP_RE = re.compile(r"(?<![\d\w])\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}(?![\d\w])")

_STREET_TYPES = ("street|avenue|road|boulevard|lane|drive|way|court|place|terrace|circle|parkway|"
                 "highway|square|st|ave|rd|blvd|ln|dr|ct|pl|ter|cir|pkwy|hwy|sq")
_STREET_RE = re.compile(
    rf"(?<![\w.,])\d{{1,5}}[a-z]?,?\s+(?P<name>(?:[a-z][\w'’.-]*\s+){{1,3}}?)(?P<type>{_STREET_TYPES})"
    r"\b\.?", re.IGNORECASE)
# Words that sit between a number and "way"/"drive"/"place" in copy, never in a street's name.
_NOT_A_STREET = frozenset((
    "a", "an", "the", "and", "or", "to", "of", "in", "on", "at", "for", "by", "with", "from",
    "into", "our", "your", "my", "their", "its", "this", "that", "these", "those", "new",
    "more", "most", "less", "best", "top", "free", "easy", "simple", "great", "quick", "smart",
    "better", "fast", "faster", "steps", "ways", "tips", "reasons", "things", "ideas",
    "days", "weeks", "months", "years", "minutes", "hours", "seconds", "times", "people",
    "users", "customers", "messages", "emails", "clicks", "sales", "deals", "plans", "seats",
    "projects", "teams", "you", "we", "it", "go", "get", "make", "take", "find", "every",
    "each", "all", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "ten", "is", "are", "be", "can", "will"
))
_ABBREVIATED_TYPES = frozenset(("st", "ave", "rd", "blvd", "ln", "dr", "ct", "pl", "ter", "cir", "pkwy",
                                "hwy", "sq"))
_ROMANCE_STREET_RE = re.compile(
    r"(?<![\w.,])\d{1,4}(?:\s?(?:bis|ter))?,?\s+(?:rue|boulevard|bd|chemin|allée|impasse|quai|calle|"
    r"rua|avenida|piazza|viale)\s+(?:(?:de|du|des|del|da|la|le|l')\s*)*[A-ZÀ-Ý]")
_GERMANIC_STREET_RE = re.compile(
    r"\b[A-ZÄÖÜ][\wäöüß-]*(?:straße|strasse|str\.|weg|platz|allee|gasse)\s+\d{1,4}[a-z]?\b")

_CIO_PREFIXED_RE = re.compile(r"\bcio_[0-9a-f]{6,}\b", re.IGNORECASE)
_LABELLED_ID_RE = re.compile(
    r"\b(?:cio|customer|user|person|contact|profile|member|client)[ _-]?ids?\b\s*(?:[:=#]|is\b|was\b)?"
    r"\s*[\"']?(?=[\w-]*\d)[\w-]{3,}", re.IGNORECASE)


def decode(text: str) -> str:
    """`text` with the encodings that hide an address undone: percent-escapes and HTML entities."""
    if "%" in text:
        text = unquote(text)
    if "&" in text:
        text = html.unescape(text)
    return text


def text_kinds(text: str) -> list[str]:
    """The kinds of personal data in `text` ("email", "phone", "street address", "customer id")."""
    found = {kind for kind, _, _ in spans(text)}
    return [kind for kind in KINDS if kind in found]


def spans(text: str) -> list[tuple[str, int, int]]:
    """(kind, start, end) of every personal-data form in `decode(text)`, positions in that text."""
    text = decode(text)
    out: list[tuple[str, int, int]] = [(EMAIL, *m.span()) for m in EMAIL_RE.finditer(text)]
    out += [(EMAIL, start, end) for start, end, _, _ in _obfuscated_emails(text)]
    out += [(CUSTOMER_ID, *m.span()) for m in _CIO_PREFIXED_RE.finditer(text)]
    out += [(CUSTOMER_ID, *m.span()) for m in _LABELLED_ID_RE.finditer(text)]
    out += [(ADDRESS, *m.span()) for m in _STREET_RE.finditer(text) if _is_street(m)]
    out += [(ADDRESS, *m.span()) for m in _ROMANCE_STREET_RE.finditer(text)]
    out += [(ADDRESS, *m.span()) for m in _GERMANIC_STREET_RE.finditer(text)]
    out += [(PHONE, start, end) for start, end in phone_spans(text)]
    return out


def redact_text(text: str) -> str:
    """`text` (decoded) with every personal-data form replaced by [email], [phone], [address], [id]."""
    decoded = decode(text)
    found = sorted(spans(decoded), key=lambda s: (s[1], -s[2]))
    parts, at = [], 0
    for kind, start, end in found:
        if start < at:  # inside a form already replaced
            continue
        parts += [decoded[at:start], _PLACEHOLDERS[kind]]
        at = end
    return "".join(parts) + decoded[at:]


def phone_spans(text: str) -> list[tuple[int, int]]:
    """Where `text` holds phone numbers (`text` already decoded)."""
    masked = _DATE_TIME_RE.sub(lambda m: "_" * len(m.group()), text)
    found = [m.span() for m in _PHONE_CANDIDATE_RE.finditer(masked) if is_phone(m.group())]
    return found + [m.span() for m in _PHONE_NANP_RE.finditer(masked)]


def is_phone(candidate: str) -> bool:
    """True when a run of digits and separators is written as a phone number is."""
    plus = candidate.startswith("+")
    body = candidate.lstrip("+ ")
    groups = re.findall(r"\d+", body)
    digits = "".join(groups)
    if not plus and digits.startswith("00") and len(groups[0]) >= 2:
        plus, digits = True, digits[2:]  # 0044 ...: the international prefix spelt out
    separators = set(re.sub(r"[\d()]", "", body))
    if "," in separators:  # only a ten-digit-plus number in thousands groups (5,551,234,021)
        return not plus and separators == {","} and bool(_THOUSANDS_RE.fullmatch(body)) \
            and 10 <= len(digits) <= 15
    if not plus and "." in separators and (len(groups) == 2 or
                                           (len(groups) == 4 and all(len(g) <= 3 for g in groups))):
        return False  # a decimal number or an IPv4 address
    if plus:
        return 8 <= len(digits) <= 15
    if any(len(g) < 2 for g in groups[1:]):
        return False  # "1 2 3 4": a list of small numbers
    if len(groups) == 1 and len(digits) in (10, 13) and digits[0] == "1":
        return False  # a unix time in seconds or milliseconds
    return 10 <= len(digits) <= 15


def digit_groups(text: str) -> Iterator[list[str]]:
    """The digit groups of every phone-like run in `text` (decoded), for matching known phones."""
    masked = _DATE_TIME_RE.sub(lambda m: "_" * len(m.group()), text)
    for m in _PHONE_CANDIDATE_RE.finditer(masked):
        yield re.findall(r"\d+", m.group())


def email_addresses(text: str) -> list[str]:
    """Every email address in `text` (decoded), obfuscated ones written out, lower-cased."""
    found = [m.group().lower() for m in EMAIL_RE.finditer(text)]
    for _, _, local, domain in _obfuscated_emails(text):
        found.append(f"{local}@{re.sub(_DOT, '.', domain, flags=re.IGNORECASE)}".lower())
    return found


def strings_in(obj: Any, path: str = "$") -> Iterator[tuple[str, str]]:
    """(path, text) of every string in a JSON-able payload, dict keys included ("<path> (key)")."""
    if obj is None or isinstance(obj, bool | int | float):
        return
    if isinstance(obj, bytes | bytearray):
        text = bytes(obj).decode("utf-8", errors="replace")
        try:
            obj = json.loads(text)
        except ValueError:
            obj = text
    if isinstance(obj, str):
        yield path, obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            child = f"{path}.{k}" if isinstance(k, str) and k.isidentifier() else f"{path}[{k!r}]"
            if isinstance(k, str):
                yield f"{child} (key)", k
            yield from strings_in(v, child)
    elif isinstance(obj, list | tuple | set | frozenset):
        for i, v in enumerate(obj):
            yield from strings_in(v, f"{path}[{i}]")
    else:
        yield from strings_in(str(obj), path)


def _obfuscated_emails(text: str) -> list[tuple[int, int, str, str]]:
    """(start, end, mailbox, domain as written) of each address spelt with (at), [at] or " at "."""
    found = []
    for at in _AT_RE.finditer(text):
        local = _LOCAL_RE.search(text[max(0, at.start() - 64):at.start()])
        domain = _DOMAIN_RE.match(text, at.end())
        if local is None or domain is None:
            continue
        plain = at.group().strip().lower() == "at"  # (at), [at]: obfuscated on purpose
        if plain and local.group().lower() in _NOT_A_MAILBOX:
            continue
        found.append((at.start() - len(local.group()), domain.end(), local.group(), domain.group()))
    return found


def _is_street(m: re.Match[str]) -> bool:
    words = m.group("name").split()
    if any(w.lower().strip(".,") in _NOT_A_STREET for w in words):
        return False
    kind = m.group("type")
    return kind.lower() not in _ABBREVIATED_TYPES or kind[0].isupper()
