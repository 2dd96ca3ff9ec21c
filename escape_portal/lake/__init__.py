"""The lake library: a typed facade over rucio-clients (see :class:`Lake`)."""

from escape_portal.errors import (
    AuthenticationFailed,
    InvalidDID,
    InvalidRequest,
    LakeError,
    LakeUnavailable,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    TokenExpired,
)
from escape_portal.lake.client import Identity, Lake
from escape_portal.lake.models import (
    DID,
    DatasetReplica,
    DIDInfo,
    FileInfo,
    FileReplicas,
    Page,
    Rule,
    RuleProgress,
)

__all__ = [
    "DID",
    "AuthenticationFailed",
    "DIDInfo",
    "DatasetReplica",
    "FileInfo",
    "FileReplicas",
    "Identity",
    "InvalidDID",
    "InvalidRequest",
    "Lake",
    "LakeError",
    "LakeUnavailable",
    "NotFound",
    "Page",
    "PermissionDenied",
    "QuotaExceeded",
    "Rule",
    "RuleProgress",
    "TokenExpired",
]
