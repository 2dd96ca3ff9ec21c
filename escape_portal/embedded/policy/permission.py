"""Permissions of the embedded lake: Rucio's generic ones, plus what researchers need.

Beyond what :mod:`rucio.core.permission.generic` allows (root and admins almost only):

- ``add_replicas`` to an account with a local quota (account limit above zero) at the
  storage element: uploads into one's own scope. New file DIDs are still checked by
  ``add_dids`` (the account must own the scope), rules by ``add_rule`` and quotas by the
  rule engine, as generically.
- ``del_rule`` and ``update_rule`` to the rule's own account, for the options a rule's
  owner may change (its lifetime, comment, priority when asked near compute): a researcher
  cancels or extends their own make-available. Locking, moving a rule to another account
  or activity, approving and boosting stay with the admins, as in ATLAS's and CMS's
  policies.
"""

from __future__ import annotations

from typing import Any

from rucio.core.permission import generic

#: What a rule's owner may change with ``update_rule``.
OWNER_OPTIONS = frozenset({"lifetime", "comment", "priority"})


def _has_quota_at(issuer: Any, rse_id: Any, session: Any) -> bool:
    from rucio.core.account_limit import get_local_account_limit

    if rse_id is None:
        return False
    limit = get_local_account_limit(account=issuer, session=session, rse_ids=str(rse_id))
    return limit is not None and float(limit) > 0


def _owns_rule(issuer: Any, rule_id: Any, session: Any) -> bool:
    from rucio.common.exception import RuleNotFound
    from rucio.core.rule import get_rule

    try:
        rule = get_rule(rule_id=rule_id, session=session)
    except RuleNotFound:
        return False
    return bool(rule["account"] == issuer)


def has_permission(issuer: Any, action: str, kwargs: dict[str, Any], session: Any) -> Any:
    """Rucio's generic answer, or yes to what the module's docstring lists."""
    allowed = generic.has_permission(issuer, action, kwargs, session=session)
    if allowed:
        return allowed
    if action == "add_replicas":
        return _has_quota_at(issuer, kwargs.get("rse_id"), session)
    if action == "del_rule":
        return _owns_rule(issuer, kwargs.get("rule_id"), session)
    if action == "update_rule":
        options = set(kwargs.get("options") or {})
        return (
            bool(options)
            and options <= OWNER_OPTIONS
            and _owns_rule(issuer, kwargs.get("rule_id"), session)
        )
    return allowed
