"""The lengths, characters and ranges values may take: one source for validation and for the tables.

``storage/tables.py`` sizes its columns from these constants, and the wire models (``protocol/``), the
domain's checks and the console validate against the same ones, so a value validation lets through
always fits its column — identically on SQLite (which would store anything) and PostgreSQL (which
refuses a NUL byte in text and a string longer than its column).
"""

from __future__ import annotations

# Column lengths (characters).
ID_LENGTH = 64  # every id we issue (file_…, msgbatch_…, apikey_…) is far shorter
NAME_LENGTH = 256  # names of keys, workspaces, users, organizations; MIME types; skill folders
EMAIL_LENGTH = 320  # RFC 5321: 64 + 1 + 255
FILENAME_LENGTH = 255
MODEL_LENGTH = 256

# Money, in picodollars (10**-12 USD) held in 64-bit integers (at most ~9.22e18): one amount typed by a
# person (a top-up, a spend limit) is at most $1,000,000, and a credit balance or purchased total stays
# within $5,000,000, which leaves room for the monthly spend counters.
PICO_PER_USD = 10**12
MAX_AMOUNT_USD = 1_000_000
MAX_BALANCE_USD = 5_000_000
MAX_AMOUNT_PICO = MAX_AMOUNT_USD * PICO_PER_USD
MAX_BALANCE_PICO = MAX_BALANCE_USD * PICO_PER_USD


def has_nul(text: str) -> bool:
    """PostgreSQL text cannot hold U+0000; we refuse it everywhere, so both databases agree."""
    return "\x00" in text
