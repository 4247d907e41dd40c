"""Generated text as copy: the options in a generation's output, without the chatter around them.

A generation answers with one `output` (mavera-api.md §8.2), written by a model: it may open with
"Sure! Here's a version:", close with "Let me know if you'd like changes", number its lines, or hold
several options under "Option 1:" / "### Variation B" headings although one was asked for. These
helpers find the options and clean a line of its markdown and stray quotes, so callers parse copy
rather than formatting.
"""

from __future__ import annotations

import re

__all__ = ["first_option", "plain", "split_options", "strip_chatter", "unquote"]

# "Option 1:", "**Variation B**", "### Version 2 -", "Alternative #3." (not "Version 2.0 is here").
_MARKER = re.compile(
    r"^\s*(?:#{1,6}\s*)?(?:\*\*|__)?\s*(?:option|variation|variant|version|alternative)\s*#?\s*"
    r"(?:\d{1,2}|[A-Za-z])(?![\w.])(?:\.(?!\d))?\s*(?:\*\*|__)?\s*(?:[:)\-\u2013\u2014]\s*)?"
    r"(?:\*\*|__)?\s*(?P<rest>.*?)\s*(?:\*\*|__)?\s*$", re.I)
_ITEM = re.compile(r"^ {0,3}(\d{1,2})[.)]\s+(?P<rest>.*)$")
# Openers and closers a model wraps around the copy it was asked for.
_OPENER = re.compile(r"^(?:sure|certainly|absolutely|of course|okay|ok|great|happy to help|"
                     r"here(?:'s|\u2019s| is| are)|below (?:is|are)|i(?:'ve|\u2019ve| have) "
                     r"(?:written|drafted|created))\b", re.I)
_CLOSER = re.compile(r"^(?:let me know|hope (?:this|that|these) helps?|want me to|would you like|"
                     r"feel free|happy to (?:adjust|tweak|help)|i can (?:also|adjust))\b", re.I)
# A preamble that announces several options: "Here are 3 subject lines:".
_MANY = re.compile(r"\b(?:subject lines|headlines|options|variations|versions|alternatives|"
                   r"ideas|titles|taglines)\b", re.I)
_LABELLED = re.compile(r"^\W*(?:subject|title|headline)\b", re.I)
_QUOTE_PAIRS = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "\u00ab": "\u00bb",
                "\u201e": "\u201c"}
_DOUBLE_QUOTES = "\"\u201c\u201d\u201e\u00ab\u00bb"


def strip_chatter(text: str) -> str:
    """`text` without a leading "Sure! Here's..." line and a trailing "Let me know..." line."""
    lines = (text or "").replace("\r\n", "\n").replace("\r", "\n").strip().split("\n")
    while lines and (not lines[0].strip() or _is_opener(lines[0])):
        lines.pop(0)
    while lines and (not lines[-1].strip() or _CLOSER.match(plain(lines[-1]))):
        lines.pop()
    return "\n".join(lines).strip()


def _is_opener(line: str) -> bool:
    text = plain(line)
    return bool(_OPENER.match(text)) and (text.endswith((":", "!", ".")) or len(text.split()) <= 12)


def split_options(text: str) -> list[str]:
    """The separate pieces of copy in a generated text, in order (one when it holds one).

    Options are split at "Option N"-style markers (a marker's own text stays as a `# ` heading
    line of its option), or at a top-level numbered list when the preamble announces several
    ("Here are 3 subject lines:"), every item is labelled ("1. Subject: ..."), or the text is
    nothing but one-line items. A numbered list inside one email body is not split.
    """
    raw = (text or "").replace("\r\n", "\n").replace("\r", "\n").strip()
    if not raw:
        return []
    lines = raw.split("\n")
    marked = [i for i, line in enumerate(lines) if _MARKER.match(line)]
    if marked:
        options = []
        for k, start in enumerate(marked):
            stop = marked[k + 1] if k + 1 < len(marked) else len(lines)
            rest = _MARKER.match(lines[start])["rest"]  # type: ignore[index]
            block = ([f"# {rest}"] if plain(rest) else []) + lines[start + 1:stop]
            body = strip_chatter("\n".join(block))
            if body:
                options.append(body)
        return options or [strip_chatter(raw)]
    items = [i for i, line in enumerate(lines) if _ITEM.match(line)]
    if len(items) >= 2 and _is_option_list(lines, items):
        options = []
        for k, start in enumerate(items):
            stop = items[k + 1] if k + 1 < len(items) else len(lines)
            block = [_ITEM.match(lines[start])["rest"], *lines[start + 1:stop]]  # type: ignore[index]
            body = strip_chatter("\n".join(block))
            if body:
                options.append(body)
        return options
    cleaned = strip_chatter(raw)
    return [cleaned] if cleaned else []


def _is_option_list(lines: list[str], items: list[int]) -> bool:
    preamble = [line for line in lines[:items[0]] if line.strip()]
    bodies = [_ITEM.match(lines[i])["rest"] for i in items]  # type: ignore[index]
    if preamble:
        return len(preamble) == 1 and bool(_MANY.search(preamble[0]))
    if all(_LABELLED.match(body) for body in bodies):
        return True
    after = [line for line in lines[items[0]:] if line.strip()]
    return len(after) == len(items)  # nothing but one-line items


def first_option(text: str) -> str:
    """The first piece of copy in a generated text ("" when there is none)."""
    options = split_options(text)
    return options[0] if options else ""


def unquote(text: str) -> str:
    """`text` without the quotes wrapped around it, paired or stray ("Spring sale, 'Spring sale')."""
    text = text.strip()
    while len(text) >= 2 and _QUOTE_PAIRS.get(text[0]) == text[-1]:
        text = text[1:-1].strip()
    # A stray double quote at one end only (a model that lost the other half).
    if text[:1] in _DOUBLE_QUOTES and not any(q in text[1:] for q in _DOUBLE_QUOTES):
        text = text[1:].strip()
    if text[-1:] in _DOUBLE_QUOTES and not any(q in text[:-1] for q in _DOUBLE_QUOTES):
        text = text[:-1].strip()
    return text


_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(?<!\w)(\*\*|__|\*|_|`)(?=\S)(.+?)(?<=\S)\1(?!\w)")
_LEAD = re.compile(r"^\s*(?:>\s*)*(?:#{1,6}\s+|[-*+\u2022]\s+|\d{1,2}[.)]\s+)?")
_ARROWS = re.compile(r"\s*(?:\u2192|\u00bb|->|=>)+\s*$")


def plain(line: str) -> str:
    """One line of generated markdown as plain text: no heading, bullet, emphasis, link or quotes."""
    text = _LEAD.sub("", line or "")
    text = _LINK.sub(r"\1", text)
    for _ in range(2):  # nested emphasis (**_x_**)
        text = _EMPHASIS.sub(r"\2", text)
    text = text.replace("**", "").replace("__", "")
    text = _ARROWS.sub("", text)
    return unquote(re.sub(r"\s+", " ", text).strip())
