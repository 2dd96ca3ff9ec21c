"""The lake published in the Virtual Observatory: ObsCore over TAP, SIA2, SCS, DataLink, RegTAP.

An operator feature that works over any Rucio instance the portal is configured for
(:mod:`escape_portal.config`); the embedded lake starts it for itself. The HTTP service is
:mod:`escape_portal.vo_publish.server`; :mod:`~escape_portal.vo_publish.obscore` builds
the records from DID metadata, :mod:`~escape_portal.vo_publish.adql` runs ADQL over them,
:mod:`~escape_portal.vo_publish.uws` holds the asynchronous jobs.
"""
