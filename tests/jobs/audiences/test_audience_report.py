"""Job 2's report pieces: intervals, one name per cluster, plain parameters, and hostile names and
answers kept as text in the top block, cards, sentences, tables and charts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bs4 import BeautifulSoup
from nbconvert.filters.markdown_mistune import markdown2html_mistune
from statsmodels.stats.proportion import proportion_confint

from cio_mavera.jobs import report_parts as rp
from cio_mavera.jobs.audiences import charts, narrative, tables
from cio_mavera.jobs.audiences.analysis import cluster_names
from cio_mavera.jobs.audiences.profiles import profile_clusters
from cio_mavera.jobs.audiences.uncertainty import (
    median_interval,
    placed_confidently,
    share_interval,
    trait_table,
)

HOSTILE = "Pro <script>alert(1)</script> [x](javascript:alert(2)) **bold** $x^2$ cost $5"


def test_share_interval_is_wilson_and_median_interval_covers_the_median_95_percent_of_the_time():
    assert share_interval(30, 100) == pytest.approx(proportion_confint(30, 100, 0.05, "wilson"))
    assert all(np.isnan(share_interval(0, 0)))
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(1000):
        low, high = median_interval(rng.exponential(1.0, size=40))
        hits += low <= np.log(2) <= high  # the exponential's median
    assert 0.93 <= hits / 1000 <= 0.99
    assert all(np.isnan(median_interval([1, 2, 3, 4, 5])))  # too few values to reach 95%


def _typed(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    labels = pd.Series(rng.integers(0, 2, size=n), index=[f"c{i}" for i in range(n)])
    plan = np.where(labels == 0, rng.choice(["a", "b"], n, p=[0.9, 0.1]),
                    rng.choice(["a", HOSTILE], n, p=[0.1, 0.9]))
    typed = pd.DataFrame({"plan": pd.Categorical(plan),
                          "seats": np.where(labels == 0, rng.poisson(3, n), rng.poisson(40, n)).astype(float),
                          "trial_user": (rng.random(n) < np.where(labels == 0, 0.8, 0.1)).astype(float)},
                         index=labels.index)
    return typed, labels


def test_traits_carry_intervals_around_their_values_for_cluster_and_everyone():
    typed, labels = _typed()
    profiles = profile_clusters(typed, labels)
    traits = trait_table(typed, labels, profiles)
    assert set(traits["kind"]) == {"category", "number", "boolean"}
    assert (traits["cluster_low"] <= traits["cluster_value"]).all()
    assert (traits["cluster_value"] <= traits["cluster_high"]).all()
    assert (traits["overall_low"] <= traits["overall_value"]).all()
    assert (traits["overall_value"] <= traits["overall_high"]).all()
    sure = placed_confidently(pd.Series(np.r_[np.full(300, 0.95), np.full(300, 0.6)], index=labels.index),
                              labels)
    assert sure.loc[sure["cluster"] == -1, "share"].item() == pytest.approx(0.5)
    assert placed_confidently(None, labels) is None


def test_cluster_names_are_unique_and_name_the_persona_and_the_chart_alike():
    typed, labels = _typed()
    names = cluster_names(profile_clusters(typed, labels))
    assert len(set(names.values())) == 2 and any(HOSTILE.split()[0] in n for n in names.values())


def _results(name: str = HOSTILE, answer: str = f"- I like {HOSTILE}\n- <b>second</b>") -> dict:
    trait = {"column": "plan", "level": HOSTILE, "kind": "category", "cluster_value": 0.9,
             "cluster_low": 0.85, "cluster_high": 0.93, "overall_value": 0.45, "overall_low": 0.41,
             "overall_high": 0.49, "smd": 0.9}
    cluster = {"cluster": 0, "number": 1, "name": name, "size": 300, "share": 0.5,
               "share_interval": [0.46, 0.54], "placed_confidently": {"share": 0.9, "interval": [0.86, 0.93]},
               "traits": [trait], "persona_name": f"cio-mavera: {name}", "persona_id": "p_<1>",
               "persona_status": "created", "what_would_make_me_engage": answer}
    other = {**cluster, "cluster": 1, "number": 2, "name": "Low seats", "persona_name": "cio-mavera: Low seats",
             "persona_status": "skipped", "persona_id": None, "what_would_make_me_engage": None,
             "size": 20, "share": 0.03, "share_interval": [0.02, 0.05]}
    return {"k": 2, "structure": "moderate", "clusters": [cluster, other],
            "audience": {"customers": 600, "with_missing_attributes": 0.4},
            "placed_confidently": {"share": 0.9, "interval": [0.87, 0.92]},
            "model_selection": {"table": [{"k": 2, "chosen": True, "stability_ari": 0.91}]},
            "parameters": {"k_min": 2, "k_max": 8, "max_credits": 600}, "credits_spent": 300,
            "credits": {"max_credits": 600}, "write_back": None, "changes": {"first_run": True}}


def _assert_inert(html: str) -> None:
    soup = BeautifulSoup(html, "html.parser")
    assert soup.find_all(["script", "img", "b"]) == []
    assert not [a for a in soup.find_all("a") if a.get("href", "").strip().lower().startswith("javascript")]
    assert not [t for t in soup.find_all(["strong", "em"]) if t.get_text(strip=True) == "bold"]


def test_top_block_cards_and_next_steps_keep_hostile_names_and_answers_as_text():
    results = _results()
    block = narrative.summary(results)
    _assert_inert(block)
    assert 3 <= block.count("cio-key-label") <= 5 and "cio-key-uncertainty" in block
    assert "95% CI 46.0–54.0%" in block  # the interval beside the headline number
    cards = markdown2html_mistune("\n\n".join(narrative.persona_cards(results)))
    _assert_inert(cards)
    text = BeautifulSoup(cards, "html.parser").get_text(" ")
    assert HOSTILE in text and "<b>second</b>" in text  # still readable
    assert cards.count("<li>") >= 2  # the answer's bullets are kept as a list
    for markdown in (narrative.next_steps(results), narrative.sizes_sentence(results)):
        _assert_inert(markdown2html_mistune(markdown))
    for box in narrative.notices(results):
        _assert_inert(box)
    assert any("moderate" in box for box in narrative.notices(results))
    assert not any("days ago" in box for box in narrative.notices(results))
    read_at = pd.Timestamp("2026-03-31T12:00:00+00:00")
    for days, stale in ((6, False), (8, True)):
        pulled = {**results, "audience": {**results["audience"],
                                          "pulled_at": (read_at - pd.Timedelta(days=days)).isoformat()}}
        assert any("refresh true" in box for box in narrative.notices(pulled, now=read_at)) is stale
    decisions = narrative.decisions(results)
    assert any("max_credits 900" in d for d in decisions)  # one skipped persona, 300 more
    assert any("Low seats" in d and "3.0%" in d for d in decisions)  # a small cluster to check


def test_tables_escape_names_flag_small_clusters_and_show_parameters_plainly():
    results = _results()
    for html in (tables.clusters(results), tables.traits(results)):
        _assert_inert(html)
        assert HOSTILE in BeautifulSoup(html, "html.parser").get_text()
    flagged = BeautifulSoup(tables.clusters(results), "html.parser").select(f"tr.{rp.FLAGGED_ROW_CLASS}")
    assert [row.find("td").get_text() for row in flagged] == ["2"]  # the 3% cluster
    shown = tables.parameters({"segment_id": None, "create_personas": True, "audience": "b2b",
                               "k_max": 8})
    cells = [td.get_text() for td in BeautifulSoup(shown, "html.parser").find_all("td")]
    assert cells[:3] == ["segment_id", "not set", "a Customer.io segment id, or null for everyone"]
    assert "yes" in cells and "b2b" in cells and "None" not in cells and "'b2b'" not in cells


def test_charts_show_hostile_names_without_mathtext_or_markup():
    typed, labels = _typed()
    profiles = profile_clusters(typed, labels)
    names = {0: HOSTILE, 1: "cost $5 and $"}
    figures = [charts.plot_cluster_sizes(labels, names), charts.plot_profile_heatmap(profiles, names=names),
               charts.plot_projection(typed[["seats", "trial_user"]].to_numpy(dtype=float), labels,
                                      names=names)]
    for figure in figures:
        assert rp.figure_png(figure)[:4] == b"\x89PNG"  # drawn: an unescaped $ would fail here
        shown = [t.get_text() for ax in figure.axes for t in ax.get_yticklabels() + ax.get_xticklabels()]
        shown += [t.get_text() for ax in figure.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        assert all("$" not in t.replace(r"\$", "") for t in shown), shown
