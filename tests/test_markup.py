"""Outside text reaches reports as text: no tags, no links, no mathtext."""

from __future__ import annotations

from nbconvert.filters.markdown_mistune import markdown2html_mistune

from cio_mavera.markup import html_text, md, md_block, plain_label, safe_url


def _rendered(markdown_text: str) -> str:
    """Markdown as the report renderer (nbconvert) turns it into HTML."""
    return markdown2html_mistune(markdown_text)


def test_markdown_text_never_becomes_a_tag_or_a_link():
    hostile = 'See <script>alert(1)</script> [win](javascript:alert(2)) **bold** `code` <img src=x onerror=y>'
    rendered = _rendered(f"Subject: {md(hostile)}")
    assert "<script" not in rendered and "<img" not in rendered and "<a " not in rendered
    assert "<strong>" not in rendered and "<code>" not in rendered
    assert "alert(1)" in rendered  # still readable as text


def test_blocks_keep_paragraphs_and_lists_but_disarm_html_and_links():
    rendered = _rendered(md_block("Diagnosis:\n\n- fix the subject\n- <b>now</b> [x](javascript:y)"))
    assert "<li>fix the subject</li>" in rendered
    assert "<b>" not in rendered and "<a " not in rendered


def test_only_http_links_survive():
    assert safe_url("https://mavera.io/x") == "https://mavera.io/x"
    for bad in ("javascript:alert(1)", " JAVASCRIPT:alert(1)", "data:text/html,x", "//evil", "/local"):
        assert safe_url(bad) is None


def test_html_and_chart_labels_are_inert():
    assert html_text('"><script>') == "&quot;&gt;&lt;script&gt;"
    assert plain_label("Save $5 now\x07") == r"Save \$5 now"
    assert plain_label("x" * 100, limit=10) == "x" * 9 + "…"
