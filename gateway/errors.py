"""Why a request is not authenticated: the exceptions the auth modules share."""

from __future__ import annotations

BEARER_CHALLENGE = 'Bearer realm="kubefuncs"'
API_KEY_CHALLENGE = 'ApiKey realm="kubefuncs"'


class AuthFailed(Exception):
    """The request is not authenticated (401); ``reason`` is safe to show to the caller."""

    def __init__(self, reason: str, challenge: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.challenge = challenge  # WWW-Authenticate value


class AuthUnavailable(Exception):
    """Credentials cannot be checked just now (503): no signing keys could be fetched yet."""

    def __init__(self, reason: str, retry_after_s: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


def bearer_failure(reason: str) -> AuthFailed:
    return AuthFailed(reason, BEARER_CHALLENGE)
