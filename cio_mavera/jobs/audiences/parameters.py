"""Job 2's notebook parameters: types, defaults and allowed values (checked before anything runs)."""

from __future__ import annotations

from cio_mavera.parameters import Parameter, ParameterSpec, require_order

PARAMETERS = ParameterSpec((
    Parameter("segment_id", int, None, "a Customer.io segment id, or null for everyone",
              nullable=True, minimum=1, maximum=2 ** 63 - 1),
    Parameter("k_min", int, 2, "smallest number of clusters to consider", minimum=2, maximum=30),
    Parameter("k_max", int, 8, "largest number of clusters to consider", minimum=2, maximum=30),
    Parameter("sample_size", int, 5000, "customers per resample when choosing k", minimum=100,
              maximum=1_000_000),
    Parameter("seed", int, 0, "random seed (same data and seed, same clusters)", minimum=0,
              maximum=2 ** 32 - 1),
    Parameter("audience", str, "b2b", "the kind of persona Mavera builds", choices=("b2b", "b2c")),
    Parameter("create_personas", bool, True, "false previews the payloads without creating anything"),
    Parameter("max_credits", int, 2000, "the most Mavera credits this run may spend", minimum=0,
              maximum=1_000_000),
    Parameter("write_back", bool, False, "write each person's cluster and persona to Customer.io"),
    Parameter("write_back_dry_run", bool, True, "with write_back: only count and sample what would be sent"),
    Parameter("refresh", bool, False, "pull Customer.io data again instead of using the cache"),
), cross_checks=(require_order("k_min", "k_max"),))
