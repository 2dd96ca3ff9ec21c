"""The base of every REST handler: the shared service, JSON in and out, errors as JSON.

Errors are answered as ``{"error": {"type", "message", "hint"}}``: a
:class:`~escape_portal.errors.LakeError` with its ``http_status``, message and hint; an
HTTP error of the server (not logged in, not allowed, a missing parameter) with its own
status; anything else as a 500 whose message says where to look.
"""

from __future__ import annotations

import json
from http.client import responses
from typing import Any

from jupyter_server.base.handlers import APIHandler
from tornado import web

from escape_portal.errors import InvalidRequest, LakeError
from escape_portal.lake import DID
from escape_portal.server.service import PortalService

#: The settings key the service is kept under in the Tornado application.
SERVICE_KEY = "escape_portal_service"
#: The resource name ``@authorized`` checks (``read`` for GET, ``write`` for POST).
AUTH_RESOURCE = "escape_portal"


def error_body(kind: str, message: str, hint: str = "") -> dict[str, Any]:
    """The JSON of an error answer."""
    return {"error": {"type": kind, "message": message, "hint": hint}}


class PortalHandler(APIHandler):
    """Base of the portal's handlers (authenticated and authorised, JSON only)."""

    auth_resource = AUTH_RESOURCE

    @property
    def service(self) -> PortalService:
        """The service made when the extension loaded."""
        service: PortalService = self.settings[SERVICE_KEY]
        return service

    # -- answers --------------------------------------------------------------------------

    def reply(self, data: Any, status: int = 200) -> None:
        """Finish with ``data`` as JSON."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors as ``{"error": {"type", "message", "hint"}}``."""
        exc = kwargs["exc_info"][1] if kwargs.get("exc_info") else None
        if isinstance(exc, LakeError):
            status_code = exc.http_status
            body = error_body(type(exc).__name__, exc.message, exc.hint)
        elif isinstance(exc, web.HTTPError):
            status_code = exc.status_code
            message = exc.log_message and (
                exc.log_message % exc.args if exc.args else exc.log_message
            )
            body = error_body(
                "HTTPError",
                message or exc.reason or responses.get(status_code, "Error"),
                _hint_for_status(status_code),
            )
        else:
            body = error_body(
                "InternalError",
                f"The ESCAPE Portal server extension failed: {type(exc).__name__ if exc else ''}"
                f"{': ' + str(exc) if exc else ''}",
                "This is a bug; the Jupyter server's log has the details.",
            )
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body, default=str))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Errors of the user's request are one warning line; bugs keep their traceback."""
        if isinstance(value, LakeError):
            self.log.warning(
                "%s %s: %s: %s",
                self.request.method,
                self.request.uri,
                type(value).__name__,
                value,
            )
            return
        super().log_exception(typ, value, tb)

    # -- reading the request --------------------------------------------------------------

    def json_body(self) -> dict[str, Any]:
        """The request's JSON object (an empty body is ``{}``)."""
        if not self.request.body:
            return {}
        try:
            data = json.loads(self.request.body)
        except ValueError as exc:
            raise InvalidRequest(
                f"The request body is not JSON: {exc}.", "Send a JSON object."
            ) from exc
        if not isinstance(data, dict):
            raise InvalidRequest("The request body must be a JSON object.")
        return data

    def int_argument(self, name: str, default: int, *, low: int = 1, high: int = 10_000) -> int:
        """A whole-number query argument within ``[low, high]``."""
        text = self.get_query_argument(name, None)
        if text is None or text == "":
            return default
        try:
            value = int(text)
        except ValueError:
            raise InvalidRequest(
                f"{name}={text!r} is not a whole number.", f"Give {name} from {low} to {high}."
            ) from None
        if not low <= value <= high:
            raise InvalidRequest(f"{name}={value} is out of range.", f"Use {low} to {high}.")
        return value


def path_did(scope: str, name: str) -> DID:
    """The DID of a ``/dids/{scope}/{name}`` path (Tornado has percent-decoded both)."""
    return DID.parse(f"{scope}:{name}")


def _hint_for_status(status: int) -> str:
    if status in (401, 403):
        return "Log in to the Jupyter server again (your session or token may have expired)."
    if status == 400:
        return "Check the request's parameters against the API description (openapi.yaml)."
    return ""
