"""Text from outside (Customer.io, Mavera, webhooks) goes into reports as text, never as markup.

Reports are built from Markdown and HTML snippets; anything a workspace or an API wrote (message
copy, campaign names, persona answers) passes through one of these before it is interpolated, so a
subject like `<script>` or a `javascript:` link shows as the characters it is and never runs.
"""

from __future__ import annotations

import html
import re
from typing import Any

# Characters Markdown gives meaning to (emphasis, links, headings, tables, code, HTML).
_MARKDOWN_ACTIVE = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$])")


def md(value: Any) -> str:
    """`value` as literal text inside Markdown: HTML escaped, Markdown syntax backslashed, one line."""
    text = html.escape(" ".join(str(value if value is not None else "").split()), quote=False)
    return _MARKDOWN_ACTIVE.sub(r"\\\1", text)


def md_block(value: Any) -> str:
    """Several lines of outside text (e.g. a research brief) as Markdown: paragraphs and lists kept,
    raw HTML and links disarmed (`<` and `[`/`(` are escaped, so nothing becomes a tag or a link)."""
    text = html.escape(str(value if value is not None else ""), quote=False)
    return re.sub(r"([\[\]()`])", r"\\\1", text)


def html_text(value: Any) -> str:
    """`value` as text inside HTML (attribute-safe too)."""
    return html.escape(str(value if value is not None else ""), quote=True)


def safe_url(value: Any) -> str | None:
    """`value` when it is an http(s) URL, else None (no javascript:, data:, or relative links)."""
    text = str(value or "").strip()
    return text if re.match(r"https?://[^\s<>\"']+$", text, flags=re.I) else None


def plain_label(value: Any, limit: int = 60) -> str:
    """`value` safe as a matplotlib label: no mathtext ($), no control characters, trimmed."""
    text = "".join(ch for ch in str(value if value is not None else "") if ch.isprintable())
    text = text.replace("$", r"\$")
    return text if len(text) <= limit else text[: limit - 1] + "…"
