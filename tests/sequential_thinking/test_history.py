from mads.sequential_thinking.history import Thought, ThoughtHistory


def thought(n: int, total: int = 3, **extra: object) -> Thought:
    return Thought(
        thought=f"t{n}", thought_number=n, total_thoughts=total, next_thought_needed=True, **extra
    )  # type: ignore[arg-type]


def test_total_is_raised_when_the_number_exceeds_it() -> None:
    result = ThoughtHistory().record(thought(5, total=3))
    assert (result["thoughtNumber"], result["totalThoughts"]) == (5, 5)


def test_branch_needs_both_fields() -> None:
    history = ThoughtHistory()
    history.record(thought(2, branch_id="only-id"))
    history.record(thought(2, branch_from_thought=1))
    assert history.branch_ids == []
    result = history.record(thought(2, branch_from_thought=1, branch_id="b"))
    assert result["branches"] == ["b"]


def test_history_and_branches_stay_within_their_caps() -> None:
    history = ThoughtHistory(max_thoughts=50, max_branches=5)
    for n in range(1, 10_001):
        result = history.record(thought(n, branch_from_thought=1, branch_id=f"b{n % 7}"))
    assert len(history) == 50
    assert result["thoughtHistoryLength"] == 50
    assert len(history.branch_ids) == 5
    assert all(history.branch_length(b) <= 50 for b in history.branch_ids)
    assert history.total_processed == 10_000
