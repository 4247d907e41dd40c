"""Job 2's report text: banner, top block, the sentences after each chart and table, persona cards,
what to do next and the glossary. Every sentence is computed from the run's data (most from its
results.json, so the report says what automation reads).

Attribute names, category levels, cluster and persona names and persona answers come from
Customer.io and Mavera: they reach Markdown only through `markup.md` / `md_block` and HTML only
through `report_parts`, so they show as the text they are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from cio_mavera.cache import pulled_at
from cio_mavera.changes import changes_markdown
from cio_mavera.connect import Connection
from cio_mavera.jobs import report_parts as rp
from cio_mavera.jobs.audiences.attribute_types import Schema
from cio_mavera.jobs.audiences.clustering import ClusterResult, KMeansSelection
from cio_mavera.jobs.audiences.data import CLUSTER_ATTRIBUTE, PERSONA_ATTRIBUTE
from cio_mavera.jobs.audiences.profiles import ClusterProfiles
from cio_mavera.jobs.audiences.tables import (
    SMALL_CLUSTER_SHARE,
    attribute_label,
    trait_label,
    trait_parts,
    trait_value,
)
from cio_mavera.jobs.audiences.writeback import WriteBackReport
from cio_mavera.markup import html_text, md

PERSONA_COST = 300  # credits per new persona (Mavera's price; the budget's worst case)
STALE_AFTER = pd.Timedelta(days=7)  # cached attributes older than this get a notice
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_PREVIEW = ("would create", "would update", "exists")


# --- banner and top block --------------------------------------------------------------------


def banner(conn: Connection, customers: pd.DataFrame, segment_id: int | None = None) -> rp.ReportHtml:
    """The sandbox/live banner with the workspace, audience, size and how fresh the data is."""
    when = pulled_at(customers)
    fresh = (f"pulled {when:%Y-%m-%d %H:%M} UTC ({rp.age_text(when)} ago)" if when is not None
             else "pull time unknown")
    source = "from the local cache" if customers.attrs.get("from_cache") else "just now"
    return rp.mode_banner(conn.mode, {
        "Workspace": conn.workspace,
        "Audience": "everyone" if segment_id is None else f"segment {segment_id}",
        "People": rp.format_count(len(customers)), "Data": f"{fresh}, read {source}"},
        note=("Synthetic customers and simulated Mavera personas from the local stand-in: no real "
              "people or research. Set the Customer.io and Mavera keys to run on live data.")
        if conn.mode == "sandbox" else None)


def summary(results: Mapping[str, Any]) -> rp.ReportHtml:
    """The top block: the numbers that matter with their uncertainty, then what to do next."""
    return rp.summary_block(key_numbers(results), decisions(results))


def key_numbers(results: Mapping[str, Any]) -> list[rp.KeyNumber]:
    """Three to five numbers: audiences found, the largest, the sharpest trait, how surely people
    are placed, the personas."""
    clusters, params = results["clusters"], results.get("parameters") or {}
    k = results["k"]
    selection = results.get("model_selection") or {}
    chosen = [row for row in selection.get("table") or [] if row.get("chosen")]
    ari = chosen[0].get("stability_ari") if chosen else None
    span = f"k from {params.get('k_min', 2)} to {params.get('k_max', 8)} considered"
    numbers = [rp.KeyNumber(
        "Audience clusters", str(k) if k > 1 else "1 (no clear structure)",
        (f"stable on resamples: ARI {ari:.2f} (0.80 needed)" if ari is not None and pd.notna(ari)
         else "no resampling check (no split passed the first checks)" if k == 1
         else "stability not measured"),
        f"structure {results.get('structure')}; {span}")]
    largest = max(clusters, key=lambda c: c["size"])
    if k > 1:
        numbers.append(rp.KeyNumber(
            "Largest audience", rp.format_percent(largest["share"]),
            f"{_ci(*largest['share_interval'])} of "
            f"{rp.format_count(results['audience']['customers'])} customers", largest["name"]))
        sharpest = _sharpest_trait(clusters)
        if sharpest is not None:
            cluster, trait = sharpest
            value, interval = _split(trait)
            numbers.append(rp.KeyNumber(
                f"{cluster['name']}: {trait_label(trait)}", value, interval,
                f"against {trait_value(trait, 'overall')} of all customers"))
    sure = results.get("placed_confidently")
    if sure:
        numbers.append(rp.KeyNumber(
            "Placed with ≥ 90% probability", rp.format_percent(sure["share"]),
            f"{_ci(*sure['interval'])} of customers",
            f"the model's own probabilities; none dropped, though "
            f"{rp.format_percent(results['audience'].get('with_missing_attributes'), 0)} lack some "
            "attributes"))
    numbers.append(_personas_number(results))
    return numbers[:5]


def _ci(low: float | None, high: float | None) -> str:
    """ "95% CI 29.6–32.2%" for a share's interval."""
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return "no interval (too few customers)"
    return f"95% CI {100 * low:,.1f}–{100 * high:,.1f}%"


def _split(trait: Mapping[str, Any]) -> tuple[str, str]:
    """A trait's value in the cluster, and its interval as a separate line."""
    value, interval = trait_parts(trait, "cluster")
    return value, f"95% CI {interval}" if interval else "no interval (too few customers)"


def _sharpest_trait(clusters: Sequence[Mapping[str, Any]]) -> tuple[Mapping, Mapping] | None:
    """The share-type trait (a category level or a yes) that sets a cluster apart the most."""
    shares = [(c, t) for c in clusters for t in c.get("traits") or []
              if t["kind"] in ("category", "boolean")]
    candidates = shares or [(c, t) for c in clusters for t in c.get("traits") or []]
    return max(candidates, key=lambda ct: abs(ct[1]["smd"]), default=None)


def _personas_number(results: Mapping[str, Any]) -> rp.KeyNumber:
    statuses = pd.Series([c["persona_status"] for c in results["clusters"]]).value_counts()
    if statuses.index.isin(_PREVIEW).any():
        value, how = f"{len(results['clusters'])} previewed", "none created (create_personas=false)"
    else:
        created = int(statuses.get("created", 0))
        value = f"{created} created" if created else \
            f"{int(statuses.get('unchanged', 0) + statuses.get('updated', 0))} reused"
        how = ", ".join(f"{int(statuses.get(s, 0))} {word}" for s, word in
                        (("unchanged", "reused"), ("updated", "updated"), ("skipped", "skipped"))
                        if statuses.get(s, 0) and (s != "unchanged" or created)) or "all new"
    credits = results.get("credits") or {}
    return rp.KeyNumber("Mavera personas", value, f"exact count; {how}",
                        f"{rp.format_count(results.get('credits_spent', 0))} of "
                        f"{rp.format_count(credits.get('max_credits'))} credits spent")


def decisions(results: Mapping[str, Any]) -> list[str]:
    """What to do next, concretely, in the order it matters (plain text, escaped by the block)."""
    clusters, params = results["clusters"], results.get("parameters") or {}
    statuses = {c["persona_status"] for c in clusters}
    steps = []
    if results["k"] == 1:
        steps.append("Treat these customers as one audience: the data shows no clear split. Try a "
                     "segment (-p segment_id N) or more attributes before building per-audience "
                     "messaging.")
    else:
        names = ", ".join(f"{c['name']} ({rp.format_percent(c['share'], 0)})" for c in clusters)
        steps.append(f"Review the {len(clusters)} persona cards below with the campaign team: {names}. "
                     "Clusters that match no audience you target today are the ones to act on.")
    if statuses & set(_PREVIEW):
        cost = PERSONA_COST * sum(c["persona_status"] == "would create" for c in clusters)
        steps.append(f"Create the personas: run again with -p create_personas true (up to "
                     f"{rp.format_count(cost)} credits; existing ones are reused for free).")
    skipped = sum(c["persona_status"] == "skipped" for c in clusters)
    if skipped:
        need = int(params.get("max_credits", 0)) + PERSONA_COST * skipped
        steps.append(f"{skipped} persona(s) did not fit the budget: run again with "
                     f"-p max_credits {need}.")
    ids = [c["persona_id"] for c in clusters if c.get("persona_id") and c["persona_status"] not in _PREVIEW]
    if ids:
        steps.append("Score new campaign copy against these personas: cio-mavera run "
                     f"campaign-messaging -p personas '{json.dumps(ids)}'.")
    write_back = results.get("write_back")
    if results["k"] > 1 and (write_back is None or write_back.get("dry_run")):
        steps.append(f"Target the clusters in Customer.io: run again with -p write_back true -p "
                     f"write_back_dry_run false, then build segments on {CLUSTER_ATTRIBUTE}.")
    small = [c for c in clusters if c["share"] < SMALL_CLUSTER_SHARE and results["k"] > 1]
    if small:
        steps.append(f"Check {small[0]['name']} ({rp.format_percent(small[0]['share'])} of "
                     "customers) before messaging it apart: so small a cluster can come from a few "
                     "unusual attribute values.")
    return steps[:5]


def notices(results: Mapping[str, Any], now: Any = None) -> list[rp.ReportHtml]:
    """Boxed notes the reader must see before trusting what follows (`now`: when the report is read; default now)."""
    out = []
    if results["k"] == 1:
        out.append(rp.notice("No clear structure: no number of clusters passed the checks, so the "
                             "customers are treated as one audience and get one persona.",
                             kind="info"))
    elif results.get("structure") == "moderate":
        out.append(rp.notice("The structure is moderate: the clusters are supported and distinct, "
                             "but fits on resamples move some customers between them. Treat the "
                             "borders as soft.", kind="info"))
    skipped = [c["name"] for c in results["clusters"] if c["persona_status"] == "skipped"]
    if skipped:
        out.append(rp.notice(f"{len(skipped)} persona(s) were not created because the credit "
                             f"budget ran out: {', '.join(skipped)}. Their cards have no answer."))
    pulled = results["audience"].get("pulled_at")
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    age = now - pd.Timestamp(pulled) if pulled else None
    if age is not None and age > STALE_AFTER:
        out.append(rp.notice(f"The customer data was pulled {age.days:,} days ago and read from "
                             "the cache: run again with -p refresh true for today's attributes."))
    if results["audience"]["customers"] < 500:
        out.append(rp.notice(f"Only {results['audience']['customers']:,} customers: clusters and "
                             "their intervals are rough at this size."))
    return out


def what_changed(results: Mapping[str, Any]) -> str:
    """Markdown: what is new since the previous run of the same job, parameters and workspace."""
    return changes_markdown(results.get("changes") or {"first_run": True})


# --- attributes and personal data ------------------------------------------------------------


def schema_sentence(schema: Schema) -> str:
    """How many attributes were used, by kind, and how many were dropped as unusable."""
    frame = schema.to_frame()
    typed = frame[frame["kind"] != "excluded"]
    used = typed[typed["kept"]]
    parts = ", ".join(f"{n} {k}" for k, n in used["kind"].value_counts().items())
    dropped = typed[~typed["kept"]]
    were = "was" if len(dropped) == 1 else "were"
    tail = (f" {len(dropped)} {were} left out as unusable for clustering "
            f"({', '.join(md(c) for c in sorted(dropped['column']))})." if len(dropped) else "")
    return (f"Customer.io returns every attribute as text. Of {len(typed)} non-personal attributes, "
            f"**{len(used)} are used** ({parts}); timestamps and dates become ages in days as of "
            f"the pull.{tail}")


def pii_sentence(pii_dropped: Mapping[str, str]) -> str:
    """What the PII guard removed and what that guarantees."""
    if not pii_dropped:
        return ("No attribute looked like personal data by name or by value. Every payload sent to "
                "Mavera is still scanned for emails and phone numbers before it leaves.")
    return (f"**{len(pii_dropped)} attributes were excluded as personal data** (by name or by "
            "the pattern of their values) before anything was clustered: they never reach the "
            "clusters, the profiles or Mavera. Every payload sent to Mavera is scanned again for "
            "emails and phone numbers before it leaves.")


# --- choosing k ------------------------------------------------------------------------------


def selection_sentence(result: ClusterResult, sample_size: int) -> str:
    """Why this k (or why no split at all), and how clear the structure is."""
    sel = result.selection
    if sel is None:
        return f"k = {result.k} was given, not chosen."
    if isinstance(sel, KMeansSelection):
        row = sel.table[sel.table["k"] == sel.k].iloc[0]
        trust = ("The clusters are well separated and reproducible." if row["silhouette"] >= 0.25
                 and sel.stable else "The structure is weak: treat the clusters as a rough split.")
        return (f"**k = {sel.k}** gives the best separation (mean silhouette {row['silhouette']:.2f}) "
                f"among the candidates whose clusters come out the same on resamples of up to "
                f"{sample_size:,} customers (stability ARI {row['stability_ari']:.2f}). {trust}")
    if sel.k == 1:
        return (f"**No clear structure.** {md(sel.reason)} Personas built from this data describe "
                "the whole audience; more attributes, or a segment, may reveal groups this data "
                "does not.")
    verdict = {"clear": "**The structure is clear**: the clusters come out the same on resamples.",
               "moderate": "**The structure is moderate**: the clusters are supported and distinct, "
                           "but resamples move some customers between them; treat borders as soft."}
    reason = str(sel.reason).removeprefix(f"k={sel.k}: ")
    return f"**k = {sel.k}.** {md(reason)} {verdict[sel.clarity]}"


def inputs_sentence(result: ClusterResult, typed: pd.DataFrame) -> str:
    """What the clustering used and left out, and how people with missing attributes were handled."""
    gaps = typed.isna().any(axis=1).mean()
    used = len(result.feature_names) if result.method == "mixture" else typed.shape[1]
    how = ("each person is assigned by the attributes they have (missing ones are left out of "
           "their likelihood, not filled in)" if result.method == "mixture" else
           "missing values are filled with the median and flagged")
    return (f"The model used **{used} attributes** (numbers as rank scores, so outliers and heavy "
            f"tails do not stretch the scale). **{gaps:.0%} of customers lack at least one "
            f"attribute**; none is dropped: {how}." + _left_out(result.dropped))


def _left_out(dropped: Mapping[str, str]) -> str:
    """The attributes clustering left out, grouped by why."""
    twins = [f"{md(attribute_label(c))} (of "
             f"{md(why.split('near-duplicate of ')[1].split(' (')[0])})"
             for c, why in dropped.items() if "near-duplicate of " in why]
    gaps = [md(c.removeprefix("missing: ")) for c, why in dropped.items()
            if c.startswith("missing: ") and "unrelated" in why]
    noise = [md(attribute_label(c)) for c, why in dropped.items()
             if "unrelated" in why and not c.startswith("missing: ")]
    other = [f"{md(attribute_label(c))} ({md(why)})" for c, why in dropped.items()
             if "unrelated" not in why and "near-duplicate of " not in why]
    parts = []
    if twins:
        parts.append("near-duplicates, used once: " + ", ".join(twins))
    if noise:
        parts.append("unrelated to every other attribute, so unable to tell audiences apart: "
                     + ", ".join(noise))
    if gaps:
        parts.append("whether these groups are missing says nothing about the rest (missing at "
                     "random), so it is not a trait: " + "; ".join(gaps))
    if other:
        parts.append(", ".join(other))
    return (" Left out: " + ". ".join(parts) + ".") if parts else ""


# --- clusters --------------------------------------------------------------------------------


def sizes_sentence(results: Mapping[str, Any]) -> str:
    """The largest and smallest clusters, with the intervals the chart and table show."""
    clusters = sorted(results["clusters"], key=lambda c: c["size"], reverse=True)
    if len(clusters) == 1:
        return f"One audience of {clusters[0]['size']:,} customers: the data backs no split."
    big, small = clusters[0], clusters[-1]

    def share(c: Mapping[str, Any]) -> str:
        return rp.format_percent_interval(c["share"], *c["share_interval"])
    sure = results.get("placed_confidently")
    certainty = (f" The model places {rp.format_percent_interval(sure['share'], *sure['interval'])} "
                 "of customers with at least 90% probability; the rest sit between clusters."
                 if sure else "")
    return (f"{len(clusters)} clusters: the largest, **{md(big['name'])}**, holds {big['size']:,} "
            f"customers ({share(big)}); the smallest, **{md(small['name'])}**, {small['size']:,} "
            f"({share(small)}). Intervals are 95%.{certainty}")


def projection_sentence(result: ClusterResult) -> str:
    """How to read the PCA projection."""
    return (f"Each dot is a customer placed by the two directions that vary most across the "
            f"{len(result.feature_names)} scaled features; well separated colours mean the "
            "clusters differ on many attributes at once, overlap means they differ on few.")


def heatmap_sentence(profiles: ClusterProfiles, names: Mapping[int, str]) -> str:
    """The single strongest trait of each cluster."""
    if len(profiles.clusters) == 1:
        return ("With one audience there is nothing to set apart; its typical values are on the "
                "persona card below.")
    parts = []
    for p in profiles.clusters:
        if len(p.top):
            r = p.top.iloc[0]
            label = attribute_label(str(r["column"]))
            what = f"{label}={r['level']}" if r["kind"] == "category" else label
            parts.append(f"**{md(names[p.cluster])}** by {md(what)} ({r['smd']:+.1f} SD)")
    return ("Cells show how far each cluster sits from all customers, in standard deviations; the "
            "table below gives the same traits as shares and medians with their 95% intervals. "
            "Strongest trait per cluster: " + "; ".join(parts) + ".")


# --- personas --------------------------------------------------------------------------------


def cost_markdown(plan: pd.DataFrame, create: bool, max_credits: int) -> str:
    """The worst-case persona cost, shown before anything is created."""
    counts = plan["status"].value_counts()
    new, changed, same = (int(counts.get(s, 0)) for s in ("new", "changed", "unchanged"))
    total = int(plan["cost"].sum())
    action = ("will be created now" if create else
              "would be created (create_personas=false: this run only previews)")
    verdict = ("fits" if total <= max_credits else
               "does **not** fit; personas beyond the budget are skipped, not half-made")
    return (f"{new} persona(s) {action}, {changed} existing one(s) updated and {same} already "
            f"up to date. Creating costs {PERSONA_COST} credits each: **{total} credits** worst "
            f"case, which {verdict} the budget of max_credits={max_credits}.")


def persona_cards(results: Mapping[str, Any]) -> list[str]:
    """One Markdown card per cluster: name, size, traits with intervals, persona, its answer."""
    return [_card(c) for c in results["clusters"]]


def _card(c: Mapping[str, Any]) -> str:
    answer = c.get("what_would_make_me_engage")
    if answer:
        quoted = _quoted(answer)
    elif c["persona_status"] in _PREVIEW:
        quoted = "_Not asked: this run only previews personas (create_personas=false)._"
    elif c["persona_status"] == "skipped":
        quoted = "_Not asked: the persona was skipped (credit budget)._"
    else:
        quoted = "_Not asked: the credit budget ran out before this question._"
    ident = f"id {md(c['persona_id'])}" if c.get("persona_id") else "not created"
    traits = "\n".join(f"- {md(trait_label(t))}: {trait_value(t, 'cluster')} against "
                       f"{trait_value(t, 'overall')} of all customers ({t['smd']:+.1f} SD)"
                       for t in c.get("traits") or []) or "- nothing stands out"
    share = rp.format_percent_interval(c["share"], *c["share_interval"])
    return (f"#### {c['number']}. {md(c['name'])}\n\n"
            f"**{c['size']:,} customers, {share} of the audience** · persona "
            f"{md(c['persona_name'])}, {ident} ({md(c['persona_status'])})\n\n"
            f"**What sets them apart** (against all customers, 95% intervals):\n\n{traits}\n\n"
            f"**What would make me engage?**\n\n{quoted}\n")


def _quoted(answer: str) -> str:
    """A persona's answer as a Markdown quote: its lines and bullets kept, everything in them text
    (an answer repeats the persona's name, and so the attribute values it was built from)."""
    lines = []
    for line in str(answer).splitlines():
        bullet = _BULLET.match(line)
        if bullet:
            lines.append(f"> - {md(line[bullet.end():])}")
        else:
            lines.append(f"> {md(line)}" if line.strip() else ">")
    return "\n".join(lines)


_STATUS_WORDS = {"unchanged": "reused unchanged", "would create": "previewed, not created",
                 "would update": "previewed, update pending", "exists": "already existing",
                 "skipped": "skipped by the budget"}


def credits_bought(personas: pd.DataFrame, answers: Mapping[str, str | None]) -> str:
    """What this run's credits went on, for the shared credits section."""
    counts = personas["status"].value_counts()
    return ("on " + ", ".join(f"{n} persona(s) {_STATUS_WORDS.get(k, k)}" for k, n in counts.items())
            + f" and {sum(1 for a in answers.values() if a)} engagement answer(s)")


# --- write-back ------------------------------------------------------------------------------


def write_back_markdown(report: WriteBackReport | None) -> str:
    """What the Customer.io write-back did or would do."""
    if report is None:
        return ("Write-back is off (`write_back=false`). Set `write_back=true` to preview writing "
                f"`{CLUSTER_ATTRIBUTE}` and `{PERSONA_ATTRIBUTE}` on each person (a dry run by "
                "default), then `write_back_dry_run=false` to send it.")
    if report.dry_run:
        return (f"**Dry run, nothing sent.** A real run would set `{CLUSTER_ATTRIBUTE}` and "
                f"`{PERSONA_ATTRIBUTE}` on {report.people:,} people with {report.operations:,} "
                f"Track v2 identify operations in {report.requests:,} batch request(s). "
                "Set `write_back_dry_run=false` to send." + (" Sample operation:" if report.sample else ""))
    head = (f"Wrote `{CLUSTER_ATTRIBUTE}` and `{PERSONA_ATTRIBUTE}` for **{report.accepted:,} of "
            f"{report.people:,} people** in {report.requests:,} request(s).")
    if not report.failed_first_attempt:
        return head + " Customer.io accepted every item."
    status = (f"{len(report.failures)} still failed after that retry (listed in results.json)"
              if report.failures else "all of them were accepted on the retry")
    return (f"{head} {report.failed_first_attempt} item(s) failed on the first attempt and were "
            f"retried once; {status}.")


def write_back_sample(report: WriteBackReport | None) -> rp.ReportHtml:
    """A dry run's first operation as JSON, shown as text (it holds a persona name)."""
    if report is None or not report.dry_run or not report.sample:
        return rp.ReportHtml("")
    return rp.ReportHtml(f"<pre>{html_text(json.dumps(report.sample[:1], indent=2))}</pre>")


# --- what to do next, glossary ---------------------------------------------------------------


def next_steps(results: Mapping[str, Any]) -> str:
    """Markdown: the decisions of the top block, then how to act on each cluster."""
    steps = [f"{n}. {md(step)}" for n, step in enumerate(decisions(results), start=1)]
    if results["k"] > 1:
        steps += ["", "Per audience, the trait to lead with (its strongest difference from everyone):", ""]
        for c in results["clusters"]:
            top = (c.get("traits") or [None])[0]
            lead = (f"{md(trait_label(top))}: {trait_value(top, 'cluster')} against "
                    f"{trait_value(top, 'overall')}" if top else "nothing stands out")
            steps.append(f"- **{md(c['name'])}** ({c['size']:,} customers): {lead}")
    return "\n".join(steps)


def glossary() -> rp.ReportHtml:
    """The terms this report uses."""
    return rp.glossary("ARI", extra={
        "95% interval (CI)": "The range a share's true value plausibly lies in, given how many "
                             "customers it is measured on (Wilson's interval, which stays sensible "
                             "for small clusters and shares near 0% or 100%).",
        "Mixture model": "The clustering method: each cluster is described by a typical range for "
                         "every number and a mix for every category, and each customer is placed "
                         "in the cluster that describes their attributes best, using only the "
                         "attributes they have.",
        "BIC": "Bayesian information criterion: how well a model fits, with a penalty for every "
               "extra parameter. Lower is better; a gain of more than 10 is strong evidence for "
               "the extra cluster.",
        "Placed with ≥ 90% probability": "Customers the model puts in their cluster with at least "
                                         "90% probability. The rest sit between two clusters; "
                                         "messages to them should suit either.",
        "Standardized difference (SD)": "How far a cluster's average lies from everyone's, in "
                                        "standard deviations of the attribute: 0.2 is small, 0.5 "
                                        "medium, 0.8 and more large.",
        "Median interval": "The 95% range of a median from the order statistics of the data, "
                           "with no assumption about the shape of the distribution.",
        "Persona": "A Mavera custom persona built from one cluster's aggregate profile (never an "
                   "individual's data), which answers questions as a typical member would.",
    })
