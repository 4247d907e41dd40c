"""Job 3 triggers and research bookkeeping: the test statistic, BH, min counts, windows, cooldown dedupe,
budget skips, and the planted spike found (campaign and audience) in the sandbox streams of seeds 7/11/23."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from conftest import END
from scipy import stats

from cio_mavera.errors import BudgetExceeded, InvalidParameter
from cio_mavera.jobs.audiences import audience_clusters
from cio_mavera.jobs.context import RunContext
from cio_mavera.jobs.retention import enrichment
from cio_mavera.jobs.retention import triggers as rt
from cio_mavera.jobs.retention.research import CooldownStore, research_prompt, research_triggers
from cio_mavera.mavera.models import MaveResult
from cio_mavera.pii import contains_pii
from cio_mavera.receiver.queues import QueuedEvent
from cio_mavera.receiver.worker import EventLog, read_event_log
from cio_mavera.sandbox.webhooks import generate_events
from cio_mavera.sandbox.workspace import customer_attribute_strings, generate_workspace

HOUR = 3600
T0 = 1_790_000_000 // (6 * HOUR) * (6 * HOUR)


# --- the statistic ------------------------------------------------------------------------------


def test_exceedance_p_value_is_the_beta_binomial_upper_tail():
    p, baseline = rt.exceedance_test(np.array([5]), np.array([100]), np.array([2]), np.array([900]),
                                     prior_rate=0.004, prior_weight=1000)
    a, b = 0.004 * 1000 + 2, 0.996 * 1000 + 898
    assert p[0] == pytest.approx(stats.betabinom.sf(4, 100, a, b))
    assert baseline[0] == pytest.approx(a / (a + b))


def test_a_very_strong_prior_reduces_to_the_binomial_test_at_the_prior_rate():
    p, _ = rt.exceedance_test(np.array([4]), np.array([200]), np.array([0]), np.array([0]),
                              prior_rate=0.005, prior_weight=1e9)
    assert p[0] == pytest.approx(stats.binom.sf(3, 200, 0.005), rel=1e-3)


def test_more_events_in_the_window_give_a_smaller_p_value_and_zero_gives_one():
    p, _ = rt.exceedance_test(np.array([0, 1, 3, 6]), np.array([100] * 4), np.array([1] * 4),
                              np.array([500] * 4), prior_rate=0.004, prior_weight=1000)
    assert p[0] == 1.0 and p[1] > p[2] > p[3]


def test_a_campaign_with_a_high_own_baseline_is_not_flagged_for_its_usual_rate():
    usual, _ = rt.exceedance_test(np.array([3]), np.array([100]), np.array([270]), np.array([9000]),
                                  prior_rate=0.004, prior_weight=1000)
    quiet, _ = rt.exceedance_test(np.array([3]), np.array([100]), np.array([0]), np.array([900]),
                                  prior_rate=0.004, prior_weight=1000)
    assert usual[0] > 0.3 and quiet[0] < 0.01


def test_benjamini_hochberg_matches_the_step_up_values():
    adjusted = rt.benjamini_hochberg([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.02, 0.04, 0.04, 0.02])


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
        rt.find_triggers(_synthetic(np.random.default_rng(0)), **bad)


# --- synthetic event logs -------------------------------------------------------------------------


def _synthetic(rng: np.random.Generator, *, campaigns: int = 6, days: int = 14, per_day: int = 60,
               rate: float = 0.004, spike: tuple[int, int, int, float] | None = None) -> pd.DataFrame:
    """Deliveries and opt-outs at a constant rate; `spike` = (campaign, start hour, hours, rate)."""
    rows = []
    for c in range(1, campaigns + 1):
        for t in rng.uniform(T0, T0 + days * 24 * HOUR, size=per_day * days).astype(np.int64):
            p = rate
            if spike and c == spike[0] and T0 + spike[1] * HOUR <= t < T0 + (spike[1] + spike[2]) * HOUR:
                p = spike[3]
            rows.append(("delivered", t, c))
            if rng.random() < p:
                rows.append(("unsubscribed", t + 600, c))
    frame = pd.DataFrame(rows, columns=["metric", "timestamp", "campaign_id"])
    frame["object_type"], frame["plan"], frame["cluster"], frame["cluster_name"] = "email", "free", pd.NA, None
    frame["event_id"] = [f"e{i}" for i in range(len(frame))]
    return frame


@pytest.mark.parametrize("seed", range(5))
def test_constant_rates_raise_no_trigger(seed):
    result = rt.find_triggers(_synthetic(np.random.default_rng(seed)))
    assert result.triggers == [] and len(result.tests) > 0


def test_a_spike_in_one_campaign_is_one_merged_trigger_covering_it():
    events = _synthetic(np.random.default_rng(1), spike=(3, 100, 24, 0.08))
    result = rt.find_triggers(events)
    assert [t.key for t in result.triggers] == ["campaign:3:opt_out"]
    t = result.triggers[0]
    assert t.window_start <= pd.Timestamp(T0 + 112 * HOUR, unit="s", tz="UTC") < t.window_end
    assert t.rate > 5 * t.baseline and t.p_adjusted <= 0.05 and t.count >= 3


def test_a_window_needs_min_count_events_to_be_flagged():
    events = _synthetic(np.random.default_rng(2), rate=0.0)
    burst = pd.DataFrame({"metric": "unsubscribed", "timestamp": [T0 + 50 * HOUR, T0 + 51 * HOUR],
                          "campaign_id": 2, "object_type": "email", "plan": "free", "cluster": pd.NA,
                          "cluster_name": None, "event_id": ["b1", "b2"]})
    events = pd.concat([events, burst], ignore_index=True)
    assert rt.find_triggers(events, min_count=3).triggers == []
    assert [t.key for t in rt.find_triggers(events, min_count=2).triggers] == ["campaign:2:opt_out"]


def test_churn_counts_only_valuable_plans():
    rng = np.random.default_rng(3)
    events = _synthetic(rng, campaigns=2, spike=(1, 100, 24, 0.25))
    events["cluster"], events["cluster_name"] = 0, "Power users"
    events.loc[events["metric"] == "delivered", "metric"] = "sent"  # churn exposure is messages sent
    watched = rt.find_triggers(events, valuable_plans=["free"])
    ignored = rt.find_triggers(events, valuable_plans=["enterprise"])
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


def _sandbox_events(seed: int, tmp_path, n_events: int = 4000) -> tuple[pd.DataFrame, dict, dict]:
    """The seed's stream through the real event log, enriched like the job does (minus HTTP)."""
    ws = generate_workspace(seed=seed, customers=5000, end=END)
    log = EventLog(tmp_path / f"events-{seed}")
    stream = generate_events(ws, n_events, seed=seed)
    log.append(QueuedEvent(str(i), e.event_id, e.body, 0.0) for i, e in enumerate(stream))
    events = read_event_log(log.root)
    ids = set(events["cio_id"].dropna())
    rows = np.flatnonzero(ws.customers["cio_id"].astype(str).isin(ids).to_numpy())
    people = enrichment._pii_free(pd.DataFrame(customer_attribute_strings(ws, rows)))
    clusters, _ = audience_clusters(people, seed=0, now=pd.Timestamp(ws.end_date, tz="UTC"))
    return enrichment.enrich(events, people, clusters), ws.truth, clusters


def _truth_label(clusters: pd.DataFrame, truth: dict, cluster: int) -> int:
    members = clusters.loc[clusters["cluster"] == cluster, "cio_id"]
    labels = Counter(truth["clusters"]["assignments"][c] for c in members)
    return labels.most_common(1)[0][0]


def _is_spike(t: rt.Trigger, truth: dict, clusters: pd.DataFrame) -> bool:
    spike = truth["spike"]
    overlaps = t.window_start.timestamp() < spike["end"] and spike["start"] < t.window_end.timestamp()
    return t.kind == "campaign" and t.campaign_id == spike["campaign_id"] and overlaps


@pytest.mark.slow
@pytest.mark.parametrize("seed", [7, 11, 23])
def test_the_planted_spike_is_found_with_its_campaign_and_audience(seed, tmp_path):
    events, truth, clusters = _sandbox_events(seed, tmp_path)
    result = rt.find_triggers(events)
    spikes = [t for t in result.triggers if _is_spike(t, truth, clusters)]
    assert len(spikes) == 1, [t.key for t in result.triggers]
    assert spikes[0].cluster is not None
    assert _truth_label(clusters, truth, spikes[0].cluster) == truth["spike"]["cluster"]
    # Valuable customers of the planted cluster churning in the window are the same spike, seen per audience.
    same = [t for t in result.triggers if t.kind == "churn" and _truth_label(clusters, truth, t.cluster)
            == truth["spike"]["cluster"] and t.window_start.timestamp() < truth["spike"]["end"]]
    false = [t.key for t in result.triggers if t not in spikes and t not in same]
    assert len(false) <= 1, false
    assert json.dumps(spikes[0].to_dict())  # results.json-ready
