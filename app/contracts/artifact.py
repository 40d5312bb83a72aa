"""The compiled schema artifact: what a build produces and what an instance serves.

A build introspects one source schema, applies the database's schema config
(`reflexdb.yaml`) and writes one `SchemaArtifact`. The instance process loads
it, snapshots exactly the tables and columns it lists, and answers queries
against it. Everything here is plain data, serialisable to JSON, so the
control plane can store it per build and Redeploy can reuse it unchanged.

Snapshot layout (shared by the loader and the query engine): one SQLite table
per `Table`, named `Table.name`, with one column per `Column` (hidden ones
included), named `Column.name`. Values are stored as: integer -> int;
float/decimal -> float; boolean -> 0/1; text -> str; date -> 'YYYY-MM-DD';
datetime -> ISO 8601 'YYYY-MM-DDTHH:MM:SS[.ffffff]' (UTC with a trailing 'Z'
when the source value carries a zone); time -> 'HH:MM:SS[.ffffff]';
json -> JSON text; binary -> bytes. The query engine turns them back on output
(boolean -> true/false, json -> parsed value, binary -> base64 string).

Names: `name` is always the name on the source (table or column); `field`
(for columns) and `alias` (for tables) are the names clients use in queries.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

ARTIFACT_VERSION = 1

# Logical column types: what the source type maps to in the snapshot and JSON.
COLUMN_TYPES = (
    "integer",   # any integer type            -> JSON number
    "float",     # float, double, real          -> JSON number
    "decimal",   # decimal / numeric            -> JSON number (stored as REAL)
    "boolean",   # bool, tinyint(1)             -> JSON true/false
    "text",      # char, varchar, text, enum... -> JSON string
    "date",      # date                         -> "YYYY-MM-DD"
    "datetime",  # datetime, timestamp          -> RFC 3339 string
    "time",      # time                         -> "HH:MM:SS"
    "json",      # json / jsonb                 -> JSON value
    "binary",    # blob, bytea                  -> base64 string
)


@dataclass(frozen=True)
class Column:
    name: str                 # column name on the source
    type: str                 # one of COLUMN_TYPES
    nullable: bool = True
    field: str = ""           # name exposed to queries (alias or name)
    note: str | None = None   # free text shown in the instance's openapi.json
    # Loaded into the snapshot because a key or relation needs it, but not
    # exposed to queries (the schema config's column allow-list left it out).
    hidden: bool = False

    def __post_init__(self):
        if not self.field:
            object.__setattr__(self, "field", self.name)


@dataclass(frozen=True)
class Table:
    name: str                                # table name on the source
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()        # source column names; may be empty
    alias: str = ""                          # name exposed to queries
    # Row filter applied when the snapshot is loaded, in the query language's
    # filter syntax over this table's *field* names (see app.query).
    where: str | None = None

    def __post_init__(self):
        if not self.alias:
            object.__setattr__(self, "alias", self.name)
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "primary_key", tuple(self.primary_key))

    def column(self, field_name: str) -> Column | None:
        """The exposed column called `field_name`, or None."""
        return next((column for column in self.columns
                     if column.field == field_name and not column.hidden), None)


@dataclass(frozen=True)
class Relation:
    """One navigable link between two tables, derived from a foreign key.

    A foreign key `posts.author_id -> users.id` gives two relations:
    forward  `posts.author`  (many=False: an object or null) and
    reverse  `users.posts`   (many=True: an array).
    """

    table: str                       # alias of the table the relation is on
    name: str                        # relation name on that table
    target: str                      # alias of the table it leads to
    columns: tuple[str, ...]         # source columns on `table`
    target_columns: tuple[str, ...]  # source columns on `target`
    many: bool

    def __post_init__(self):
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "target_columns", tuple(self.target_columns))


@dataclass(frozen=True)
class SchemaArtifact:
    backend: str                     # mysql | postgres
    schema: str                      # the source schema (database) name
    tables: tuple[Table, ...]
    relations: tuple[Relation, ...] = ()
    version: int = ARTIFACT_VERSION

    def __post_init__(self):
        object.__setattr__(self, "tables", tuple(self.tables))
        object.__setattr__(self, "relations", tuple(self.relations))

    def table(self, alias: str) -> Table | None:
        return next((table for table in self.tables if table.alias == alias), None)

    def relations_of(self, alias: str) -> tuple[Relation, ...]:
        return tuple(r for r in self.relations if r.table == alias)

    def relation(self, alias: str, name: str) -> Relation | None:
        for relation in self.relations:
            if relation.table == alias and relation.name == name:
                return relation
        return None

    # -- serialisation -----------------------------------------------------

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "SchemaArtifact":
        if data.get("version") != ARTIFACT_VERSION:
            raise ValueError(f"unsupported artifact version {data.get('version')!r}")
        tables = tuple(
            Table(
                name=t["name"],
                alias=t.get("alias", ""),
                columns=tuple(Column(**c) for c in t["columns"]),
                primary_key=tuple(t.get("primary_key", ())),
                where=t.get("where"),
            )
            for t in data["tables"]
        )
        relations = tuple(Relation(**r) for r in data.get("relations", ()))
        return cls(backend=data["backend"], schema=data["schema"], tables=tables,
                   relations=relations, version=data["version"])

    @classmethod
    def from_json(cls, text: str) -> "SchemaArtifact":
        return cls.from_dict(json.loads(text))


__all__ = ["ARTIFACT_VERSION", "COLUMN_TYPES", "Column", "Table", "Relation",
           "SchemaArtifact"]
