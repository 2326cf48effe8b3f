"""The reference server's coercions, so a value it accepts reads the same here.

The public reference server validates with zod: ``z.coerce.number().int().min(1)`` for
numbers, which is JavaScript's ``Number(value)`` followed by a safe-integer check, and a
boolean that also takes the strings ``"true"``/``"false"`` in any case. Only strings are
coerced here: the published schema takes a number or a string for a number field, so a
boolean or an array where a number belongs is refused before this runs (the reference reads
``true`` as 1 and ``[5]`` as 5; docs/architecture.md names the difference).
"""

from __future__ import annotations

import re

MAX_SAFE_INTEGER = 2**53 - 1

# ECMAScript's StrWhiteSpaceChar: WhiteSpace (tab, VT, FF, ZWNBSP and every Zs space) and
# LineTerminator. Python's str.strip() is not the same set (it strips U+001C..U+001F and
# U+0085, which JavaScript keeps, and keeps U+FEFF, which JavaScript strips).
_JS_WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_DECIMAL = re.compile(r"[+-]?(?:Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_NON_DECIMAL = re.compile(r"0(?:[xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)")
_BASES = {"x": 16, "o": 8, "b": 2}


def js_number(text: str) -> float | int | None:
    """``Number(text)`` in JavaScript, or None where it gives NaN."""
    text = text.strip(_JS_WHITESPACE)
    if not text:
        return 0
    if _NON_DECIMAL.fullmatch(text):
        return int(text[2:], _BASES[text[1].lower()])
    if _DECIMAL.fullmatch(text):
        number = float(text)
        return int(number) if number.is_integer() else number
    return None


def reference_number(value: object) -> object:
    """A string read as the reference reads it (never by Python's rules, which take "1_0"
    for 10); other values are left for the integer check, which refuses fractions,
    infinities and what is not a number."""
    if isinstance(value, str):
        number = js_number(value)
        if number is None:
            raise ValueError(f"{value[:40]!r} is not a number")
        return number
    return value


def reference_boolean(value: object) -> object:
    """True/false, or the strings "true"/"false" in any case."""
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value
