"""The session's token from JupyterHub's API, re-read while the session runs.

A single-user server started by a hub has ``JUPYTERHUB_API_URL``, ``JUPYTERHUB_API_TOKEN``
and ``JUPYTERHUB_USER``. When the server's token carries the scope to read its owner's
auth state (``admin:auth_state!user``, granted to the hub's ``server`` role and, as a
token never has more than its owner, to the ``user`` role),
``GET /users/{name}`` answers the user's ``auth_state``, where an OAuthenticator keeps
the provider's access token. JupyterHub (checked in 6.1) fills ``auth_state`` in that
answer only: ``GET /user`` always answers ``null`` for it, whatever the token's scopes.

Every request the server's token makes is authenticated as the user, so the hub first
calls its authenticator's ``refresh_user`` when the auth state is older than
``auth_refresh_age`` (``BaseHandler.get_current_user`` -> ``refresh_auth``); the answer
carries the renewed token. No sidecar and no token file are needed.
"""

from __future__ import annotations

from urllib.parse import quote

import requests

from escape_portal.errors import AuthenticationFailed


def _get(url: str, api_token: str, timeout: float) -> requests.Response:
    try:
        return requests.get(url, headers={"Authorization": f"token {api_token}"}, timeout=timeout)
    except requests.RequestException as exc:
        raise AuthenticationFailed(
            "JupyterHub could not be reached for your token.",
            "Try again in a moment; if it lasts, restart your server from the hub.",
        ) from exc


def _refused(response: requests.Response) -> AuthenticationFailed:
    return AuthenticationFailed(
        f"JupyterHub refused to hand over your token (HTTP {response.status_code}).",
        "Ask the hub's operators to give the user and server roles admin:auth_state!user.",
    )


def fetch_hub_token(api_url: str, api_token: str, timeout: float, user: str | None = None) -> str:
    """The access token in the hub user's auth state, renewed by the hub when due.

    Parameters
    ----------
    api_url
        The hub's API (``$JUPYTERHUB_API_URL``).
    api_token
        The server's token (``$JUPYTERHUB_API_TOKEN``).
    timeout
        Seconds each request to the hub may take.
    user
        The hub user (``$JUPYTERHUB_USER``); if not given, one more request asks the hub
        whose token ``api_token`` is.

    Raises
    ------
    AuthenticationFailed
        If the hub cannot be reached, refuses, or keeps no token for the user.
    """
    base = api_url.rstrip("/")
    if not user:
        response = _get(f"{base}/user", api_token, timeout)
        if response.status_code != 200:
            raise _refused(response)
        user = str(response.json().get("name") or "")
    response = _get(f"{base}/users/{quote(user, safe='')}", api_token, timeout)
    if response.status_code != 200:
        raise _refused(response)
    model = response.json()
    if "auth_state" not in model:  # the hub leaves out what the token may not read
        raise _refused(response)
    token = (model.get("auth_state") or {}).get("access_token")
    if not token:
        raise AuthenticationFailed(
            "JupyterHub keeps no token for you (no access_token in your auth state).",
            "Log out of the hub and log in again.",
        )
    return str(token)
