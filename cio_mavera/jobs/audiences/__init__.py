"""Job 2, attribute personas: customer attributes -> audience clusters -> Mavera custom personas.

Rooms (the same in every job): `data` (the audience), `attribute_types` + `clustering` +
`profiles` + `analysis` (typing, PII removal, clusters, names), the Mavera steps (`personas`),
`writeback` (Track), `charts`, `tables` and `narrative` (the report), `uncertainty` (the intervals
it shows) and `results` (the assignments parquet and results.json). `audience_clusters` is what
other jobs use; a cluster's one name is `cluster_names`'.
"""

from cio_mavera.jobs.audiences.analysis import cluster_name, cluster_names, find_clusters, prepare
from cio_mavera.jobs.audiences.assignments import audience_clusters, saved_assignments
from cio_mavera.jobs.audiences.data import (
    CLUSTER_ATTRIBUTE,
    JOB,
    KEY,
    PERSONA_ATTRIBUTE,
    WRITE_BACK_PREFIX,
    load_audience,
)
from cio_mavera.jobs.audiences.personas import (
    ENGAGE_QUESTION,
    PERSONA_PREFIX,
    ask_what_engages,
    engagement_answers,
    estimate_persona_cost,
    persona_name,
    persona_payloads,
    persona_prefix,
    plan_personas,
    sync_personas,
)
from cio_mavera.jobs.audiences.profiles import profile_clusters
from cio_mavera.jobs.audiences.results import (
    cluster_assignments_path,
    latest_assignments_path,
    output_dir,
    parameters_in,
    persona_results,
    save_assignments,
    write_cluster_assignments,
)
from cio_mavera.jobs.audiences.uncertainty import trait_table
from cio_mavera.jobs.audiences.writeback import (
    WriteBackReport,
    write_back,
    write_back_for_run,
    write_back_operations,
)

__all__ = [
    "CLUSTER_ATTRIBUTE", "ENGAGE_QUESTION", "JOB", "KEY", "PERSONA_ATTRIBUTE", "PERSONA_PREFIX",
    "WRITE_BACK_PREFIX",
    "WriteBackReport", "ask_what_engages", "audience_clusters", "cluster_assignments_path",
    "cluster_name", "cluster_names", "engagement_answers", "estimate_persona_cost",
    "find_clusters", "latest_assignments_path", "load_audience", "output_dir", "parameters_in",
    "persona_name", "persona_payloads", "persona_prefix", "persona_results", "plan_personas",
    "prepare", "profile_clusters", "save_assignments", "saved_assignments", "sync_personas",
    "trait_table", "write_back", "write_back_for_run", "write_back_operations",
    "write_cluster_assignments",
]
