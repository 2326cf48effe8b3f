"""The bus envelope: every message on the Conversation Bus is one of these, as JSON."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mads.core.errors import MadError
from mads.core.logs import quoted
from mads.core.settings import DEFAULT_MAX_MESSAGE_BYTES

IDENTIFIER = r"^[A-Za-z0-9_.:@-]{1,128}$"


TRACEPARENT = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
NOT_IN_CHANNELS = re.compile(r"[*?\[\]# \t\r\n]")
"""Glob characters and spaces: a channel name is concrete."""


class EnvelopeError(MadError, ValueError):
    """A message that is not a valid envelope, with the reason in one line."""


def _new_id() -> str:
    """A random (version 4) UUID as text, as ``str(uuid.uuid4())`` gives it, without
    building a UUID object: every message needs one or two."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _now() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    message_id: str = Field(default_factory=_new_id, pattern=IDENTIFIER)
    conversation_id: str = Field(default_factory=_new_id, pattern=IDENTIFIER)
    correlation_id: str | None = Field(default=None, pattern=IDENTIFIER)
    timestamp: datetime = Field(default_factory=_now)
    sender_id: str = Field(pattern=IDENTIFIER)
    recipient_id: str | None = Field(default=None, pattern=IDENTIFIER)
    channel: str = Field(min_length=5, max_length=256)
    payload: dict[str, Any] = Field(default_factory=dict)
    traceparent: str | None = Field(default=None, pattern=TRACEPARENT)
    """W3C trace context of the span that sent it (only while tracing; absent otherwise)."""

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamp must carry a timezone (ISO-8601 UTC)")
        return value.astimezone(UTC)

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        check_channel(value)
        return value


def check_channel(channel: str) -> str:
    """A concrete channel name: ``mad.`` prefix, no glob characters, no spaces."""
    if not channel.startswith("mad.") or len(channel) < 5:
        raise ValueError(f"channel {quoted(channel)} must start with 'mad.'")
    if NOT_IN_CHANNELS.search(channel):
        raise ValueError(f"channel {quoted(channel)} must not contain wildcards or spaces")
    return channel


def encode(envelope: Envelope, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> bytes:
    unset = {"traceparent"} if envelope.traceparent is None else None
    data = envelope.model_dump_json(exclude=unset).encode()
    if len(data) > max_bytes:
        raise EnvelopeError(f"message is {len(data)} bytes, over the {max_bytes}-byte limit")
    return data


def decode(raw: bytes | str, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Envelope:
    data = raw.encode() if isinstance(raw, str) else raw
    if len(data) > max_bytes:
        raise EnvelopeError(f"message is {len(data)} bytes, over the {max_bytes}-byte limit")
    try:
        return Envelope.model_validate_json(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error.get("loc", ())) or "message"
        raise EnvelopeError(f"invalid envelope: {where}: {error.get('msg')}") from None


def make_envelope(
    sender_id: str,
    channel: str,
    payload: dict[str, Any] | None = None,
    **fields: Any,
) -> Envelope:
    """Build an envelope, turning validation failures into :class:`EnvelopeError`."""
    try:
        return Envelope(sender_id=sender_id, channel=channel, payload=payload or {}, **fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error.get("loc", ())) or "message"
        msg = str(error.get("msg", "")).removeprefix("Value error, ")
        raise EnvelopeError(f"invalid envelope: {where}: {msg}") from None
