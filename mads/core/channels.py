"""Channel names of the Conversation Bus (Redis glob patterns, never AMQP ``#``).

Outside clients name their own ``mad.topic.<topic>`` channels through Grace."""

HEARTBEAT = "mad.system.heartbeat"
"""The heartbeat's channel family: each MAD beats on ``mad.system.heartbeat.<name>``, the one
channel under it that its bus user may publish on, so a beat names its sender truly."""
HEARTBEATS = f"{HEARTBEAT}.*"
SYSTEM_PREFIX = "mad.system."
ALL = "mad.*"
TOPICS = "mad.topic.*"
DIRECT = "mad.direct.*"
STREAMS = "mad.stream.*"


def heartbeat(sender_id: str) -> str:
    return f"{HEARTBEAT}.{sender_id}"


def direct(recipient_id: str) -> str:
    return f"mad.direct.{recipient_id}"


STREAM_PREFIX = "mad.stream."


def stream(task_id: str) -> str:
    return f"{STREAM_PREFIX}{task_id}"


def reply(caller: str, instance: str, owner: str) -> str:
    """Where ``owner`` answers the tool calls of one ``caller`` process: the owner's name
    last, so that each owner's bus user may publish on its own replies only."""
    return f"mad.direct.{caller}.{instance}.{owner}"


def requests_stream(owner: str) -> str:
    """The Redis Stream carrying durable requests for ``owner`` (e.g. tool calls relayed by
    Grace)."""
    return f"mad.{owner}.requests"


def classify(channel: str) -> str:
    """``direct``, ``stream``, ``system``, ``topic`` or ``other``."""
    parts = channel.split(".")
    if (
        len(parts) >= 2
        and parts[0] == "mad"
        and parts[1] in ("direct", "stream", "system", "topic")
    ):
        return parts[1]
    return "other"
