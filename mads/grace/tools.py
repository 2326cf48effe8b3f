"""Grace's own MCP tools: the relay for outside clients. Thin: validate, then delegate."""

import json
from typing import Annotated, Any

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from mads.core.bus import BusError
from mads.core.envelope import IDENTIFIER, EnvelopeError
from mads.core.logs import quoted
from mads.core.service import MadService
from mads.grace.buffers import ClientBuffers, UnknownClientError
from mads.grace.relay import FanOut, payload_size, publish_problem, topic_problem
from mads.grace.settings import GraceSettings

SEND_DESCRIPTION = """Publish a message on the Conversation Bus on behalf of an outside client.

The sender is always grace. mad.system.*, channels in a MAD's own namespace (mad.fiedler.*)
and relay reply channels are refused. Returns {"status": "success", "message_id", "channel"}."""

SUBSCRIBE_DESCRIPTION = """Subscribe an outside client to bus channels (names or glob patterns
under mad., e.g. mad.topic.news or mad.stream.*). Replaces the client's topics. Messages are
kept in a bounded buffer until grace_poll_messages; the client expires after a period with
neither a subscribe nor a poll."""

POLL_DESCRIPTION = """Take the messages buffered for an outside client, oldest first.

Returns {"status": "success", "messages": [envelope, ...], "dropped": N, "remaining": M}:
dropped counts messages lost to the buffer cap since the last poll; remaining is what is
still buffered (poll again)."""

Identifier = Annotated[str, Field(pattern=IDENTIFIER)]


def register(
    service: MadService, settings: GraceSettings, buffers: ClientBuffers, fanout: FanOut
) -> None:
    bus = service.bus
    assert bus is not None
    max_payload = settings.grace_max_payload_bytes

    def refuse(tool: str, reason: str) -> ToolError:
        service.log.warning("Refused %s: %s", tool, reason)
        return ToolError(reason)

    @service.tool("grace_send_message", description=SEND_DESCRIPTION)
    async def grace_send_message(
        channel: Annotated[
            str, Field(min_length=5, max_length=256, description="Channel, e.g. mad.topic.x")
        ],
        payload: Annotated[dict[str, Any], Field(description="The message body (JSON object).")],
        recipient_id: Annotated[
            str | None, Field(pattern=IDENTIFIER, description="Addressee MAD or client id.")
        ] = None,
        conversation_id: Annotated[
            str | None, Field(pattern=IDENTIFIER, description="Conversation to continue.")
        ] = None,
        correlation_id: Annotated[
            str | None, Field(pattern=IDENTIFIER, description="Message this one answers.")
        ] = None,
    ) -> dict[str, Any]:
        problem = publish_problem(channel)
        if problem is not None:
            raise refuse("grace_send_message", problem)
        size = payload_size(payload)
        if size > max_payload:
            raise refuse(
                "grace_send_message",
                f"payload is {size} bytes, over the {max_payload}-byte limit "
                "(GRACE_MAX_PAYLOAD_BYTES)",
            )
        fields = {
            k: v
            for k, v in (
                ("recipient_id", recipient_id),
                ("conversation_id", conversation_id),
                ("correlation_id", correlation_id),
            )
            if v is not None
        }
        try:
            envelope = await bus.publish(channel, payload, **fields)
        except EnvelopeError as exc:
            raise refuse("grace_send_message", str(exc)) from None
        except BusError as exc:
            raise ToolError(str(exc)) from None
        return {"status": "success", "message_id": envelope.message_id, "channel": channel}

    @service.tool("grace_subscribe", description=SUBSCRIBE_DESCRIPTION)
    async def grace_subscribe(
        client_id: Annotated[
            str, Field(pattern=IDENTIFIER, description="Your client id (use a UUID).")
        ],
        topics: Annotated[
            list[str],
            Field(
                min_length=1,
                max_length=settings.grace_max_topics,
                description="Channel names or glob patterns under mad.",
            ),
        ],
    ) -> dict[str, Any]:
        for topic in topics:
            problem = topic_problem(topic)
            if problem is not None:
                raise refuse("grace_subscribe", problem)
        unique = sorted(set(topics))
        try:
            await buffers.subscribe(client_id, unique)
            if fanout.leading:
                await fanout.refresh()
        except BusError as exc:
            raise ToolError(str(exc)) from None
        return {"status": "success", "client_id": client_id, "topics": unique}

    @service.tool("grace_poll_messages", description=POLL_DESCRIPTION)
    async def grace_poll_messages(
        client_id: Annotated[str, Field(pattern=IDENTIFIER, description="Your client id.")],
        max_messages: Annotated[
            int,
            Field(ge=1, le=settings.grace_max_buffer, description="At most this many messages."),
        ] = min(100, settings.grace_max_buffer),
    ) -> dict[str, Any]:
        try:
            raw, dropped, left = await buffers.poll(client_id, max_messages)
        except UnknownClientError:
            raise refuse(
                "grace_poll_messages",
                f"unknown client_id {quoted(client_id)}: call grace_subscribe first (clients "
                f"expire after {settings.grace_client_ttl_s:g} s without a subscribe or poll)",
            ) from None
        except BusError as exc:
            raise ToolError(str(exc)) from None
        messages = [_decode(item) for item in raw]
        return {"status": "success", "messages": messages, "dropped": dropped, "remaining": left}


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return {"undecodable": raw.decode(errors="replace")}
