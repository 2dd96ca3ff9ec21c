"""The errors of ESCAPE Portal, in the user's words.

Every error says what happened and what to do. Rucio's exceptions are mapped onto this
small hierarchy in one place (:func:`from_rucio`), so that surfaces (CLI, REST, widgets)
only ever see these.
"""

from __future__ import annotations


class LakeError(Exception):
    """Base of every error of the lake library.

    Parameters
    ----------
    message
        What happened, in the user's words.
    hint
        What the user can do about it.

    """

    #: Exit code of the CLI for this kind of error.
    exit_code = 1
    #: HTTP status a REST surface answers with.
    http_status = 500

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class InvalidDID(LakeError, ValueError):
    """A data identifier that is not of the form ``scope:name``."""

    exit_code = 2
    http_status = 400


class InvalidRequest(LakeError, ValueError):
    """An argument the lake rejects before or after sending (bad filter, bad RSE expression)."""

    exit_code = 2
    http_status = 400


class NotFound(LakeError, LookupError):
    """A DID, scope, rule or storage element that does not exist."""

    exit_code = 3
    http_status = 404


class AuthenticationFailed(LakeError):
    """The lake did not accept who we said we are."""

    exit_code = 4
    http_status = 401


class TokenExpired(AuthenticationFailed):
    """The OIDC token has expired."""


class PermissionDenied(LakeError):
    """Authenticated, but not allowed to do this."""

    exit_code = 5
    http_status = 403


class QuotaExceeded(PermissionDenied):
    """A rule would exceed the account's quota on the destination."""


class LakeUnavailable(LakeError):
    """The lake's server cannot be reached, or did not answer in time."""

    exit_code = 6
    http_status = 503

    def __init__(
        self, message: str, hint: str = "", *, url: str = "", timeout: float | None = None
    ):
        super().__init__(message, hint)
        self.url = url
        self.timeout = timeout


class ServiceUnavailable(LakeUnavailable):
    """A Virtual Observatory service (registry, name resolver, DataLink) could not be used.

    It could not be reached, did not answer in time, or answered something that is not
    what the protocol promises (an HTML page, a malformed VOTable). ``url`` names it.
    """
