"""The console's cookies and CSRF tokens.

The session cookie ``wisegate_console`` holds a random token; the ``console_sessions`` table keeps its
SHA-256 and says whose session it is, until when, and whether it ended (``AccountService``). The CSRF
token of a session is the HMAC of the session's id under the console secret: forms carry it, and it is
worthless without the session it belongs to. Sign-in and invite forms, made before any session exists,
carry a double-submit token instead (``LOGIN_COOKIE``).
"""

from __future__ import annotations

from wisegate.domain.secret import ConsoleSecret, same

COOKIE = "wisegate_console"
LOGIN_COOKIE = "wisegate_console_login"  # double-submit token of the sign-in forms (login CSRF)
SSO_COOKIE = "wisegate_console_sso"  # state, nonce and PKCE verifier of a single sign-on in progress


def csrf_token(secret: ConsoleSecret, session_id: str) -> str:
    return secret.mac("csrf", session_id)


def check_csrf(secret: ConsoleSecret, session_id: str, token: str | None) -> bool:
    return bool(token) and same(str(token), csrf_token(secret, session_id))
