"""The operator dashboard's browser session: the admin token proven once, on a form, then a
signed cookie (issue 20).

A browser cannot send `Authorization: Bearer` when it navigates, and a token in the URL would
end up in history, proxy logs and Referer headers. So `/dashboard/login` takes the admin
token in a POSTed form and answers with a cookie holding `v1.<expiry>.<nonce>.<signature>`:
nothing secret, signed with a key derived from the admin token. The cookie is HttpOnly (no
script reads it), SameSite=Strict (no other site's page sends it), scoped to `/dashboard`,
Secure when the request came over https, and good for `LIFETIME_S`. Stateless on purpose:
several `serve` replicas behind a balancer accept each other's sessions, and changing the
admin token ends every session at once.

Each session has its CSRF token, an HMAC of the cookie under the same key: every form that
changes something (redeliver, logout) carries it in a hidden field and is refused without
it, on top of SameSite.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

COOKIE = "strategies_dashboard"
PATH = "/dashboard"
#: Seconds a session lasts (a working day); then the form asks for the token again.
LIFETIME_S = 8 * 3600
_VERSION = "v1"


def _key(admin_token: str) -> bytes:
    return hmac.new(admin_token.encode(), b"strategies-dashboard-session", hashlib.sha256).digest()


def _mac(admin_token: str, purpose: str, text: str) -> str:
    message = f"{purpose}:{text}".encode()
    return hmac.new(_key(admin_token), message, hashlib.sha256).hexdigest()


def token_matches(admin_token: str, sent: str) -> bool:
    return hmac.compare_digest(sent.encode(), admin_token.encode())


def issue(admin_token: str, now: float) -> str:
    """A new session's cookie value, valid until `now + LIFETIME_S`."""
    body = f"{_VERSION}.{int(now) + LIFETIME_S}.{secrets.token_urlsafe(16)}"
    return f"{body}.{_mac(admin_token, 'session', body)}"


def valid(admin_token: str, cookie: str | None, now: float) -> bool:
    if not cookie or len(cookie) > 256:
        return False
    body, _, signature = cookie.rpartition(".")
    version, _, rest = body.partition(".")
    expiry, _, _nonce = rest.partition(".")
    if version != _VERSION or not expiry.isdigit():
        return False
    expected = _mac(admin_token, "session", body)
    return hmac.compare_digest(signature.encode(), expected.encode()) and now < int(expiry)


def csrf_token(admin_token: str, cookie: str) -> str:
    """The session's token for the forms that change something."""
    return _mac(admin_token, "csrf", cookie)


def csrf_matches(admin_token: str, cookie: str, sent: str) -> bool:
    return hmac.compare_digest(sent.encode(), csrf_token(admin_token, cookie).encode())
