"""Job 3, retention research: signed reporting webhooks -> event log -> spikes -> Mave research.

Rooms (the same in every job): `data` (the event log) and `pipeline` (sandbox mode's receiver,
replay and worker), `enrichment` + `triggers` + `analysis` (attributes and clusters per event, spike
tests, rate tables; the spike tests stand on `cohorts` (opt-outs dated by their delivery), `cells`
(exposure and events by source, audience and window), `baselines` (the null model) and
`time_effects`), the Mavera step (`research`, and `watch` for the worker), `charts`, `narrative`
(report text) and `results` (results.json).
"""

from cio_mavera.jobs.retention.analysis import campaign_rates, cluster_rates, event_counts
from cio_mavera.jobs.retention.data import (
    campaign_names,
    event_log_dir,
    load_event_log,
    read_event_log,
)
from cio_mavera.jobs.retention.enrichment import Enriched, enrich, enrich_events, people_for
from cio_mavera.jobs.retention.pipeline import PipelineRun, run_sandbox_pipeline
from cio_mavera.jobs.retention.research import (
    Brief,
    CooldownStore,
    load_briefs,
    research_dir,
    research_prompt,
    research_triggers,
)
from cio_mavera.jobs.retention.results import retention_results
from cio_mavera.jobs.retention.triggers import Trigger, TriggerResult, find_triggers
from cio_mavera.jobs.retention.watch import JOB, ResearchLoop

__all__ = [
    "JOB", "Brief", "CooldownStore", "Enriched", "PipelineRun", "ResearchLoop",
    "Trigger", "TriggerResult", "campaign_names", "campaign_rates", "cluster_rates", "enrich",
    "enrich_events", "event_counts", "event_log_dir", "find_triggers", "load_briefs",
    "load_event_log", "people_for", "read_event_log", "research_dir", "research_prompt",
    "research_triggers", "retention_results", "run_sandbox_pipeline",
]
