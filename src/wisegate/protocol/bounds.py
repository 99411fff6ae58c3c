"""The lengths, characters and ranges values may take: one source for validation and for the tables.

``storage/tables.py`` sizes its columns from these constants, and the wire models (``protocol/``), the
domain's checks and the console validate against the same ones, so a value validation lets through
always fits its column, identically on SQLite (which would store anything) and PostgreSQL (which
refuses a NUL byte in text and a string longer than its column). Ids in URLs are checked once, before
routing (``api/urls.py``).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

# Column lengths, in characters.
ID_LENGTH = 64  # every id we issue (file_…, msgbatch_…, apikey_…) is shorter
NAME_LENGTH = 256  # names of organizations, users, workspaces; a skill's display name
WORKSPACE_NAME_LENGTH = 40  # what the Admin API accepts (the column holds NAME_LENGTH)
KEY_NAME_LENGTH = 500  # an API key's name (the Admin API allows 500)
EMAIL_LENGTH = 320  # RFC 5321: 64 + 1 + 255
MIME_TYPE_LENGTH = 256
FILENAME_LENGTH = 255
SKILL_NAME_LENGTH = 64
SKILL_DESCRIPTION_LENGTH = 1024
SKILL_DIRECTORY_LENGTH = 256
MODEL_LENGTH = 256  # a model id as a request names it (stored with its usage)
NOTE_LENGTH = 256  # the note kept with a credit grant
REASON_LENGTH = 1024  # the reason given with a spend limit increase request

# Money, in picodollars (10**-12 USD) held in 64-bit integers (at most ~9.22e18): one amount typed by a
# person (a top-up, a correction, a spend limit) is at most $1,000,000 either way; a top-up may not carry
# the credit balance past $5,000,000, nor a correction below $0; the purchased total (it only picks the
# tier) stops growing at $5,000,000. That leaves room for the monthly spend counters.
PICO_PER_USD = 10**12
MAX_AMOUNT_USD = 1_000_000
MAX_BALANCE_USD = 5_000_000
MAX_AMOUNT_PICO = MAX_AMOUNT_USD * PICO_PER_USD
MAX_BALANCE_PICO = MAX_BALANCE_USD * PICO_PER_USD

# What one request may ask the server to carry through generation (docs/api.md, "Request bounds"): each
# stop sequence is matched against every generated token, each tool is rendered into the prompt.
MAX_STOP_SEQUENCES = 256
STOP_SEQUENCE_LENGTH = 1024  # characters
MAX_TOOLS = 1000
TOOL_NAME_LENGTH = 128  # the Claude API's tool name pattern allows 1 to 128 characters

NUL_MESSAGE = "must not contain NUL (\\u0000) characters"
SURROGATE_MESSAGE = "must not contain lone UTF-16 surrogates (\\ud800-\\udfff): they encode no character"
CONTROL_MESSAGE = "must not contain control characters (\\u0000-\\u001f, \\u007f-\\u009f)"
BIDI_MESSAGE = (
    "must not contain bidirectional formatting characters (\\u200e, \\u200f, \\u202a-\\u202e, "
    "\\u2066-\\u2069, \\u061c): they reorder how the text after them is shown"
)
BLANK_MESSAGE = "must not be empty or only whitespace"
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

ECHO_LENGTH = ID_LENGTH  # every id we issue is echoed whole; nothing longer can name anything


def echo(value: object) -> str:
    """``value`` as an error message repeats it (an id, a model, a path a client sent): whole up to
    ``ECHO_LENGTH`` characters, else its first ``ECHO_LENGTH`` and an ellipsis, so that a 100 KB id is
    not sent back (and logged) whole."""
    text = str(value)
    return text if len(text) <= ECHO_LENGTH else text[:ECHO_LENGTH] + "…"


def text_problem(value: str, max_length: int) -> str | None:
    """What keeps ``value`` out of a column of ``max_length`` characters, or ``None`` if it fits: a NUL
    (PostgreSQL refuses it), a lone UTF-16 surrogate (no database can encode it), its length."""
    if "\x00" in value:
        return NUL_MESSAGE
    if _SURROGATE.search(value):
        return SURROGATE_MESSAGE
    if len(value) > max_length:
        return f"must be at most {max_length} characters long, got {len(value)}"
    return None


def name_problem(value: str, max_length: int) -> str | None:
    """``text_problem``, and what a name shown to people (pages, CSV, logs, the Admin API) must not be:
    blank, or holding a control character (C0, DEL, C1) or a bidirectional override, which hide or
    forge what follows them ("invoice\u202etxt.exe")."""
    problem = text_problem(value, max_length)
    if problem is not None:
        return problem
    if not value.strip():
        return BLANK_MESSAGE
    if _CONTROL.search(value):
        return CONTROL_MESSAGE
    if _BIDI.search(value):
        return BIDI_MESSAGE
    return None


def _text(value: str) -> str:
    if (problem := text_problem(value, len(value))) is not None:
        raise ValueError(problem)
    return value


def _name(value: str) -> str:
    if (problem := name_problem(value, len(value))) is not None:
        raise ValueError(problem)
    return value


def _model(value: str) -> str:
    """A model id: stored with the request's usage and echoed in its 404, so what fits the column and
    no control or bidirectional character (no model is named with one)."""
    problem = text_problem(value, len(value))
    if problem is None and _CONTROL.search(value):
        problem = CONTROL_MESSAGE
    if problem is None and _BIDI.search(value):
        problem = BIDI_MESSAGE
    if problem is not None:
        raise ValueError(problem)
    return value


_Text = AfterValidator(_text)
_Name = AfterValidator(_name)
_Model = AfterValidator(_model)

# Strings of the wire that are stored: their column's length at most, no NUL nor lone surrogate; names
# and model ids no control character either.
ModelName = Annotated[str, StringConstraints(max_length=MODEL_LENGTH), _Model]
KeyName = Annotated[str, StringConstraints(min_length=1, max_length=KEY_NAME_LENGTH), _Name]
Email = Annotated[str, StringConstraints(max_length=EMAIL_LENGTH), _Name]
WorkspaceName = Annotated[str, StringConstraints(min_length=1, max_length=WORKSPACE_NAME_LENGTH), _Name]
IdText = Annotated[str, StringConstraints(max_length=ID_LENGTH), _Text]
Description = Annotated[str, StringConstraints(max_length=1024), _Text]
