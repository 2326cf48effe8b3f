import json
from datetime import UTC, datetime

import pytest

from mads.core.envelope import Envelope, EnvelopeError, decode, encode, make_envelope


def test_round_trip_keeps_every_field() -> None:
    envelope = make_envelope(
        "fiedler",
        "mad.fiedler.task.status",
        {"task_id": "t1"},
        recipient_id="rogers",
        correlation_id="c-1",
    )
    back = decode(encode(envelope))
    assert back == envelope
    assert back.timestamp.tzinfo is not None
    assert set(json.loads(encode(envelope))) == {
        "message_id",
        "conversation_id",
        "correlation_id",
        "timestamp",
        "sender_id",
        "recipient_id",
        "channel",
        "payload",
    }


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "invalid envelope"),
        (b"[1, 2]", "invalid envelope"),
        (json.dumps({"sender_id": "x", "channel": "mad.topic.a"}).encode() + b"}", "invalid"),
        (json.dumps({"channel": "mad.topic.a", "payload": {}}).encode(), "sender_id"),
        (
            json.dumps({"sender_id": "x", "channel": "mad.topic.a", "payload": [1]}).encode(),
            "payload",
        ),
        (json.dumps({"sender_id": "x", "channel": "other.a", "payload": {}}).encode(), "channel"),
        (
            json.dumps(
                {"sender_id": "x", "channel": "mad.topic.a", "payload": {}, "extra": 1}
            ).encode(),
            "extra",
        ),
        (
            json.dumps(
                {
                    "sender_id": "x",
                    "channel": "mad.topic.a",
                    "payload": {},
                    "timestamp": "2026-01-01T00:00:00",
                }
            ).encode(),
            "timezone",
        ),
    ],
)
def test_malformed_messages_are_rejected_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        decode(raw)
    assert reason in str(info.value)
    assert "\n" not in str(info.value)


def test_oversized_envelope_is_refused_both_ways() -> None:
    big = make_envelope("grace", "mad.topic.big", {"blob": "x" * 2_000_000})
    with pytest.raises(EnvelopeError, match="over the 1048576-byte limit"):
        encode(big)
    with pytest.raises(EnvelopeError, match="over the 1048576-byte limit"):
        decode(big.model_dump_json().encode())
    small_cap = make_envelope("grace", "mad.topic.x", {"blob": "x" * 2000})
    with pytest.raises(EnvelopeError, match="over the 1024-byte limit"):
        encode(small_cap, max_bytes=1024)


@pytest.mark.parametrize("channel", ["mad.*", "mad.topic.#", "mad.topic a", "redis.x", "mad."])
def test_publish_channels_must_be_concrete(channel: str) -> None:
    with pytest.raises(EnvelopeError, match="channel"):
        make_envelope("grace", channel, {})


def test_timestamps_are_normalised_to_utc() -> None:
    envelope = Envelope(
        sender_id="a", channel="mad.topic.t", timestamp=datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert envelope.model_dump_json().count("2026-01-01T00:00:00Z") == 1
