"""The synthetic workspace behind the sandbox: the generator and the ways to read what it made."""

from .campaigns import SERIES
from .customers import CLUSTER_NAMES
from .generator import RATE_DEFINITIONS, RATE_METRICS, Workspace, generate_workspace, workspace_end
from .lookups import WorkspaceLookupError, customer_attribute_strings, find_rows, metric_series
from .world import CampaignWorld, CustomerWorld, StreamWorld, World

__all__ = [
    "CLUSTER_NAMES",
    "CampaignWorld",
    "CustomerWorld",
    "RATE_DEFINITIONS",
    "RATE_METRICS",
    "SERIES",
    "StreamWorld",
    "Workspace",
    "World",
    "WorkspaceLookupError",
    "customer_attribute_strings",
    "find_rows",
    "generate_workspace",
    "metric_series",
    "workspace_end",
]
