"""Grace's contract: the front door, the one service outside clients reach. It relays them
onto the bus and offers them the group's tools, behind bearer tokens."""

from __future__ import annotations

from mads.core.contract import MadContract

NAME = "grace"
TOKENS_VARIABLE = "GRACE_API_TOKENS"

CONTRACT = MadContract(
    name=NAME,
    port=8001,
    banner="GraceV0",
    service="mads.grace.service:build",
    description="The front door: relays outside clients onto the bus.",
    tools=("grace_send_message", "grace_subscribe", "grace_poll_messages"),
    publishes=("mad.topic.*", "mad.direct.*"),
    secrets=(TOKENS_VARIABLE,),
    client_token_variable=TOKENS_VARIABLE,
    exposed=True,
)
