"""Generated text as copy: options found and chatter, markdown and stray quotes removed."""

from __future__ import annotations

import pytest

from cio_mavera.mavera.generated import first_option, plain, split_options, strip_chatter, unquote

CHATTY = """Sure! Here's a fresh version of your email:

**Subject line:** “Your spring checklist is ready”
**Preview text:** Three things to do before Friday.

---

Hi there,

Body copy here.

Let me know if you'd like a different tone!"""

OPTIONS = """Here are three options for you:

### Option 1: Lead with the benefit
Subject: "Save two hours a week"
Preheader: Reports that build themselves.

**Option 2 —** Social proof
Subject: Join 10,000 teams

Option C: 'Your report is ready'

Hope this helps!"""

NUMBERED_SUBJECTS = """Here are 3 subject lines:

1. "Spring into savings
2. **Your cart misses you**
3) 'Last call: 20% off'"""

EMAIL_WITH_A_LIST = """Hi there,

Here's how to get started:

1. Open the board.
2. Invite a teammate.
3. Share your first report.

Cheers,
The team"""


def test_chatter_around_one_email_is_dropped_and_the_copy_kept() -> None:
    (option,) = split_options(CHATTY)
    assert option.startswith("**Subject line:**")
    assert "Let me know" not in option and "Sure!" not in option


def test_option_markers_split_the_text_and_keep_each_markers_title() -> None:
    options = split_options(OPTIONS)
    assert len(options) == 3
    assert options[0].splitlines()[0] == "# Lead with the benefit"
    assert options[1].splitlines()[0] == "# Social proof"
    assert options[2] == "# 'Your report is ready'"
    assert "Hope this helps" not in options[2]


def test_a_numbered_list_announced_as_options_is_split_and_stray_quotes_go() -> None:
    options = split_options(NUMBERED_SUBJECTS)
    assert [plain(o) for o in options] == ["Spring into savings", "Your cart misses you",
                                           "Last call: 20% off"]


def test_a_numbered_list_inside_one_email_is_not_split() -> None:
    assert split_options(EMAIL_WITH_A_LIST) == [EMAIL_WITH_A_LIST]


def test_labelled_numbered_items_are_options_without_a_preamble() -> None:
    text = "1. Subject: First idea\nPreheader: one\n\n2. Subject: Second idea\nPreheader: two"
    assert [o.splitlines()[0] for o in split_options(text)] == ["Subject: First idea",
                                                                "Subject: Second idea"]


def test_version_numbers_in_copy_are_not_option_markers() -> None:
    text = "Version 2.0 is here\n\nEverything you asked for, and faster."
    assert split_options(text) == [text]


@pytest.mark.parametrize(("line", "expected"), [
    ("**Subject line:** “Your spring checklist”", "Subject line: “Your spring checklist”"),
    ("### The spring guide", "The spring guide"),
    ("- [Get started](https://example.com) →", "Get started"),
    ("_A short note about reports._", "A short note about reports."),
    ('"Spring into savings', "Spring into savings"),
    ("Hi {{customer.first_name}},", "Hi {{customer.first_name}},"),
    ("> 2. **Bold _and italic_**", "Bold and italic"),
])
def test_plain_drops_markdown_and_quotes(line: str, expected: str) -> None:
    assert plain(line) == expected


def test_unquote_keeps_inner_quotes_and_apostrophes() -> None:
    assert unquote('Why "free" isn\'t free') == 'Why "free" isn\'t free'
    assert unquote("‘Don't miss it’") == "Don't miss it"
    assert unquote("« Soldes »") == "Soldes"


def test_empty_and_chatter_only_texts_have_no_option() -> None:
    assert split_options("") == [] and first_option("   ") == ""
    assert strip_chatter("Sure! Here you go:\n\nLet me know if you need more.") == ""
