"""Job 1, campaign messaging: campaign metrics -> underperformers -> Mave strategy -> new copy.

Rooms (the same in every job): `data` (the window and the cached frames), `stats` + `analysis`
(rates, baselines, underperformers, the PII-free summary), the Mavera steps (`strategy`,
`variations`, `scoring`), `charts`, `narrative` (report text) and `results` (results.json).
The names below are the job's public surface; the notebook imports this package and its report
rooms (`narrative`, `tables`, `charts`).
"""

from cio_mavera.jobs.campaigns.ab_test import ab_test_plan, sends_per_variant
from cio_mavera.jobs.campaigns.analysis import (
    Findings,
    analyse,
    body_excerpt,
    findings_summary,
    redact_contacts,
)
from cio_mavera.jobs.campaigns.data import (
    JOB,
    CampaignData,
    JobInputError,
    load_campaign_data,
    normalise_channel,
    resolve_window,
)
from cio_mavera.jobs.campaigns.results import campaign_results, parameters_in
from cio_mavera.jobs.campaigns.scoring import (
    SCORE_SCHEMA,
    choose_personas,
    rank_variations,
    score_prompt,
    score_variations,
)
from cio_mavera.jobs.campaigns.strategy import (
    Strategy,
    ask_mave_for_strategy,
    strategy_key_points,
    strategy_prompt,
)
from cio_mavera.jobs.campaigns.variations import (
    CURRENT,
    Variation,
    choose_generation_app,
    current_copy,
    draft_variations,
    generate_variations,
    generation_inputs,
    parse_variation,
)
from cio_mavera.mavera import LISTING_MAX_AGE

__all__ = [
    "CURRENT", "JOB", "LISTING_MAX_AGE", "SCORE_SCHEMA", "CampaignData", "Findings",
    "JobInputError", "Strategy", "Variation", "ab_test_plan", "analyse", "ask_mave_for_strategy", "body_excerpt",
    "campaign_results", "choose_generation_app", "choose_personas", "current_copy",
    "draft_variations", "findings_summary", "generate_variations", "generation_inputs",
    "load_campaign_data", "normalise_channel", "parameters_in", "parse_variation", "rank_variations",
    "redact_contacts", "resolve_window", "score_prompt", "score_variations", "sends_per_variant",
    "strategy_key_points",
    "strategy_prompt",
]
