"""Job 3's notebook parameters: types, defaults and allowed values (checked before anything runs)."""

from __future__ import annotations

from cio_mavera.parameters import Parameter, ParameterSpec, require_order

PARAMETERS = ParameterSpec((
    Parameter("events", int, 12_000, "sandbox mode only: signed webhooks replayed through the receiver",
              minimum=1, maximum=1_000_000),
    Parameter("window_hours", int, 24, "length of the rolling window tested for spikes", minimum=1,
              maximum=24 * 30),
    Parameter("step_hours", int, 12, "how far the window moves each step", minimum=1, maximum=24 * 30),
    Parameter("valuable_plans", list, ["pro", "business", "enterprise"],
              "plans whose churn signals are watched per audience", item=str),
    Parameter("alpha", float, 0.05, "false discovery rate across every window tested", minimum=1e-6,
              maximum=0.5),
    Parameter("cooldown_hours", int, 24, "do not research the same trigger again within this many hours",
              minimum=0, maximum=24 * 365),
    Parameter("max_credits", int, 600, "the most Mavera credits this run may spend", minimum=0,
              maximum=1_000_000),
    Parameter("refresh", bool, False, "pull attributes and campaigns again; ignore cached Mave answers"),
), cross_checks=(require_order("step_hours", "window_hours"),))
