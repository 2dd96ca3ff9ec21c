"""Permissions of the embedded lake: Rucio's generic ones, and replicas where you have quota.

``add_replicas`` is allowed, beyond what :mod:`rucio.core.permission.generic` allows, to
an account with a local quota (account limit above zero) at the storage element. New
file DIDs are still checked by ``add_dids`` (the account must own the scope), rules by
``add_rule`` and quotas by the rule engine, as generically.
"""

from __future__ import annotations

from typing import Any

from rucio.core.permission import generic


def _has_quota_at(issuer: Any, rse_id: Any, session: Any) -> bool:
    from rucio.core.account_limit import get_local_account_limit

    if rse_id is None:
        return False
    limit = get_local_account_limit(account=issuer, session=session, rse_ids=str(rse_id))
    return limit is not None and float(limit) > 0


def has_permission(issuer: Any, action: str, kwargs: dict[str, Any], session: Any) -> Any:
    """Rucio's generic answer, or yes to ``add_replicas`` where ``issuer`` has a quota."""
    allowed = generic.has_permission(issuer, action, kwargs, session=session)
    if action == "add_replicas" and not allowed:
        return _has_quota_at(issuer, kwargs.get("rse_id"), session)
    return allowed
