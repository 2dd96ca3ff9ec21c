"""A Rucio transfertool that copies through the storage's own protocols, as FTS does.

FTS copies with gfal2; so does this transfertool, through gfal2's ``gfal-copy`` command
(Debian ``gfal2-util-scripts``): a davs→davs third-party copy (the destination pulls
from the source over HTTPS) or root→root, with WLCG bearer tokens, and the adler32 of
the catalogue checked at the source and the destination by gfal2
(``-K ADLER32:value``). Failures end with the storage's own reason (``HTTP 403 :
Permission refused``, ``HTTP 404``, ``Connection refused``...).

Tokens: the conveyor of a production lake asks its identity provider for them
(``rucio.core.oidc.request_token``, when both storage elements have ``oidc_support``);
the embedded conveyor is a service of the lake itself and signs one per copy with the
lake's issuer key (:mod:`escape_portal.embedded.tokens`), for the audiences of both
storage elements and the scopes ``storage.read:/ storage.modify:/``, valid ten minutes.

Registered under the name ``gfal`` (:func:`register`), beside ``posix``; jobs are run
and their outcomes kept by :mod:`escape_portal.embedded.transfertool`'s job loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rucio.transfertool.transfertool import TransferToolBuilder

from escape_portal.embedded import transfertool as posix
from escape_portal.embedded.gfal import GridCopyError, copy, copy_token
from escape_portal.embedded.layout import LakePaths

EXTERNAL_NAME = "gfal"


def _lake_paths() -> LakePaths:
    return LakePaths(posix.transfer_dir().parent)


def _copy_grid(item: Mapping[str, Any]) -> str | None:
    """Copy one item with gfal2; the reason of a failure, else ``None``."""
    paths = _lake_paths()
    try:
        copy(
            item["source"],
            item["destination"],
            token=copy_token(paths, item["source"], item["destination"]),
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
        items = [
            {
                "request_id": t.rws.request_id,
                "source": t.source_url(t.src),
                "destination": t.dest_url,
                "bytes": t.rws.byte_count,
                "adler32": t.rws.adler32,
            }
            for t in transfers
        ]
        return posix.queue_job(items, _copy_grid)


def register() -> None:
    """Make Rucio's conveyor know this transfertool by its name ``gfal``."""
    from rucio.core import transfer

    transfer.TRANSFERTOOL_CLASSES_BY_NAME[EXTERNAL_NAME] = GridTransfertool
