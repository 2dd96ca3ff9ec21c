"""The embedded lake's Rucio policy package: Rucio's generic policy, plus user uploads.

Rucio's generic permission policy lets only root and admin accounts register replicas,
except on storage elements whose names end in ``SCRATCHDISK``, ``USERDISK``,
``LOCALGROUPDISK`` or ``MOCK`` (ATLAS's conventions). The ESCAPE lake lets researchers
upload into their own scopes on the storage they have a quota at; this package keeps
every generic rule and allows that (see :mod:`.permission`). Rucio loads it through
``[policy] package`` of the lake's ``rucio.cfg``.
"""

SUPPORTED_VERSION = [">=35"]
