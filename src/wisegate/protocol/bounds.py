"""The lengths, characters and ranges values may take: one source for validation and for the tables.

``storage/tables.py`` sizes its columns from these constants, and the wire models (``protocol/``), the
domain's checks and the console validate against the same ones, so a value validation lets through
always fits its column, identically on SQLite (which would store anything) and PostgreSQL (which
refuses a NUL byte in text and a string longer than its column). Ids in URLs are checked once, before
routing (``api/urls.py``).
"""

from __future__ import annotations

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

# Money, in picodollars (10**-12 USD) held in 64-bit integers (at most ~9.22e18): one amount typed by a
# person (a top-up, a spend limit) is at most $1,000,000, and a credit balance or purchased total stays
# within $5,000,000, which leaves room for the monthly spend counters.
PICO_PER_USD = 10**12
MAX_AMOUNT_USD = 1_000_000
MAX_BALANCE_USD = 5_000_000
MAX_AMOUNT_PICO = MAX_AMOUNT_USD * PICO_PER_USD
MAX_BALANCE_PICO = MAX_BALANCE_USD * PICO_PER_USD

NUL_MESSAGE = "must not contain NUL (\\u0000) characters"

ECHO_LENGTH = ID_LENGTH  # every id we issue is echoed whole; nothing longer can name anything


def echo(value: object) -> str:
    """``value`` as an error message repeats it (an id, a model, a path a client sent): whole up to
    ``ECHO_LENGTH`` characters, else its first ``ECHO_LENGTH`` and an ellipsis, so that a 100 KB id is
    not sent back (and logged) whole."""
    text = str(value)
    return text if len(text) <= ECHO_LENGTH else text[:ECHO_LENGTH] + "…"


def text_problem(value: str, max_length: int) -> str | None:
    """What keeps ``value`` out of a column of ``max_length`` characters, or ``None`` if it fits."""
    if "\x00" in value:
        return NUL_MESSAGE
    if len(value) > max_length:
        return f"must be at most {max_length} characters long, got {len(value)}"
    return None


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError(NUL_MESSAGE)
    return value


_NoNul = AfterValidator(_no_nul)

# Strings of the wire that are stored: their column's length at most, no NUL.
ModelName = Annotated[str, StringConstraints(max_length=MODEL_LENGTH), _NoNul]
KeyName = Annotated[str, StringConstraints(min_length=1, max_length=KEY_NAME_LENGTH), _NoNul]
Email = Annotated[str, StringConstraints(max_length=EMAIL_LENGTH), _NoNul]
WorkspaceName = Annotated[str, StringConstraints(min_length=1, max_length=WORKSPACE_NAME_LENGTH), _NoNul]
IdText = Annotated[str, StringConstraints(max_length=ID_LENGTH), _NoNul]
