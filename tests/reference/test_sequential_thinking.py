"""Ours against the public reference ``@modelcontextprotocol/server-sequential-thinking``
(pinned in package.json here), on generated argument sets: valid, coercible and invalid
values for every field, empty and long strings, revisions and branches. The two must agree
on accepted vs refused and on every structured result, call after call, so their histories
stay the same too.

Where ours deliberately differs, the case is named in DELIBERATE and tested on its own
(docs/architecture.md says why); the generators leave those values out so the main run's
histories stay in step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mads.sequential_thinking.coercion import MAX_SAFE_INTEGER
from tests.reference.servers import Pair, side_by_side
from tests.support.mad_process import MadProcess

MAX_THOUGHT_CHARS = 2_000
NUMBERS = ("thoughtNumber", "totalThoughts", "revisesThought", "branchFromThought")
BOOLEANS = ("nextThoughtNeeded", "isRevision", "needsMoreThoughts")
REQUIRED = ("thought", "nextThoughtNeeded", "thoughtNumber", "totalThoughts")
OPTIONAL = ("isRevision", "revisesThought", "branchFromThought", "branchId", "needsMoreThoughts")
# Members of JavaScript's Object.prototype: as a branch id the reference finds the member
# instead of a branch, and fails (after recording the thought). Ours records the branch.
PROTOTYPE_MEMBERS = (
    "__proto__",
    "constructor",
    "toString",
    "valueOf",
    "hasOwnProperty",
    "isPrototypeOf",
    "propertyIsEnumerable",
    "toLocaleString",
    "__defineGetter__",
    "__defineSetter__",
    "__lookupGetter__",
    "__lookupSetter__",
)
JS_SPACES = "\t\n\v\f\r \u00a0\u2003\u2028\ufeff"


def _base(number: int = 1) -> dict[str, Any]:
    return {"thought": "t", "thoughtNumber": number, "totalThoughts": 3, "nextThoughtNeeded": True}


@st.composite
def coercible_numbers(draw: st.DrawFn) -> Any:
    """Strings (and integral floats) the reference reads as a positive integer."""
    n = draw(st.integers(1, 60) | st.integers(1, MAX_SAFE_INTEGER))
    spelled = draw(
        st.sampled_from(
            [str(n), f"+{n}", f"{n}.0", f"{n}.", f"{n}e0", f"{n}00e-2", hex(n), oct(n), bin(n)]
        )
    )
    if spelled.startswith(("0x", "0o", "0b")) and draw(st.booleans()):
        spelled = spelled[:2].upper() + spelled[2:]
    pad = st.text(st.sampled_from(JS_SPACES), max_size=2)
    return draw(st.sampled_from([spelled, draw(pad) + spelled + draw(pad), float(n)]))


valid_numbers = st.integers(1, 60) | st.integers(1, MAX_SAFE_INTEGER) | coercible_numbers()
invalid_numbers = st.one_of(
    st.integers(max_value=0),
    st.integers(min_value=MAX_SAFE_INTEGER + 1),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not x.is_integer()),
    st.sampled_from(
        ["", " ", "1_0", "\u0665", "NaN", "Infinity", "-Infinity", "1e400", "-0", "0", "0x", "1,2"]
    ),
    st.sampled_from(["\x1c5", "5\x85", "five", "5px", "--5", "0x1.8", "+0x10", "1e", ".e1"]),
    st.text(max_size=8).filter(lambda s: not s.strip(JS_SPACES)[:1].isdigit()),
    st.none(),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
valid_booleans = st.booleans() | st.sampled_from(["true", "false", "TRUE", "False", "tRuE"])
invalid_booleans = st.one_of(
    st.integers(),
    st.none(),
    st.sampled_from(
        ["", "yes", "no", "1", "0", "true ", " false", "t", "\uff34\uff32\uff35\uff25"]
    ),
    st.text(max_size=6),
    st.lists(st.booleans(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.booleans(), max_size=1),
)
valid_thoughts = st.text(max_size=40) | st.text(
    min_size=MAX_THOUGHT_CHARS - 5, max_size=MAX_THOUGHT_CHARS
)
not_strings = st.one_of(
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.lists(st.text(), max_size=2),
)
branch_ids = st.sampled_from(
    ["alt", "b", "1", "2", "10", "01", "0", "4294967294", "4294967295", ""]
) | st.text(max_size=12).filter(lambda s: s not in PROTOTYPE_MEMBERS)

VALID = {
    "thought": valid_thoughts,
    "branchId": branch_ids,
    **{name: valid_numbers for name in NUMBERS},
    **{name: valid_booleans for name in BOOLEANS},
}
INVALID = {
    "thought": not_strings,
    "branchId": not_strings,
    **{name: invalid_numbers for name in NUMBERS},
    **{name: invalid_booleans for name in BOOLEANS},
}


@st.composite
def argument_sets(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly valid calls (revisions and branches among them); otherwise one field broken,
    or one required field missing, or a name neither server knows."""
    arguments = {name: draw(VALID[name]) for name in REQUIRED}
    for name in draw(st.lists(st.sampled_from(OPTIONAL), unique=True, max_size=3)):
        arguments[name] = draw(VALID[name])
    flaw = draw(st.sampled_from(["none", "none", "invalid", "missing", "unknown"]))
    if flaw == "invalid":
        name = draw(st.sampled_from(REQUIRED + OPTIONAL))
        arguments[name] = draw(INVALID[name])
    elif flaw == "missing":
        del arguments[draw(st.sampled_from(REQUIRED))]
    elif flaw == "unknown":
        arguments[draw(st.text(min_size=1, max_size=10).filter(lambda s: s not in VALID))] = 1
    return arguments


def agree(pair: Pair, arguments: dict[str, Any]) -> None:
    reference, ours = pair.call(arguments)
    assert ours.accepted == reference.accepted, (arguments, reference.message, ours.message)
    assert ours.result == reference.result, arguments


class Twins:
    """Ours and the reference, restarted together once they have disagreed (a refusal one
    side recorded puts their histories out of step), so every example after a failure,
    hypothesis's shrinking included, starts them in step again. Not tests.support.thinking's
    fixture: this process is restarted in the middle of a test, whenever the two disagree."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._stack = contextlib.ExitStack()
        self._in_step = False

    def pair(self) -> Pair:
        if not self._in_step:
            self.close()
            self._pair = self._stack.enter_context(side_by_side(self._start_ours()))
            self._in_step = True
        return self._pair

    def disagreed(self) -> None:
        self._in_step = False

    def close(self) -> None:
        self._stack.close()

    def _start_ours(self) -> MadProcess:
        ours = MadProcess(
            "sequential_thinking",
            self._workdir,
            {
                # Caps out of reach: the reference has none (DELIBERATE names the difference).
                "SEQUENTIAL_THINKING_MAX_HISTORY": "1000000",
                "SEQUENTIAL_THINKING_MAX_BRANCHES": "100000",
                "SEQUENTIAL_THINKING_MAX_THOUGHT_CHARS": str(MAX_THOUGHT_CHARS),
            },
        ).start()
        self._stack.callback(ours.stop)
        return ours


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Twins]:
    both = Twins(tmp_path_factory.mktemp("ours"))
    try:
        yield both
    finally:
        both.close()


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(argument_sets(), min_size=1, max_size=4))
@example([{**_base(), "thought": ""}])
@example([{**_base(), "thoughtNumber": " 0x1F ", "totalThoughts": "\ufeff2e1\u2028"}])
@example([{**_base(), "revisesThought": None}, {**_base(), "branchId": None}])
@example([{**_base(), "thoughtNumber": MAX_SAFE_INTEGER}, {**_base(), "totalThoughts": 2**53}])
@example([{**_base(), "branchFromThought": 1, "branchId": b} for b in ("z", "10", "2", "02")])
def test_the_two_agree_call_after_call(twins: Twins, calls: list[dict[str, Any]]) -> None:
    pair = twins.pair()
    try:
        for arguments in calls:
            agree(pair, arguments)
    except AssertionError:
        twins.disagreed()
        raise


# The cases where ours deliberately differs: what the reference does, what ours does, why.
DELIBERATE: dict[str, tuple[list[dict[str, Any]], str]] = {
    "a thought longer than the configured bound": (
        [{**_base(), "thought": "x" * (MAX_THOUGHT_CHARS + 1)}],
        "thought: must have at most 2000 character(s)",
    ),
    "a branch id longer than 256 characters": (
        [{**_base(), "branchFromThought": 1, "branchId": "b" * 257}],
        "branchId: must have at most 256 character(s)",
    ),
    "a boolean where a number belongs": (
        [{**_base(), "thoughtNumber": True}],
        "thoughtNumber: must be integer or string, not boolean",
    ),
    "an array where a number belongs": (
        [{**_base(), "totalThoughts": [5]}],
        "totalThoughts: must be integer or string, not array",
    ),
}


@pytest.mark.parametrize("case", sorted(DELIBERATE))
def test_a_deliberate_difference(case: str, start_mad: Callable[..., MadProcess]) -> None:
    """The reference accepts these; ours refuses them with one line and records nothing."""
    calls, message = DELIBERATE[case]
    env = {"SEQUENTIAL_THINKING_MAX_THOUGHT_CHARS": str(MAX_THOUGHT_CHARS)}
    with side_by_side(start_mad("sequential_thinking", env=env)) as pair:
        for arguments in calls:
            reference, ours = pair.call(arguments)
            assert reference.accepted, (case, reference.message)
            assert not ours.accepted
            assert message in ours.message, ours.message
        # Nothing of it was recorded by ours: the next thought is the first.
        reference, ours = pair.call(_base())
        assert ours.result is not None and ours.result["thoughtHistoryLength"] == 1
        assert reference.result is not None
        assert reference.result["thoughtHistoryLength"] == len(calls) + 1


@pytest.mark.parametrize("member", PROTOTYPE_MEMBERS[:3])
def test_a_branch_named_like_an_object_member(
    member: str, start_mad: Callable[..., MadProcess]
) -> None:
    """The reference fails on these branch ids (its branches are a plain JavaScript object)
    after recording the thought; ours keeps the branch like any other."""
    with side_by_side(start_mad("sequential_thinking")) as pair:
        reference, ours = pair.call({**_base(), "branchFromThought": 1, "branchId": member})
        assert not reference.accepted and '"status": "failed"' in reference.message
        assert ours.accepted and ours.result is not None
        assert ours.result["branches"] == [member]


def test_the_history_is_bounded_where_the_reference_grows(
    start_mad: Callable[..., MadProcess],
) -> None:
    """Ours keeps the newest thoughts and branches up to its caps, so memory stays flat;
    the reference keeps everything. Below the caps the two agree (the test above)."""
    env = {"SEQUENTIAL_THINKING_MAX_HISTORY": "5", "SEQUENTIAL_THINKING_MAX_BRANCHES": "2"}
    with side_by_side(start_mad("sequential_thinking", env=env)) as pair:
        for n in range(1, 9):
            reference, ours = pair.call({**_base(n), "branchFromThought": 1, "branchId": f"b{n}"})
        assert reference.result is not None and ours.result is not None
        assert reference.result["thoughtHistoryLength"] == 8
        assert reference.result["branches"] == [f"b{n}" for n in range(1, 9)]
        assert ours.result["thoughtHistoryLength"] == 5
        assert ours.result["branches"] == ["b7", "b8"]
