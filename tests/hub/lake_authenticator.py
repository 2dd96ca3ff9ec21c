"""The JupyterHub test's login: the lake's own authentication server issues the token.

A deployment logs users in with an OIDC provider (ESCAPE IAM) and keeps the access token
it issues in the hub's encrypted auth state (``GenericOAuthenticator`` with
``enable_auth_state``). This authenticator plays the provider's part for the JupyterHub
test (``tests/integration/test_jupyterhub.py``): the login form's username and password
are checked by the embedded lake's Rucio authentication server (``GET /auth/userpass``,
with the Rucio account named as the user, as ESCAPE names accounts after IAM users), and
the token Rucio answers is kept as ``auth_state["access_token"]``, exactly where
OAuthenticator keeps an OIDC access token. The password is never stored; the hub only
keeps the token, encrypted with ``JUPYTERHUB_CRYPT_KEY``.

The hub imports this module from its configuration file (``tests/hub`` on ``sys.path``).
"""

from __future__ import annotations

import time
from typing import Any

from jupyterhub.auth import Authenticator
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from traitlets import Float, Unicode


class LakeLoginAuthenticator(Authenticator):
    """Log in with a lake identity; keep the token the lake issues in the auth state."""

    auth_url = Unicode(
        config=True, help="Base URL of the Rucio authentication server (RUCIO_AUTH_URL)."
    )
    app_id = Unicode("jupyterhub", config=True, help="X-Rucio-AppID of the token requests.")
    request_timeout = Float(10.0, config=True, help="Seconds to wait for the lake's answer.")

    async def authenticate(self, handler: Any, data: dict[str, str]) -> dict[str, Any] | None:
        """The user and their token, or ``None`` if the lake refuses the credentials.

        Parameters
        ----------
        handler
            The hub's login handler (unused).
        data
            The login form: ``username`` and ``password``.

        Returns
        -------
        dict or None
            ``{"name": ..., "auth_state": {"access_token": ..., "token_type": "rucio",
            "expires_at": ...}}`` as an OAuthenticator would answer, or ``None``.

        """
        username = self.normalize_username(data.get("username", ""))
        password = data.get("password", "")
        if not username or not password:
            return None
        request = HTTPRequest(
            f"{self.auth_url.rstrip('/')}/auth/userpass",
            headers={
                "X-Rucio-Account": username,
                "X-Rucio-Username": username,
                "X-Rucio-Password": password,
                "X-Rucio-AppID": self.app_id,
            },
            request_timeout=self.request_timeout,
        )
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
        token = response.headers.get("X-Rucio-Auth-Token") if response.code == 200 else None
        if not token:
            self.log.warning("The lake refused the login of %s (HTTP %s)", username, response.code)
            return None
        self.log.info("The lake issued a token for %s", username)
        return {
            "name": username,
            "auth_state": {
                "access_token": token,
                "token_type": "rucio",
                "issued_at": int(time.time()),
                "expires_at": response.headers.get("X-Rucio-Auth-Token-Expires"),
            },
        }
