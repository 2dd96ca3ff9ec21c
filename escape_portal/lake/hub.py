"""The session's token from JupyterHub's API, re-read while the session runs.

A single-user server started by a hub has ``JUPYTERHUB_API_URL`` and
``JUPYTERHUB_API_TOKEN``. When the server's token carries the scope to read its owner's
auth state (``admin:auth_state!user``, granted to the server's role), ``GET /user``
answers the user's ``auth_state``, where an OAuthenticator keeps the provider's access
token; the hub refreshes it (its authenticator's ``refresh_user``) when it is older than
``auth_refresh_age``. No sidecar and no token file are needed.
"""

from __future__ import annotations

import requests

from escape_portal.errors import AuthenticationFailed


def fetch_hub_token(api_url: str, api_token: str, timeout: float) -> str:
    """The access token in the hub user's auth state.

    Raises
    ------
    AuthenticationFailed
        If the hub cannot be reached, refuses, or keeps no token for the user.
    """
    try:
        response = requests.get(
            api_url.rstrip("/") + "/user",
            headers={"Authorization": f"token {api_token}"},
            timeout=timeout,
        )
    except requests.RequestException as exc:
        raise AuthenticationFailed(
            "JupyterHub could not be reached for your token.",
            "Try again in a moment; if it lasts, restart your server from the hub.",
        ) from exc
    if response.status_code != 200:
        raise AuthenticationFailed(
            f"JupyterHub refused to hand over your token (HTTP {response.status_code}).",
            "Ask the hub's operators to grant servers the scope admin:auth_state!user.",
        )
    state = response.json().get("auth_state") or {}
    token = state.get("access_token")
    if not token:
        raise AuthenticationFailed(
            "JupyterHub keeps no token for you (no access_token in your auth state).",
            "Log out of the hub and log in again.",
        )
    return str(token)
