"""The JupyterHub test's login: the lake's OpenID provider issues and renews the tokens.

A deployment logs users in with ESCAPE's IAM through ``GenericOAuthenticator`` with
``enable_auth_state``: the hub keeps the provider's ``access_token`` and
``refresh_token`` in the user's encrypted auth state, and its ``refresh_user`` renews the
access token with the refresh token (every ``auth_refresh_age`` seconds at most, and
before each spawn with ``refresh_pre_spawn``). The embedded lake's provider
(``escape_portal.embedded.idp``) has no browser login, so this authenticator does the
same with the login form: the username and password go to the provider's token endpoint
in a password grant of the hub's own client (``jupyterhub``, whose access tokens live a
minute); the answer is kept as OAuthenticator keeps it (``access_token``,
``refresh_token``, ``expires_at``, ``scope``, ``token_response``), and
:meth:`LakeOAuthenticator.refresh_user` renews it with the refresh grant when it is
about to expire. The password is never stored, and no token reaches the hub's log.

The hub imports this module from its configuration file (``tests/hub`` on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any
from urllib.parse import urlencode

from jupyterhub.auth import Authenticator
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Float, List, Unicode


class LakeOAuthenticator(Authenticator):
    """Log in at the lake's OpenID provider; keep and renew its tokens in the auth state."""

    token_url = Unicode(config=True, help="The provider's token endpoint.")
    client_id = Unicode("jupyterhub", config=True, help="The hub's client at the provider.")
    client_secret = Unicode(config=True, help="The client's secret.")
    scope = List(
        Unicode(),
        ["openid", "profile", "offline_access", "storage.read:/", "storage.modify:/"],
        config=True,
        help="Scopes asked at login; offline_access brings the refresh token, the storage "
        "scopes are the ceiling of the storage tokens the session exchanges it for.",
    )
    ca_cert = Unicode(config=True, help="CA bundle of the provider's TLS certificate.")
    refresh_margin = Float(
        30.0,
        config=True,
        help="Renew the access token when fewer seconds than this are left of it.",
    )
    request_timeout = Float(10.0, config=True, help="Seconds to wait for the provider.")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: One renewal at a time per user: the provider rotates refresh tokens, so two
        #: concurrent renewals with the same one would leave the second refused.
        self._renewing: dict[str, asyncio.Lock] = {}

    async def _token_request(self, form: dict[str, str]) -> dict[str, Any] | None:
        """The provider's answer to a token request, or ``None`` if it refused."""
        request = HTTPRequest(
            self.token_url,
            method="POST",
            body=urlencode(form),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            auth_username=self.client_id,
            auth_password=self.client_secret,
            ca_certs=self.ca_cert or None,
            request_timeout=self.request_timeout,
        )
        try:
            response = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as exc:
            reason = ""
            if exc.response is not None:
                with contextlib.suppress(ValueError):
                    reason = json.loads(exc.response.body).get("error", "")
            self.log.warning(
                "The provider refused a %s grant (%s %s)", form["grant_type"], exc.code, reason
            )
            return None
        except OSError as exc:
            self.log.warning("The provider could not be reached (%s)", exc.strerror or exc)
            return None
        answer: dict[str, Any] = json.loads(response.body)
        return answer

    @staticmethod
    def _auth_state(
        answer: dict[str, Any], previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The auth state OAuthenticator keeps for a token response."""
        now = time.time()
        refresh = answer.get("refresh_token") or (previous or {}).get("refresh_token")
        return {
            "access_token": answer["access_token"],
            "refresh_token": refresh,
            "token_type": answer.get("token_type", "Bearer"),
            "scope": str(answer.get("scope", "")).split(),
            "expires_at": now + float(answer.get("expires_in") or 0),
            "token_response": {k: v for k, v in answer.items() if not k.endswith("_token")},
        }

    async def authenticate(self, handler: Any, data: dict[str, str]) -> dict[str, Any] | None:
        """The user and their tokens, or ``None`` if the provider refuses the credentials.

        Parameters
        ----------
        handler
            The hub's login handler (unused).
        data
            The login form: ``username`` and ``password``.

        Returns
        -------
        dict or None
            ``{"name": ..., "auth_state": {...}}`` as an OAuthenticator answers, or ``None``.

        """
        username = self.normalize_username(data.get("username", ""))
        password = data.get("password", "")
        if not username or not password:
            return None
        answer = await self._token_request(
            {
                "grant_type": "password",
                "username": username,
                "password": password,
                "scope": " ".join(self.scope),
            }
        )
        if not answer or not answer.get("access_token"):
            return None
        self.log.info(
            "The provider issued tokens for %s (access for %s s)",
            username,
            answer.get("expires_in"),
        )
        return {"name": username, "auth_state": self._auth_state(answer)}

    async def refresh_user(self, user: Any, handler: Any = None) -> bool | dict[str, Any] | None:
        """Renew the user's access token with the refresh token when it nears its expiry.

        The hub calls this when the auth state is older than ``auth_refresh_age`` on any
        authenticated request (cookie or API token, the user's server's included) and
        before a spawn (``refresh_pre_spawn``).

        Returns
        -------
        bool or dict or None
            ``True`` if the tokens are still good (or the user never logged in: nothing
            to renew), the renewed ``{"name", "auth_state"}``, or ``None`` if the provider
            refused the renewal (the user must log in again).

        """
        lock = self._renewing.setdefault(user.name, asyncio.Lock())
        async with lock:
            state = await user.get_auth_state()
            if not state or not state.get("refresh_token"):
                return True
            left = float(state.get("expires_at") or 0) - time.time()
            if left > self.refresh_margin:
                return True
            answer = await self._token_request(
                {"grant_type": "refresh_token", "refresh_token": state["refresh_token"]}
            )
            if not answer or not answer.get("access_token"):
                return None
            renewed = self._auth_state(answer, state)
            # Saved here, under the lock, so the next renewal uses the new refresh token
            # (the hub saves it again when it applies the answer).
            await user.save_auth_state(renewed)
            self.log.info(
                "Renewed the tokens of %s (%.0f s were left; access for %s s)",
                user.name,
                left,
                answer.get("expires_in"),
            )
            return {"name": user.name, "auth_state": renewed}
