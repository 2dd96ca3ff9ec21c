"""A Rucio transfertool that copies through the storage's own protocols, as FTS does.

FTS copies with gfal2; so does this transfertool (:mod:`escape_portal.embedded.gfal`): a
davs→davs third-party copy (the destination pulls from the source over HTTPS) or
root→root, with WLCG bearer tokens, and the adler32 of the catalogue checked at the
source and the destination by gfal2. Failures end with the storage's own reason
(``HTTP 403 : Permission refused``, ``HTTP 404``, ``Connection refused``...).

Tokens are the ones Rucio's conveyor gives FTS (``rucio.transfertool.fts3``): when both
storage elements say ``oidc_support``, one token per end, each requested from the lake's
identity provider by Rucio itself (:func:`rucio.core.oidc.request_token`: client
credentials of ``[oidc] admin_issuer``'s client in the ``idpsecrets`` file, cached in
memcached while valid), for

- the source: scope ``determine_scope_for_rse(src, ['storage.read'], ['offline_access'])``;
- the destination: scope ``determine_scope_for_rse(dst, ['storage.modify',
  'storage.read'], ['offline_access'])``;

and the audience of each storage element (:func:`audience_for_rse`). Tokens are
requested when a copy starts, not when the job is queued, so a long queue does not
outlive them; the job's files on disk hold the audiences and scopes, never a token.

Registered under the name ``gfal`` (:func:`register`), beside ``posix``; jobs are run and
their outcomes kept by :mod:`escape_portal.embedded.transfertool`'s job loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rucio.transfertool.transfertool import TransferToolBuilder

from escape_portal.embedded import transfertool as posix
from escape_portal.embedded.gfal import GridCopyError, copy
from escape_portal.embedded.layout import LakePaths

EXTERNAL_NAME = "gfal"
#: The RSE attribute naming the audience its storage checks (see :func:`audience_for_rse`).
AUDIENCE_ATTRIBUTE = "oidc_audience"


def audience_for_rse(rse_id: str, attributes: Mapping[str, Any] | None = None) -> str:
    """The ``aud`` of tokens for storage element ``rse_id`` (``attributes``: its own, if read).

    The RSE attribute ``oidc_audience`` when it has one, else Rucio's own derivation
    (:func:`rucio.core.rse.determine_audience_for_rse`: the davs host names). Rucio's
    derivation gives one audience per host, ``localhost`` for every storage element of the
    embedded lake, so a token would be good at every storage and the lake's storage, which
    each check their own ``https://localhost/rse/<RSE>``, would refuse it. Preferring an
    explicit attribute keeps one audience per storage element here, and leaves an RSE
    without the attribute (a production site with its own host) exactly as Rucio treats it.
    """
    from rucio.core.rse import determine_audience_for_rse, list_rse_attributes

    if attributes is None:
        attributes = list_rse_attributes(rse_id)
    configured = attributes.get(AUDIENCE_ATTRIBUTE)
    return str(configured) if configured else determine_audience_for_rse(rse_id)


def _uses_tokens(transfer: Any) -> bool:
    """Whether Rucio would give FTS tokens for ``transfer``: both ends say ``oidc_support``.

    FTS3's transfertool also requires davs; here root:// is token-checked by the same
    SciTokens plugin, so a root→root copy gets its tokens too.
    """
    from rucio.common.constants import RseAttr

    return all(
        end.rse.attributes.get(RseAttr.OIDC_SUPPORT) is True for end in (transfer.src, transfer.dst)
    )


def _token_requests(src: Any, dst: Any) -> dict[str, str]:
    """The audiences and scopes of the tokens for a copy between RSEs ``src`` and ``dst``.

    As FTS3's transfertool asks for them; ``src`` and ``dst`` are Rucio's ``RseData``.
    """
    from rucio.core.rse import determine_scope_for_rse

    return {
        "source_audience": audience_for_rse(src.id, src.attributes),
        "source_scope": determine_scope_for_rse(
            src.id, scopes=["storage.read"], extra_scopes=["offline_access"]
        ),
        "destination_audience": audience_for_rse(dst.id, dst.attributes),
        "destination_scope": determine_scope_for_rse(
            dst.id, scopes=["storage.modify", "storage.read"], extra_scopes=["offline_access"]
        ),
    }


def _token(audience: str | None, scope: str | None) -> str | None:
    """A token from the provider, through Rucio; ``None`` when no token is wanted.

    Raises
    ------
    GridCopyError
        When a token was wanted and the provider gave none.
    """
    if audience is None or scope is None:
        return None
    from rucio.core.oidc import request_token

    token: str | None = request_token(audience, scope)
    if token is None:
        raise GridCopyError(
            f"no token for {audience} from the identity provider (scope {scope!r}); "
            "see the idp's and the daemons' logs"
        )
    return token


def _copy_grid(item: Mapping[str, Any]) -> str | None:
    """Copy one item with gfal2, a token per end; the reason of a failure, else ``None``."""
    paths = LakePaths(posix.transfer_dir().parent)
    try:
        copy(
            item["source"],
            item["destination"],
            source_token=_token(item.get("source_audience"), item.get("source_scope")),
            destination_token=_token(
                item.get("destination_audience"), item.get("destination_scope")
            ),
            adler32=item["adler32"],
            cert_dir=paths.pki / "certificates",
        )
    except (GridCopyError, OSError, ValueError, KeyError) as exc:
        return str(exc)
    return None


class GridTransfertool(posix.PosixTransfertool):
    """Copies davs:// (or root://) replicas between the lake's XRootD storage elements."""

    external_name = EXTERNAL_NAME
    supported_schemes = {"davs", "root"}

    @classmethod
    def submission_builder_for_path(
        cls, transfer_path: list[Any], logger: Any = None
    ) -> tuple[list[Any], TransferToolBuilder | None]:
        """Take a path's first hop when both ends are davs or root (else leave it to posix)."""
        hop = transfer_path[0]
        if any(end.scheme not in cls.supported_schemes for end in (*hop.sources, hop.dst)):
            return [], None
        return transfer_path[:1], TransferToolBuilder(cls, external_host=EXTERNAL_NAME)

    def submit(
        self, transfers: Iterable[Any], job_params: dict[str, str], timeout: int | None = None
    ) -> str:
        """Queue the copies of ``transfers`` and return the job id."""
        tokens: dict[tuple[str, str], dict[str, str]] = {}  # per pair of storage elements
        items = []
        for t in transfers:
            item = {
                "request_id": t.rws.request_id,
                "source": t.source_url(t.src),
                "destination": t.dest_url,
                "bytes": t.rws.byte_count,
                "adler32": t.rws.adler32,
            }
            if _uses_tokens(t):
                pair = (t.src.rse.id, t.dst.rse.id)
                if pair not in tokens:
                    tokens[pair] = _token_requests(t.src.rse, t.dst.rse)
                item.update(tokens[pair])
            items.append(item)
        return posix.queue_job(items, _copy_grid)


def register() -> None:
    """Make Rucio's conveyor know this transfertool by its name ``gfal``."""
    from rucio.core import transfer

    transfer.TRANSFERTOOL_CLASSES_BY_NAME[EXTERNAL_NAME] = GridTransfertool
