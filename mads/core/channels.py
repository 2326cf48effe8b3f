"""Channel names of the Conversation Bus (Redis glob patterns, never AMQP ``#``).

Outside clients name their own ``mad.topic.<topic>`` channels through Grace."""

HEARTBEAT = "mad.system.heartbeat"
SYSTEM_PREFIX = "mad.system."
ALL = "mad.*"


def direct(recipient_id: str) -> str:
    return f"mad.direct.{recipient_id}"


def stream(task_id: str) -> str:
    return f"mad.stream.{task_id}"


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
