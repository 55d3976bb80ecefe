"""The service's validation patterns and how validation errors are worded."""

from __future__ import annotations

import re
import sys

from splitlab.service.errors import validation_problems
from splitlab.service.schemas import PYTHON_WHITESPACE, TEXT


def test_the_id_pattern_knows_every_character_python_strips() -> None:
    # The store refuses an id that str.strip() empties; the schema's pattern must refuse the same.
    assert "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace()) == PYTHON_WHITESPACE
    pattern = re.compile(TEXT)
    for text in ("x", " x", "\x1fx\u3000", "é", "\ud7ff"):
        assert pattern.fullmatch(text), text
    for text in ("", " ", "\x1c\x1d\x1e\x1f", "\u2028\u2029", "x\x00"):
        assert not pattern.fullmatch(text), text


def test_a_mismatch_of_the_id_pattern_is_worded_for_people() -> None:
    error = {"type": "string_pattern_mismatch", "loc": ("body", "events", 3, "unit_id"), "ctx": {"pattern": TEXT}}
    assert validation_problems([error]) == [
        {"field": "events.3.unit_id", "message": "must not be blank (only whitespace) nor contain NUL characters"}
    ]
