"""The built-in responder: answers operational checks, and nothing else.

It exists so that a group deployed without any language model still passes the guide's
smoke test (``System check, please respond with OK.`` -> ``OK``). It is deliberately narrow:
a prompt that is not an operational check FAILS with a message saying how to configure a
real provider, rather than returning something that looks like an answer.
"""

from __future__ import annotations

import re

from mads.fiedler.providers import Emit, ProviderError

NAME = "builtin"
ANSWER = "OK"

NOT_CONFIGURED = (
    "no LLM provider is configured: the built-in responder only answers operational checks "
    "such as 'System check, please respond with OK.'; to answer other prompts set "
    "FIEDLER_LLM_PROVIDER=openai with FIEDLER_LLM_BASE_URL, FIEDLER_LLM_MODEL and "
    "FIEDLER_LLM_API_KEY (any OpenAI-compatible Chat Completions endpoint)"
)

# The whole prompt, lower-cased, whitespace collapsed, quotes and final punctuation dropped,
# must be one of these: "System check, please respond with OK.", "health check: reply with
# ok", "Respond with OK", "please say OK", "status check", "ping".
_CHECK = r"(?:system|health|status|liveness|readiness|smoke|connectivity) (?:check|test)"
_ASK = r"(?:please )?(?:(?:respond|reply|answer)(?: only| just)? with(?: only| just)?|say) ok"
_CHECKS = (
    re.compile(rf"^(?:{_CHECK}(?: ?[,:;.!-])? )?{_ASK}$"),
    re.compile(rf"^{_CHECK}$"),
    re.compile(r"^ping$"),
)


def normalize(prompt: str) -> str:
    text = re.sub("[\"'`\u201c\u201d\u2018\u2019]", "", prompt.lower())
    text = re.sub(r"\s+", " ", text).strip()
    return text.rstrip(".!?").strip()


def is_operational_check(prompt: str) -> bool:
    if len(prompt) > 500:
        return False
    text = normalize(prompt)
    return any(pattern.match(text) for pattern in _CHECKS)


class BuiltinProvider:
    name = NAME

    async def answer(self, prompt: str, emit: Emit) -> str:
        if not is_operational_check(prompt):
            raise ProviderError(NOT_CONFIGURED)
        emit(ANSWER)
        return ANSWER

    async def close(self) -> None:
        return None
