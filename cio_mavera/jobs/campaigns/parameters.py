"""Job 1's notebook parameters: types, defaults and allowed values (checked before anything runs)."""

from __future__ import annotations

from cio_mavera.parameters import Parameter, ParameterSpec

MAX_CREDITS_CAP = 1_000_000

PARAMETERS = ParameterSpec((
    Parameter("days", int, 30, "window length in days, ending today (UTC)", minimum=1, maximum=3650),
    Parameter("start", str, None, "optional window start (UTC)", nullable=True, date=True),
    Parameter("end", str, None, "optional window end (UTC, exclusive)", nullable=True, date=True),
    Parameter("channel", str, "all", "the channel to report on",
              choices=("all", "email", "push", "sms", "twilio")),
    Parameter("campaign_ids", list, [], "report only these campaigns", item=int, minimum=1,
              maximum=2 ** 63 - 1),
    Parameter("max_underperformers", int, 3, "messages to write new copy for", minimum=0, maximum=20),
    Parameter("variations_per_message", int, 3, "new variations per message", minimum=1, maximum=10),
    Parameter("personas", list, [], "Mavera persona ids or names (empty: three suitable ones)",
              item=str),
    Parameter("validation", str, "responses", "how personas score the variations",
              choices=("responses", "focus_group")),
    Parameter("max_credits", int, 1500, "the most Mavera credits this run may spend", minimum=0,
              maximum=MAX_CREDITS_CAP),
    Parameter("refresh", bool, False, "pull Customer.io data again instead of using the cache"),
))
