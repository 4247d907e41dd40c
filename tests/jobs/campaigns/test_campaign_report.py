"""Job 1's report pieces: one name per channel, intervals and p-values readable, A/B test sizes,
the history notice, plain parameters, and hostile Customer.io and Mavera text kept as text in
every table, sentence, card and chart (a sandbox workspace with `campaigns.hostile_copy`)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from bs4 import BeautifulSoup
from conftest import END, settings_for
from matplotlib.figure import Figure
from nbconvert import HTMLExporter
from scipy.stats import norm

from cio_mavera.connect import Connection
from cio_mavera.errors import InvalidParameter
from cio_mavera.jobs import campaigns as cm
from cio_mavera.jobs import report_parts as rp
from cio_mavera.jobs.campaigns import charts, narrative, tables
from cio_mavera.jobs.campaigns.parameters import PARAMETERS
from cio_mavera.sandbox.server import start_sandbox
from cio_mavera.sandbox.workspace import World
from cio_mavera.sandbox.workspace.catalog import (
    HOSTILE_CAMPAIGN,
    HOSTILE_NAME,
    HOSTILE_PREHEADER,
    HOSTILE_SUBJECT,
)

WINDOW_END = "2026-04-01"
_MARKDOWN = HTMLExporter()


def html_of_markdown(text: str) -> str:
    """Markdown as the report renders it (nbconvert's renderer)."""
    return _MARKDOWN.markdown2html({}, text)


def assert_inert(html: str, *visible: str) -> BeautifulSoup:
    """`html` holds no script, no javascript: link, no image or event handler, and shows `visible`."""
    soup = BeautifulSoup(html, "html.parser")
    assert soup.find_all("script") == []
    assert soup.find_all("img") == []
    assert [t for t in soup.find_all(True) if any(a.startswith("on") for a in t.attrs)] == []
    assert [a["href"] for a in soup.find_all(href=True) if not a["href"].startswith(("http", "data:", "#"))] == []
    text = soup.get_text()
    for piece in visible:
        assert piece in text, piece
    return soup


@pytest.fixture(scope="module")
def hostile_server():
    """Seed 7 in the clean world, every name and piece of copy hostile."""
    world = World.clean().with_knobs({"campaigns.hostile_copy": True})
    server = start_sandbox(seed=7, customers=500, end=END, world=world)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hostile_data(hostile_server, tmp_path_factory) -> cm.CampaignData:
    data_dir = tmp_path_factory.mktemp("hostile-data")
    connection = Connection(settings_for(hostile_server, data_dir), "live", "sandbox-test",
                            sandbox_url=hostile_server.url)
    return cm.load_campaign_data(connection, days=30, end=WINDOW_END)


@pytest.fixture(scope="module")
def findings(hostile_data) -> cm.Findings:
    return cm.analyse(hostile_data)


# ---- the hostile-copy knob --------------------------------------------------------------------


def test_hostile_copy_changes_text_only(hostile_server):
    plain = start_sandbox(seed=7, customers=500, end=END, world=World.clean())
    try:
        ours, theirs = hostile_server.state.workspace, plain.state.workspace
        assert ours.metrics.equals(theirs.metrics)
        assert ours.truth["underperformers"] == theirs.truth["underperformers"]
        assert ours.truth["world"]["campaigns"]["hostile_copy"] is True
        assert theirs.truth["world"]["campaigns"]["hostile_copy"] is False
    finally:
        plain.stop()
    email = ours.actions[ours.actions["channel"] == "email"]
    assert email["subject"].str.startswith(HOSTILE_SUBJECT).all()
    assert (email["preheader_text"] == HOSTILE_PREHEADER).all()
    assert ours.actions["name"].str.endswith(HOSTILE_NAME).all()
    assert ours.campaigns["name"].str.endswith(HOSTILE_CAMPAIGN).all()


# ---- names ------------------------------------------------------------------------------------


def test_sms_is_called_sms_in_every_table_legend_and_sentence(hostile_data, findings):
    texts = [narrative.funnel_sentence(findings), narrative.spread_sentence(findings),
             narrative.underperformer_sentence(findings), narrative.trend_sentence(findings)]
    frames = [tables.funnel_frame(findings, hostile_data), tables.flagged_frame(findings, hostile_data)]
    texts += [frame.to_csv() for frame in frames]
    trend = charts.trend_chart(findings.trend)
    spread = charts.distribution_chart(findings.tests, findings.spreads)
    texts += [t.get_text() for ax in trend.axes for t in ax.get_legend().get_texts()]
    texts += [t.get_text() for ax in spread.axes for t in ax.get_yticklabels()]
    assert not [t for t in texts if "twilio" in t.lower()]
    assert "SMS" in " ".join(texts)


def test_tables_put_names_beside_ids_and_intervals_beside_rates(hostile_data, findings):
    funnel = tables.funnel_frame(findings, hostile_data)
    assert funnel["Message"].str.contains(r"\(#\d+\)$").all()
    assert funnel["Campaign"].str.contains(r"\(#\d+\)$").all()
    assert "Action" not in funnel.columns and len(funnel.columns) == 12
    flagged = tables.flagged_frame(findings, hostile_data)
    assert flagged["Observed (95% CI)"].str.fullmatch(r"\d+\.\d\d% \(\d+\.\d\d–\d+\.\d\d%\)").all()
    assert not flagged["Adjusted p"].isin(["0", "0.0", "0.0e+00"]).any()
    # The chart's typical message is the table's: the flagged rows' reference, drawn as their gap.
    figure = charts.distribution_chart(findings.tests, findings.spreads)
    ends = sorted(round(float(line.get_xdata()[1]), 6) for ax in figure.axes for line in ax.get_lines()
                  if line.get_linestyle() == ":")
    assert ends == sorted(round(100 * b, 6) for b in findings.flagged["baseline"])


def test_flagged_messages_are_highlighted_in_the_funnel(hostile_data, findings):
    soup = BeautifulSoup(tables.funnel(findings, hostile_data), "html.parser")
    rows = soup.find_all("tr", class_=rp.FLAGGED_ROW_CLASS)
    assert len(rows) == findings.flagged["action_id"].nunique() == 3


# ---- hostile text stays text ------------------------------------------------------------------


def test_hostile_customerio_copy_stays_text_in_tables_sentences_cards_and_charts(hostile_data, findings):
    for html in (tables.funnel(findings, hostile_data), tables.flagged(findings, hostile_data)):
        assert_inert(html, HOSTILE_NAME, HOSTILE_CAMPAIGN)
    for text in (narrative.underperformer_sentence(findings), narrative.funnel_sentence(findings)):
        soup = assert_inert(html_of_markdown(text), HOSTILE_NAME)
        assert not [t for t in soup.find_all(["strong", "em", "a"]) if "markdown" in t.get_text()]
    empty = cm.rank_variations(pd.DataFrame(columns=["action_id", "variation_id", "persona_id",
                                                     "persona_name", "score", "would_open",
                                                     "would_click", "reason"]))
    strategy = cm.Strategy("", [], [], None, 0, skipped="not asked")
    card = narrative.summary(findings, strategy, empty, cm.ab_test_plan(findings, empty))
    assert_inert(card, HOSTILE_NAME)
    assert_inert(html_of_markdown(narrative.next_steps(findings, strategy, empty,
                                                        cm.ab_test_plan(findings, empty))), HOSTILE_NAME)


def test_a_dollar_in_a_name_is_drawn_not_parsed_as_mathtext(findings):
    bad = r"Save $\notacommand$ today"
    with pytest.raises(ValueError):  # what an unescaped name does to a chart
        figure = Figure()
        figure.subplots().set_title(bad)
        rp.figure_png(figure)
    tests = findings.tests.assign(name=bad)
    for figure in (charts.distribution_chart(tests, findings.spreads),
                   charts.underperformer_chart(tests, findings.baselines)):
        rp.figure_png(figure)
        labels = [t.get_text() for ax in figure.axes for t in [*ax.texts, *ax.get_yticklabels()]]
        assert any(r"Save \$\notacommand\$ today" in label for label in labels)


def test_hostile_current_copy_stays_text_in_the_variations_table(findings):
    message = findings.messages[findings.messages["channel"] == "email"].iloc[0]
    current = cm.current_copy(message.to_dict())
    assert current.subject.startswith(HOSTILE_SUBJECT) and current.preheader == HOSTILE_PREHEADER
    scores = _scores(int(message["action_id"]), ["current", "A"])
    ranked = cm.rank_variations(scores, [current])
    section = [t for _, t in tables.variations_sections(findings, ranked, scores, [current])][0]
    assert_inert(section, HOSTILE_SUBJECT, HOSTILE_PREHEADER)


HOSTILE_MAVERA = ("# A heading from Mave\n\n<script>alert('mave')</script> **Fine bold**\n\n"
                  "- [click me](javascript:alert(6)) ![pixel](javascript:alert(7))\n"
                  "- <img src=x onerror=alert(8)> <a href=\"javascript:alert(9)\">link</a>\n\n"
                  "Subtitle\n---\n")


def _scores(action_id: int, variations: list[str],
            reason: str = "<script>alert('reason')</script> $x$",
            persona: str = "<b>Eve</b> $y$") -> pd.DataFrame:
    """Three personas' scores of each of `variations` of one message (hostile names and reasons)."""
    rows = []
    for variation in variations:
        for n in range(3):
            rows.append({"action_id": action_id, "variation_id": variation, "channel": "email",
                         "persona_id": f"p{n}", "persona_name": f"{persona} {n}", "score": 5 + n,
                         "would_open": 0.5, "would_click": 0.2, "reason": reason,
                         "method": "responses"})
    return pd.DataFrame(rows)


def test_hostile_mavera_answers_stay_text(findings):
    sources = [{"title": "<script>alert('title')</script>", "url": "javascript:alert(10)"},
               {"title": "[x](javascript:alert(11))", "url": "https://example.com/a(b)"}]
    strategy = cm.Strategy(HOSTILE_MAVERA, ["<script>alert('point')</script>"], sources,
                           "thread_<b>1</b>", 48)
    soup = assert_inert(html_of_markdown(narrative.strategy_markdown(strategy)),
                        "<script>alert('mave')</script>", "[click me](javascript:alert(6))",
                        "<script>alert('title')</script>", "thread_<b>1</b>")
    assert soup.find_all(["h1", "h2", "h3", "h4", "h5", "h6"]) == []  # Mave's headings join no contents
    assert [a["href"] for a in soup.find_all("a")] == ["https://example.com/a%28b%29"]
    action_id = int(findings.messages["action_id"].iloc[0])
    hostile = cm.Variation(action_id, "A", "email", "<img src=x onerror=alert(12)>",
                           "javascript:alert(13)", ["**bold** $z$"], "app")
    scores = _scores(action_id, ["A", "current"])
    ranked = cm.rank_variations(scores, [hostile])
    sections = tables.variations_sections(findings, ranked, scores, [hostile])
    assert_inert(sections[0][1], "<img src=x onerror=alert(12)>", "javascript:alert(13)",
                 "<b>Eve</b> $y$ 0", "<script>alert('reason')</script> $x$")
    plan = cm.ab_test_plan(findings, ranked)
    card = narrative.summary(findings, strategy, ranked, plan)
    assert_inert(card, "variation A", HOSTILE_NAME)


# ---- A/B test sizes ---------------------------------------------------------------------------


def test_sends_per_variant_is_the_two_proportion_z_test_size():
    h = 2 * math.asin(math.sqrt(0.12)) - 2 * math.asin(math.sqrt(0.10))
    # Each arm's transformed rate has variance 1/n, so their difference has 2/n.
    expected = 2 * ((norm.ppf(0.975) + norm.ppf(0.8)) / h) ** 2
    assert 3800 < expected < 3900  # the textbook figure for 10% vs 12% is about 3,840 per group
    assert cm.sends_per_variant(0.10, 0.12) == math.ceil(expected)
    assert cm.sends_per_variant(0.10, 0.10) is None and cm.sends_per_variant(0.0, 0.1) is None
    assert cm.sends_per_variant(0.10, 0.12, power=0.9) > cm.sends_per_variant(0.10, 0.12)


def test_ab_plan_aims_half_way_to_the_typical_message_at_the_message_s_own_pace(findings):
    empty = cm.rank_variations(_scores(0, []))
    plan = cm.ab_test_plan(findings, empty)
    assert list(plan["action_id"]) == list(findings.messages["action_id"])
    for row in plan.itertuples(index=False):
        flag = findings.flagged[(findings.flagged["action_id"] == row.action_id)
                                & (findings.flagged["metric"] == row.metric)].iloc[0]
        assert row.current_rate == pytest.approx(flag["shrunk_rate"])
        assert row.target_rate == pytest.approx((flag["shrunk_rate"] + flag["baseline"]) / 2)
        assert row.per_variant == cm.sends_per_variant(row.current_rate, row.target_rate)
        assert row.days == math.ceil(2 * row.per_variant / (flag["trials"] / 30))
    frame = tables.ab_frame(plan)
    assert frame["Deliveries per variant"].notna().all() and frame["Variation"].eq("new copy").all()


# ---- notices, parameters, changes -------------------------------------------------------------


def test_window_longer_than_the_history_gets_a_notice(hostile_server, hostile_data, tmp_path):
    assert narrative.history_notice(hostile_data) == ""
    connection = Connection(settings_for(hostile_server, tmp_path / "data"), "live", "sandbox-test",
                            sandbox_url=hostile_server.url)
    long = cm.load_campaign_data(connection, days=200, end=WINDOW_END)  # the history holds 120
    soup = BeautifulSoup(narrative.history_notice(long), "html.parser")
    box = soup.find(class_="cio-notice-warning")
    assert box is not None
    assert "first sends in it are on 2025-12-02" in box.get_text()
    assert "its first 80 days have no data" in box.get_text() and "cover the 120 days" in box.get_text()
    assert "cio-notice" in narrative.banner(long)


def test_parameters_show_plainly_with_what_they_mean():
    frame = tables.parameters_frame({**PARAMETERS.defaults, "campaign_ids": [12345, 7]})
    values = dict(zip(frame["Parameter"], frame["Value"], strict=True))
    assert values == {"days": "30", "start": "not set", "end": "not set", "channel": "all",
                      "campaign_ids": "12345, 7", "max_underperformers": "3",
                      "variations_per_message": "3", "personas": "none", "validation": "responses",
                      "max_credits": "1,500", "refresh": "no"}
    assert frame["What it means"].str.len().gt(5).all()


def test_parameters_are_read_from_the_notebook_as_they_stand_and_checked():
    namespace = {**PARAMETERS.defaults, "max_underperformers": 1, "run": object()}
    assert cm.parameters_in(namespace) == {**PARAMETERS.defaults, "max_underperformers": 1}
    with pytest.raises(InvalidParameter, match="days"):
        cm.parameters_in({**PARAMETERS.defaults, "days": "abc"})


def test_first_run_says_there_is_nothing_to_compare():
    assert "first run of this job" in narrative.what_changed({"changes": {"first_run": True}})
    assert "first run of this job" in narrative.what_changed({})
