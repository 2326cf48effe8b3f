"""The ``sequentialthinking`` MCP tool, compatible with the public reference server."""

from typing import Annotated

from pydantic import BeforeValidator, Field, WithJsonSchema

from mads.core.service import MadService
from mads.sequential_thinking.coercion import MAX_SAFE_INTEGER, reference_boolean, reference_number
from mads.sequential_thinking.contract import TOOL_NAME
from mads.sequential_thinking.history import Thought, ThoughtHistory, ThoughtResult

DESCRIPTION = """A detailed tool for dynamic and reflective problem-solving through thoughts.
This tool helps analyze problems through a flexible thinking process that can adapt and evolve.
Each thought can build on, question, or revise previous insights as understanding deepens.

When to use this tool:
- Breaking down complex problems into steps
- Planning and design with room for revision
- Analysis that might need course correction
- Problems where the full scope might not be clear initially
- Tasks that need to maintain context over multiple steps

Key features:
- You can adjust totalThoughts up or down as you progress
- You can question or revise previous thoughts (isRevision, revisesThought)
- You can branch from an earlier thought (branchFromThought with branchId)
- You can add more thoughts even after reaching what seemed like the end (needsMoreThoughts)

Returns thoughtNumber, totalThoughts (raised to thoughtNumber when exceeded),
nextThoughtNeeded, branches (the branch ids seen) and thoughtHistoryLength."""


MAX_BRANCH_ID_CHARS = 256

# What the published schema says is what is enforced: a number or a string holding one, a
# boolean or "true"/"false", as the reference server takes them.
NUMBER_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": 1, "maximum": MAX_SAFE_INTEGER},
        {"type": "string"},
    ]
}
BOOLEAN_SCHEMA = {
    "anyOf": [
        {"type": "boolean"},
        {
            "type": "string",
            "pattern": "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$",
            "description": "true or false",
        },
    ]
}
PositiveInt = Annotated[
    int,
    BeforeValidator(reference_number),
    Field(ge=1, le=MAX_SAFE_INTEGER),
    WithJsonSchema(NUMBER_SCHEMA),
]
Boolean = Annotated[bool, BeforeValidator(reference_boolean), WithJsonSchema(BOOLEAN_SCHEMA)]
NextNeeded = Annotated[Boolean, Field(description="Whether another thought step is needed.")]
ThoughtNumber = Annotated[PositiveInt, Field(description="Current thought number (1-based).")]
TotalThoughts = Annotated[PositiveInt, Field(description="Estimated total thoughts needed.")]
# An optional argument may be left out, not sent as null: the reference refuses null, and
# the published schema (which is what is enforced) says so by leaving null out.
IsRevision = Annotated[
    Boolean | None,
    WithJsonSchema(BOOLEAN_SCHEMA),
    Field(description="Whether this revises previous thinking."),
]
RevisesThought = Annotated[
    PositiveInt | None,
    WithJsonSchema(NUMBER_SCHEMA),
    Field(description="Which thought is being reconsidered."),
]
BranchFrom = Annotated[
    PositiveInt | None,
    WithJsonSchema(NUMBER_SCHEMA),
    Field(description="Branching point thought number."),
]
BranchId = Annotated[
    str | None,
    WithJsonSchema({"type": "string", "maxLength": MAX_BRANCH_ID_CHARS}),
    Field(max_length=MAX_BRANCH_ID_CHARS, description="Branch identifier."),
]
NeedsMore = Annotated[
    Boolean | None,
    WithJsonSchema(BOOLEAN_SCHEMA),
    Field(description="If more thoughts are needed beyond the estimate."),
]


def register(service: MadService, history: ThoughtHistory, max_thought_chars: int) -> None:
    ThoughtText = Annotated[
        str,
        Field(max_length=max_thought_chars, description="Your current thinking step."),
    ]

    # Argument names are the reference server's camelCase: they are the public contract.
    @service.tool(TOOL_NAME, description=DESCRIPTION, strict=False)
    def sequentialthinking(
        thought: ThoughtText,
        nextThoughtNeeded: NextNeeded,
        thoughtNumber: ThoughtNumber,
        totalThoughts: TotalThoughts,
        isRevision: IsRevision = None,
        revisesThought: RevisesThought = None,
        branchFromThought: BranchFrom = None,
        branchId: BranchId = None,
        needsMoreThoughts: NeedsMore = None,
    ) -> ThoughtResult:
        return history.record(
            Thought(
                thought=thought,
                thought_number=thoughtNumber,
                total_thoughts=totalThoughts,
                next_thought_needed=nextThoughtNeeded,
                is_revision=isRevision,
                revises_thought=revisesThought,
                branch_from_thought=branchFromThought,
                branch_id=branchId,
                needs_more_thoughts=needsMoreThoughts,
            )
        )
