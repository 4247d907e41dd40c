"""Job 3 triggers: what is and is not a spike on synthetic logs built to break each assumption (steady
high campaigns, broadcast bursts, late-evening sends, weekly cycles), windows, minimum counts, churn
per audience, cooldown dedupe and budget skips, and the planted spike found with its campaign and
audience in the sandbox's realistic and clean streams at the notebook's default replay volume."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from conftest import END
from retention_logs import DAY, HOUR, T0, Log, steady
from scipy import stats

from cio_mavera.errors import BudgetExceeded, InvalidParameter
from cio_mavera.jobs.audiences import audience_clusters
from cio_mavera.jobs.context import RunContext
from cio_mavera.jobs.retention import enrichment
from cio_mavera.jobs.retention import triggers as rt
from cio_mavera.jobs.retention.pipeline import DEFAULT_EVENTS
from cio_mavera.jobs.retention.research import CooldownStore, research_prompt, research_triggers
from cio_mavera.mavera.models import MaveResult
from cio_mavera.pii import contains_pii
from cio_mavera.receiver.queues import QueuedEvent
from cio_mavera.receiver.worker import EventLog, read_event_log
from cio_mavera.sandbox.webhooks import generate_events
from cio_mavera.sandbox.workspace import World, customer_attribute_strings, generate_workspace

# --- windows and parameters -----------------------------------------------------------------------


def test_rolling_windows_step_aligned_and_cover_the_period():
    windows = rt.rolling_windows(T0 + 5 * HOUR, T0 + 50 * HOUR, 24, 6)
    assert (windows[:, 1] - windows[:, 0] == 24 * HOUR).all()
    assert (windows[:, 0] % (6 * HOUR) == 0).all() and (np.diff(windows[:, 0]) == 6 * HOUR).all()
    assert windows[0, 0] <= T0 + 5 * HOUR < windows[0, 1] and windows[0, 0] + 24 * HOUR - 6 * HOUR <= T0 + 5 * HOUR
    assert windows[-1, 0] <= T0 + 50 * HOUR < windows[-1, 0] + 6 * HOUR


def test_hard_bounces_are_bad_mailboxes_and_push_tokens_not_full_mailboxes():
    frame = pd.DataFrame({
        "object_type": ["email", "email", "email", "push", "email"],
        "metric": ["bounced", "bounced", "bounced", "bounced", "delivered"],
        "failure_message": ["550 5.1.1 The email account that you tried to reach does not exist",
                            "552 5.2.2 Mailbox full", "554 5.7.1 Message rejected as spam", None, None]})
    hard = rt.is_hard_bounce(frame["object_type"], frame["metric"], frame["failure_message"])
    assert hard.tolist() == [True, False, False, True, False]


@pytest.mark.parametrize("bad", [{"alpha": 0}, {"alpha": 1.5}, {"min_count": 0}])
def test_bad_parameters_are_rejected(bad):
    with pytest.raises(InvalidParameter):
        rt.find_triggers(steady(0).frame(), **bad)


# --- what is not a spike ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_constant_rates_raise_no_trigger(seed):
    result = rt.find_triggers(steady(seed).frame())
    assert result.triggers == [] and len(result.tests) > 0 and result.parameters["testable"] > 0


@pytest.mark.parametrize("seed", range(3))
def test_a_campaign_whose_audience_always_opts_out_five_times_more_is_not_a_spike(seed):
    # Assumption checked: sources differ. Campaign 6 opts out at 2% every day, the others at 0.4%.
    log = steady(seed, campaigns=5, per_day=150)
    frame = log.send(150 * 14, 0.02, campaign=6).frame()
    result = rt.find_triggers(frame)
    assert result.triggers == []
    # ...although against its channel's rate it stands far out: a pooled baseline would flag it.
    opt_outs = frame[frame["metric"] == "unsubscribed"]
    shown = frame[frame["metric"] == "delivered"]
    own = (opt_outs["campaign_id"] == 6).sum()
    pooled = (len(opt_outs) - own) / (len(shown) - (shown["campaign_id"] == 6).sum())
    assert stats.binomtest(int(own), int((shown["campaign_id"] == 6).sum()), pooled).pvalue < 1e-6
    # It is judged by its own rate elsewhere, not its channel's.
    tests = result.tests[(result.tests["campaign_id"] == 6) & (result.tests["series"] == "all recipients")]
    assert tests.loc[tests["exposure"] > 50, "baseline"].median() > 0.012


@pytest.mark.parametrize("seed", range(3))
def test_a_broadcast_burst_to_everyone_is_not_a_spike(seed):
    # A newsletter to the whole list within two hours, at 2.5 times the campaigns' opt-out rate.
    log = steady(seed, campaigns=5, per_day=100)
    frame = log.send(4000, 0.01, newsletter=701, start_hour=6 * 24 + 15, hours=2).frame()
    result = rt.find_triggers(frame)
    assert result.triggers == []
    assert any(t.startswith("cluster:") for t in result.tests["key"])  # the churn tests ran over it


@pytest.mark.parametrize("seed", range(3))
def test_a_campaign_burst_late_in_the_evening_is_not_a_spike(seed):
    # Ten days' volume in one hour before midnight, at the campaign's usual rate; most opt-outs come
    # after midnight, in the next day's windows, and are dated back to the burst they answer.
    log = steady(seed, campaigns=5, per_day=100)
    frame = log.send(1000, 0.004, campaign=2, start_hour=5 * 24 + 23, hours=1, delay_s=3 * HOUR).frame()
    assert rt.find_triggers(frame).triggers == []


def test_mondays_and_mornings_busier_than_the_rest_are_not_spikes():
    log = Log(7)
    rng = np.random.default_rng(7)
    for campaign in range(1, 6):
        times = T0 + rng.uniform(0, 14 * DAY, 6000)
        busy = ((((times - T0) // DAY) % 7 == 0) & (((times % DAY) // HOUR) < 12)) | (rng.random(6000) < 0.3)
        log.send(0, 0.004, campaign=campaign, times=times[busy])  # Monday mornings hold most sends
    assert rt.find_triggers(log.frame()).triggers == []


# --- what is a spike --------------------------------------------------------------------------------


def test_a_spike_in_one_campaign_is_one_merged_trigger_covering_it():
    log = steady(1, per_day=100)
    frame = log.send(600, 0.08, campaign=3, start_hour=100, hours=24).frame()
    result = rt.find_triggers(frame)
    assert [t.key for t in result.triggers if t.kind == "campaign"] == ["campaign:3:opt_out"]
    t = next(t for t in result.triggers if t.kind == "campaign")
    # Valuable customers churning in that window are the same spike, seen per audience.
    assert all(t.window_start <= u.window_end and u.window_start <= t.window_end for u in result.triggers)
    assert t.window_start <= pd.Timestamp(T0 + 112 * HOUR, unit="s", tz="UTC") < t.window_end
    assert t.rate > 5 * t.baseline and t.p_adjusted <= 0.05 and t.count >= 3
    assert json.dumps(t.to_dict()) and json.dumps(result.checks)


def test_a_spike_in_one_audience_of_a_high_rate_campaign_is_found_with_that_audience():
    # The campaign's normal is already 2%; one audience jumps to 15% for a day on a burst of sends.
    log = steady(2, campaigns=5, per_day=100).send(100 * 14, 0.02, campaign=6)
    frame = log.send(800, 0.02, campaign=6, start_hour=200, hours=24, cluster_rates={1: 0.15}).frame()
    result = rt.find_triggers(frame)
    spikes = [t for t in result.triggers if t.kind == "campaign"]
    assert [t.campaign_id for t in spikes] == [6] and spikes[0].cluster == 1


def test_a_window_needs_min_count_events_to_be_flagged():
    log = steady(2, rate=0.0)
    frame = log.send(40, 0.06, campaign=2, start_hour=50, hours=2).frame()  # ~2 opt-outs, nothing else
    assert rt.find_triggers(frame, min_count=50).triggers == []


def test_churn_counts_only_valuable_plans():
    log = steady(3, campaigns=2, per_day=100)
    frame = log.send(500, 0.25, campaign=1, start_hour=100, hours=24, cluster_rates={0: 0.25}).frame()
    watched = rt.find_triggers(frame, valuable_plans=["pro"])
    ignored = rt.find_triggers(frame, valuable_plans=["enterprise"])
    assert "cluster:power-users:churn" in {t.key for t in watched.triggers}
    assert not any(t.kind == "churn" for t in ignored.triggers)


# --- cooldown and budget --------------------------------------------------------------------------


class FakeMave:
    """Counts Mave calls; optionally refuses like a spent budget."""

    def __init__(self, refuse: bool = False) -> None:
        self.prompts: list[str] = []
        self.refuse = refuse
        self.mave = self  # research asks `client.mave.chat(...)`

    def chat(self, message: str) -> MaveResult:
        if self.refuse:
            raise BudgetExceeded("refused before sending: mave call could cost up to 75 credits", needed=75)
        self.prompts.append(message)
        return MaveResult(content="brief", sources=[{"title": "t", "url": "u"}], personas_used=[],
                          validation={"confidence_score": 0.8}, thread_id="th", credits=40, raw={})


def _trigger(key: str = "campaign:3:opt_out") -> rt.Trigger:
    return rt.Trigger(kind="campaign", key=key, metric="opt_out", window_start=pd.Timestamp(T0, unit="s", tz="UTC"),
                      window_end=pd.Timestamp(T0 + 86400, unit="s", tz="UTC"), count=7, exposure=67, rate=0.1,
                      baseline=0.002, p_value=1e-8, p_adjusted=1e-5, campaign_id=3, cluster=1,
                      cluster_name="Starter plan, high logins 30d", series="cluster",
                      audience={"plans": {"starter": 4, "free": 3}})


def test_the_same_key_within_its_cooldown_calls_mave_once_even_after_a_restart(tmp_path):
    first = FakeMave()
    briefs = research_triggers(RunContext.around(first), [_trigger(), _trigger()], directory=tmp_path, cooldown_hours=24, now=1000.0)
    assert len(first.prompts) == 1 and [b.status for b in briefs] == ["asked", "cooldown"]
    restarted = FakeMave()  # a new process: only the state file remembers
    again = research_triggers(RunContext.around(restarted), [_trigger()], directory=tmp_path, cooldown_hours=24, now=1000.0 + 23 * 3600)
    assert restarted.prompts == [] and again[0].status == "cooldown" and again[0].content == "brief"
    later = research_triggers(RunContext.around(restarted), [_trigger()], directory=tmp_path, cooldown_hours=24, now=1000.0 + 25 * 3600)
    assert len(restarted.prompts) == 1 and later[0].status == "asked"


def test_different_keys_are_asked_separately(tmp_path):
    client = FakeMave()
    research_triggers(RunContext.around(client), [_trigger("campaign:3:opt_out"), _trigger("campaign:4:opt_out")],
                      directory=tmp_path, cooldown_hours=24)
    assert len(client.prompts) == 2


def test_a_budget_refusal_is_recorded_as_skipped_and_the_key_stays_askable(tmp_path):
    briefs = research_triggers(RunContext.around(FakeMave(refuse=True)), [_trigger()], directory=tmp_path, cooldown_hours=24)
    assert briefs[0].status == "skipped" and "75 credits" in briefs[0].reason
    assert CooldownStore(tmp_path).last("campaign:3:opt_out") is None
    client = FakeMave()
    assert research_triggers(RunContext.around(client), [_trigger()], directory=tmp_path)[0].status == "asked"


def test_the_research_prompt_is_aggregates_only():
    prompt = research_prompt(_trigger(), campaign_name="Mobile app activation")
    assert contains_pii(prompt) == []
    for fact in ("7 events from 67 delivered", "10.00%", "0.20%", "Starter plan, high logins 30d", "starter: 4"):
        assert fact in prompt


# --- the sandbox streams --------------------------------------------------------------------------


def _sandbox_run(seed: int, world: str, tmp_path_factory) -> tuple[rt.TriggerResult, dict, pd.DataFrame]:
    """The seed's stream at the notebook's default volume through the real event log, enriched like the
    job does (minus HTTP), and its triggers."""
    ws = generate_workspace(seed=seed, customers=5000, end=END, world=World.named(world))
    log = EventLog(tmp_path_factory.mktemp(f"events-{world}-{seed}"))
    stream = generate_events(ws, DEFAULT_EVENTS, seed=seed)
    log.append(QueuedEvent(str(i), e.event_id, e.body, 0.0) for i, e in enumerate(stream))
    events = read_event_log(log.root)
    ids = set(events["cio_id"].dropna())
    rows = np.flatnonzero(ws.customers["cio_id"].astype(str).isin(ids).to_numpy())
    people = enrichment.pii_free(pd.DataFrame(customer_attribute_strings(ws, rows)))
    clusters, _ = audience_clusters(people, seed=0, now=pd.Timestamp(ws.end))
    return rt.find_triggers(enrichment.enrich(events, people, clusters)), ws.truth, clusters


def _truth_label(clusters: pd.DataFrame, truth: dict, cluster: int) -> int:
    members = clusters.loc[clusters["cluster"] == cluster, "cio_id"]
    return Counter(truth["clusters"]["assignments"][c] for c in members).most_common(1)[0][0]


def _overlaps(t: rt.Trigger, start: int, end: int) -> bool:
    return t.window_start.timestamp() < end and start < t.window_end.timestamp()


@pytest.fixture(scope="module", params=[("realistic", 7), ("realistic", 11), ("realistic", 23), ("clean", 7)],
                ids=lambda p: f"{p[0]}-{p[1]}")
def sandbox_run(request, tmp_path_factory):
    world, seed = request.param
    return _sandbox_run(seed, world, tmp_path_factory)


@pytest.mark.slow
def test_the_planted_spike_is_found_with_its_campaign_and_audience(sandbox_run):
    result, truth, clusters = sandbox_run
    spike = truth["spike"]
    found = [t for t in result.triggers if t.kind == "campaign" and t.campaign_id == spike["campaign_id"]
             and _overlaps(t, spike["start"], spike["end"])]
    assert len(found) == 1, [t.key for t in result.triggers]
    assert found[0].cluster is not None
    assert _truth_label(clusters, truth, found[0].cluster) == truth["spike"]["cluster"]
    assert found[0].rate > 5 * found[0].baseline
    assert json.dumps(found[0].to_dict())  # results.json-ready


@pytest.mark.slow
def test_the_steady_high_campaign_and_the_broadcasts_raise_at_most_one_false_trigger(sandbox_run):
    result, truth, clusters = sandbox_run
    spike, plan = truth["spike"], truth["stream"]
    false = [t for t in result.triggers
             if not (_overlaps(t, spike["start"], spike["end"])
                     and (t.campaign_id == spike["campaign_id"]
                          or (t.kind == "churn" and _truth_label(clusters, truth, t.cluster) == spike["cluster"])))]
    assert len(false) <= 1, [t.key for t in false]  # the benchmark's target is <= 1 per seed on average
    for broadcast in plan["broadcasts"]:
        assert not any(t.kind == "churn" and _overlaps(t, broadcast["start"], broadcast["end"]) for t in false)
