"""Two Grace replicas on one bus are interchangeable: subscribe through one, publish and
poll through the other; only one of them fans out, so nothing is buffered twice. Without
GRACE_API_TOKENS, Grace says at start-up that it serves loopback clients only."""

import uuid

from tests.support.grace import grace_session, ok
from tests.support.group import ProcessGroup
from tests.support.group import mad_group as mad_group  # the fixture
from tests.support.waiting import async_wait_for


async def test_replicas_share_subscriptions_and_buffers(mad_group: ProcessGroup) -> None:
    first = mad_group.start("grace")
    second = mad_group.start("grace")
    # The group gives both replicas the same working directory, hence one shared log.
    assert first.log_path == second.log_path
    log = first.log_text()
    assert log.count("GRACE_API_TOKENS is not set, so Grace serves loopback clients only") == 2

    client_id = str(uuid.uuid4())
    async with grace_session(first.url, None) as a, grace_session(second.url, None) as b:
        await ok(a, "grace_subscribe", {"client_id": client_id, "topics": ["mad.topic.r"]})

        async def delivered() -> list:
            await ok(b, "grace_send_message", {"channel": "mad.topic.r", "payload": {}})
            return (await ok(b, "grace_poll_messages", {"client_id": client_id}))["messages"]

        await async_wait_for(delivered, timeout=15, what="delivery across replicas")
        await ok(a, "grace_poll_messages", {"client_id": client_id})  # drain late probes

        sent = [
            (await ok(b, "grace_send_message", {"channel": "mad.topic.r", "payload": {"n": n}}))[
                "message_id"
            ]
            for n in range(20)
        ]
        received: list[tuple[str, dict]] = []
        wanted = set(sent)

        async def all_received() -> bool:
            got = await ok(a, "grace_poll_messages", {"client_id": client_id})
            received.extend((m["message_id"], m["payload"]) for m in got["messages"])
            return wanted <= {message_id for message_id, _ in received}

        await async_wait_for(all_received, timeout=15, what="all 20 messages")
        assert [i for i, _ in received if i in wanted] == sent  # in order, each once
        # Anything else is a probe of the first wait that was still on its way (on a busy
        # machine it can arrive after the drain), never a copy.
        assert all(payload == {} for i, payload in received if i not in wanted), received
    assert first.log_text().count("Fan-out to outside clients active on this replica") == 1
