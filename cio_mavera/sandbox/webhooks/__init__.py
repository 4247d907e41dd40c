"""The sandbox's reporting webhooks: the signed event stream of a workspace and the client that replays it."""

from .replay_client import replay, replay_async
from .stream import StreamEvent, generate_events, webhook_stream

__all__ = ["StreamEvent", "generate_events", "replay", "replay_async", "webhook_stream"]
