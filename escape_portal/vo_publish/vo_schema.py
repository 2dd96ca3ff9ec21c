"""The tables of the lake's VO publication, and the SQLite database holding them.

``ivoa.obscore`` (ObsCore 1.1 plus ``lake_did`` and ``lake_dataset``), ``tap_schema.*``
(TAP 1.1) and the RegTAP 1.1 ``rr.*`` tables. Each ADQL schema is an attached in-memory
SQLite database of the same name, so that ``rr.resource`` and ``rr.res_subject.ivoid``
mean in SQLite what they mean in ADQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from escape_portal.vo_publish.votable import Field


@dataclass(frozen=True)
class Table:
    """A published table: ``schema.name``, description and columns."""

    schema: str
    name: str
    description: str
    columns: tuple[Field, ...]
    utype: str | None = None

    @property
    def qualified(self) -> str:
        """``schema.name``."""
        return f"{self.schema}.{self.name}"


def _f(
    name: str,
    datatype: str,
    ucd: str | None,
    unit: str | None,
    utype: str | None,
    description: str,
    *,
    principal: bool = True,
    std: bool = True,
    xtype: str | None = None,
) -> Field:
    return Field(
        name,
        datatype,
        unit=unit,
        ucd=ucd,
        utype=utype,
        description=description,
        principal=principal,
        std=std,
        xtype=xtype,
    )


_OC = "obscore:"
OBSCORE = Table(
    "ivoa",
    "obscore",
    "ObsCore 1.1 records of the files of the ESCAPE data lake that carry ObsCore metadata",
    (
        _f(
            "dataproduct_type",
            "char",
            "meta.code.class",
            None,
            _OC + "ObsDataset.dataProductType",
            "Data product type (image, cube, event, ...)",
        ),
        _f(
            "calib_level",
            "int",
            "meta.code;obs.calib",
            None,
            _OC + "ObsDataset.calibLevel",
            "Calibration level (0 raw .. 4 analysis product)",
        ),
        _f(
            "obs_collection",
            "char",
            "meta.id",
            None,
            _OC + "DataID.Collection",
            "Collection the data belongs to",
        ),
        _f(
            "obs_id",
            "char",
            "meta.id",
            None,
            _OC + "DataID.observationID",
            "Observation identifier",
        ),
        _f(
            "obs_publisher_did",
            "char",
            "meta.ref.ivoid",
            None,
            _OC + "Curation.PublisherDID",
            "Publisher's identifier: ivo://escape.eu/lake?SCOPE:NAME",
        ),
        _f(
            "access_url",
            "char",
            "meta.ref.url",
            None,
            _OC + "Access.Reference",
            "DataLink document of the file (its replicas)",
        ),
        _f(
            "access_format",
            "char",
            "meta.code.mime",
            None,
            _OC + "Access.Format",
            "Format of what access_url returns",
        ),
        _f(
            "access_estsize",
            "long",
            "phys.size;meta.file",
            "kbyte",
            _OC + "Access.Size",
            "Size of the file",
        ),
        _f("target_name", "char", "meta.id;src", None, _OC + "Target.Name", "Name of the target"),
        _f(
            "s_ra",
            "double",
            "pos.eq.ra",
            "deg",
            _OC + "Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C1",
            "Right ascension (ICRS) of the centre",
        ),
        _f(
            "s_dec",
            "double",
            "pos.eq.dec",
            "deg",
            _OC + "Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C2",
            "Declination (ICRS) of the centre",
        ),
        _f(
            "s_fov",
            "double",
            "phys.angSize;instr.fov",
            "deg",
            _OC + "Char.SpatialAxis.Coverage.Bounds.Extent.diameter",
            "Diameter of the field of view",
        ),
        _f(
            "s_region",
            "char",
            "pos.outline;obs.field",
            None,
            _OC + "Char.SpatialAxis.Coverage.Support.Area",
            "Sky region covered (STC-S)",
        ),
        _f(
            "s_resolution",
            "double",
            "pos.angResolution",
            "arcsec",
            _OC + "Char.SpatialAxis.Resolution.Refval.value",
            "Spatial resolution",
        ),
        _f(
            "t_min",
            "double",
            "time.start;obs.exposure",
            "d",
            _OC + "Char.TimeAxis.Coverage.Bounds.Limits.StartTime",
            "Start time (MJD)",
        ),
        _f(
            "t_max",
            "double",
            "time.end;obs.exposure",
            "d",
            _OC + "Char.TimeAxis.Coverage.Bounds.Limits.StopTime",
            "Stop time (MJD)",
        ),
        _f(
            "t_exptime",
            "double",
            "time.duration;obs.exposure",
            "s",
            _OC + "Char.TimeAxis.Coverage.Support.Extent",
            "Exposure time",
        ),
        _f(
            "t_resolution",
            "double",
            "time.resolution",
            "s",
            _OC + "Char.TimeAxis.Resolution.Refval.value",
            "Time resolution",
        ),
        _f(
            "em_min",
            "double",
            "em.wl;stat.min",
            "m",
            _OC + "Char.SpectralAxis.Coverage.Bounds.Limits.LoLimit",
            "Shortest wavelength",
        ),
        _f(
            "em_max",
            "double",
            "em.wl;stat.max",
            "m",
            _OC + "Char.SpectralAxis.Coverage.Bounds.Limits.HiLimit",
            "Longest wavelength",
        ),
        _f(
            "em_res_power",
            "double",
            "spect.resolution",
            None,
            _OC + "Char.SpectralAxis.Resolution.ResolPower.refVal",
            "Spectral resolving power",
        ),
        _f(
            "o_ucd",
            "char",
            "meta.ucd",
            None,
            _OC + "Char.ObservableAxis.ucd",
            "UCD of the observable",
        ),
        _f(
            "pol_states",
            "char",
            "meta.code;phys.polarization",
            None,
            _OC + "Char.PolarizationAxis.stateList",
            "Polarization states",
        ),
        _f(
            "facility_name",
            "char",
            "meta.id;instr.tel",
            None,
            _OC + "Provenance.ObsConfig.Facility.name",
            "Facility (observatory)",
        ),
        _f(
            "instrument_name",
            "char",
            "meta.id;instr",
            None,
            _OC + "Provenance.ObsConfig.Instrument.name",
            "Instrument",
        ),
        _f(
            "s_xel1",
            "long",
            "meta.number",
            None,
            _OC + "Char.SpatialAxis.numBins1",
            "Number of elements along the first spatial axis",
        ),
        _f(
            "s_xel2",
            "long",
            "meta.number",
            None,
            _OC + "Char.SpatialAxis.numBins2",
            "Number of elements along the second spatial axis",
        ),
        _f(
            "t_xel",
            "long",
            "meta.number",
            None,
            _OC + "Char.TimeAxis.numBins",
            "Number of elements along the time axis",
        ),
        _f(
            "em_xel",
            "long",
            "meta.number",
            None,
            _OC + "Char.SpectralAxis.numBins",
            "Number of elements along the spectral axis",
        ),
        _f(
            "pol_xel",
            "long",
            "meta.number",
            None,
            _OC + "Char.PolarizationAxis.numBins",
            "Number of polarization samples",
        ),
        _f(
            "lake_did",
            "char",
            "meta.id",
            None,
            None,
            "Data-lake DID of the file (SCOPE:NAME)",
            std=False,
        ),
        _f(
            "lake_dataset",
            "char",
            "meta.id",
            None,
            None,
            "Data-lake DID of the file's dataset (SCOPE:NAME)",
            std=False,
        ),
    ),
    utype="ivo://ivoa.net/std/obscore#table-1.1",
)


def _plain(table: str, columns: str, description: str, schema: str) -> Table:
    """A table of text/integer columns given as ``name:type`` words (type ``c``, ``i``)."""
    fields = []
    for word in columns.split():
        name, _, kind = word.partition(":")
        datatype = {"c": "char", "i": "int", "d": "double"}[kind or "c"]
        fields.append(Field(name, datatype, principal=True, std=True))
    return Table(schema, table, description, tuple(fields))


TAP_SCHEMA_TABLES = (
    _plain("schemas", "schema_name utype description schema_index:i", "Schemas", "tap_schema"),
    _plain(
        "tables",
        "schema_name table_name table_type utype description table_index:i",
        "Tables",
        "tap_schema",
    ),
    _plain(
        "columns",
        "table_name column_name utype ucd unit description datatype arraysize xtype size:i "
        "principal:i indexed:i std:i column_index:i",
        "Columns",
        "tap_schema",
    ),
    _plain(
        "keys", "key_id from_table target_table utype description", "Foreign keys", "tap_schema"
    ),
    _plain("key_columns", "key_id from_column target_column", "Key columns", "tap_schema"),
)

RR_TABLES = (
    _plain(
        "resource",
        "ivoid res_type created short_name res_title updated content_level res_description "
        "reference_url creator_seq content_type source_format source_value res_version "
        "region_of_regard:d waveband rights rights_uri harvested_from",
        "The resources (services, data collections) known to this registry",
        "rr",
    ),
    _plain(
        "capability",
        "ivoid cap_index:i cap_name cap_type cap_description standard_id",
        "Capabilities of the resources",
        "rr",
    ),
    _plain(
        "interface",
        "ivoid cap_index:i intf_index:i intf_type intf_role std_version query_type "
        "result_type wsdl_url url_use access_url mirror_url authenticated_only:i",
        "Interfaces of the capabilities",
        "rr",
    ),
    _plain("res_subject", "ivoid res_subject", "Subject keywords of the resources", "rr"),
    _plain(
        "res_detail", "ivoid cap_index:i detail_xpath detail_value", "Details of resources", "rr"
    ),
    _plain(
        "res_role",
        "ivoid role_name role_ivoid street_address email telephone logo base_role",
        "People and organisations of the resources",
        "rr",
    ),
    _plain(
        "res_schema",
        "ivoid schema_index:i schema_name schema_title schema_description schema_utype",
        "Schemas of the resources' table sets",
        "rr",
    ),
    _plain(
        "res_table",
        "ivoid schema_index:i table_index:i table_name table_title table_description "
        "table_utype table_type nrows:i",
        "Tables of the resources",
        "rr",
    ),
    _plain(
        "table_column",
        "ivoid table_index:i name ucd utype std:i datatype extended_schema extended_type "
        "arraysize delim type_system flag description unit",
        "Columns of the resources' tables",
        "rr",
    ),
    _plain(
        "relationship",
        "ivoid relationship_type related_id related_name",
        "Relationships between resources",
        "rr",
    ),
    _plain("validation", "ivoid cap_index:i validated_by val_level:i", "Validation", "rr"),
    _plain("alt_identifier", "ivoid alt_identifier", "Alternative identifiers (DOI...)", "rr"),
    _plain("res_date", "ivoid date_value value_role", "Dates of the resources", "rr"),
    _plain(
        "intf_param",
        "ivoid intf_index:i name ucd unit utype std:i extended_schema extended_type "
        "arraysize delim datatype description",
        "Parameters of the interfaces",
        "rr",
    ),
)

ALL_TABLES: tuple[Table, ...] = (OBSCORE, *TAP_SCHEMA_TABLES, *RR_TABLES)
TABLES: dict[str, Table] = {t.qualified: t for t in ALL_TABLES}
SCHEMAS = {
    "ivoa": "IVOA standard data models: ObsCore records of the lake",
    "tap_schema": "Description of the tables of this service (TAP 1.1)",
    "rr": "RegTAP 1.1: the registry records this service holds",
}
_SQL_TYPES = {"char": "TEXT", "int": "INTEGER", "long": "INTEGER", "double": "REAL"}


TAP_SCHEMA_KEYS = (
    ("tables_schema", "tap_schema.tables", "tap_schema.schemas", "schema_name", "schema_name"),
    ("columns_table", "tap_schema.columns", "tap_schema.tables", "table_name", "table_name"),
    ("keys_from", "tap_schema.keys", "tap_schema.tables", "from_table", "table_name"),
    ("keys_target", "tap_schema.keys", "tap_schema.tables", "target_table", "table_name"),
    ("key_columns_key", "tap_schema.key_columns", "tap_schema.keys", "key_id", "key_id"),
)
#: Column names that are ADQL reserved words, published delimited (TAP 1.1).
_RESERVED = {"size"}


def published_name(name: str) -> str:
    """A column's name as TAP_SCHEMA and VOSI publish it (``"size"`` delimited)."""
    return f'"{name}"' if name.lower() in _RESERVED else name


def tap_schema_rows() -> dict[str, list[dict[str, Any]]]:
    """The rows of the ``tap_schema`` tables, describing every published table."""
    rows: dict[str, list[dict[str, Any]]] = {
        "tap_schema.schemas": [
            {"schema_name": name, "utype": None, "description": text, "schema_index": i}
            for i, (name, text) in enumerate(SCHEMAS.items())
        ],
        "tap_schema.tables": [],
        "tap_schema.columns": [],
        "tap_schema.keys": [],
        "tap_schema.key_columns": [],
    }
    for key_id, source, target, from_column, target_column in TAP_SCHEMA_KEYS:
        rows["tap_schema.keys"].append(
            {"key_id": key_id, "from_table": source, "target_table": target}
        )
        rows["tap_schema.key_columns"].append(
            {"key_id": key_id, "from_column": from_column, "target_column": target_column}
        )
    for t_index, table in enumerate(ALL_TABLES):
        rows["tap_schema.tables"].append(
            {
                "schema_name": table.schema,
                "table_name": table.qualified,
                "table_type": "table",
                "utype": table.utype,
                "description": table.description,
                "table_index": t_index,
            }
        )
        for c_index, column in enumerate(table.columns):
            rows["tap_schema.columns"].append(
                {
                    "table_name": table.qualified,
                    "column_name": published_name(column.name),
                    "utype": column.utype,
                    "ucd": column.ucd,
                    "unit": column.unit,
                    "description": column.description,
                    "datatype": column.datatype,
                    "arraysize": column.arraysize,
                    "xtype": column.xtype,
                    "size": None,
                    "principal": int(column.principal),
                    "indexed": int(column.indexed),
                    "std": int(column.std),
                    "column_index": c_index,
                }
            )
    return rows


def build_database(rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> sqlite3.Connection:
    """An in-memory SQLite database with every published table, filled from ``rows``.

    Parameters
    ----------
    rows
        ``schema.table`` -> rows as mappings of column name to value (missing: NULL).

    """
    db = sqlite3.connect(":memory:", check_same_thread=False)
    for schema in SCHEMAS:
        db.execute("ATTACH DATABASE ':memory:' AS " + schema)
    for table in ALL_TABLES:
        columns = ", ".join(f'"{c.name}" {_SQL_TYPES[c.datatype]}' for c in table.columns)
        db.execute(f'CREATE TABLE {table.schema}."{table.name}" ({columns})')
        names = [c.name for c in table.columns]
        placeholders = ", ".join("?" for _ in names)
        db.executemany(
            f'INSERT INTO {table.schema}."{table.name}" VALUES ({placeholders})',
            [[row.get(n) for n in names] for row in rows.get(table.qualified, ())],
        )
    db.commit()
    db.execute("PRAGMA case_sensitive_like = ON")  # ADQL LIKE is case-sensitive
    db.execute("PRAGMA query_only = ON")
    return db
