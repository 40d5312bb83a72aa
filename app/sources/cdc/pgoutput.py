"""The pgoutput logical replication protocol, version 1: one message from its bytes.

pgoutput is PostgreSQL's built-in output plugin (the one its own logical replication uses):
it needs no extension on the source, filters by publication on the server, and sends each
value as the type's text output, which the reader turns into what a full load stores.
Message formats: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# pgoutput timestamps count microseconds from 2000-01-01 UTC.
_POSTGRES_EPOCH = 946_684_800


class _Unchanged:
    """A TOASTed value the update did not change: the message does not carry it."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = _Unchanged()


@dataclass(frozen=True)
class Begin:
    final_lsn: int
    committed_at: float
    xid: int


@dataclass(frozen=True)
class Commit:
    commit_lsn: int
    end_lsn: int
    committed_at: float


@dataclass(frozen=True)
class RelationColumn:
    name: str
    type_oid: int
    type_modifier: int
    key: bool            # part of the replica identity


@dataclass(frozen=True)
class Relation:
    oid: int
    namespace: str
    name: str
    replica_identity: str   # d(efault) n(othing) f(ull) i(ndex)
    columns: tuple[RelationColumn, ...]


@dataclass(frozen=True)
class Insert:
    oid: int
    new: tuple


@dataclass(frozen=True)
class Update:
    oid: int
    old: tuple | None       # 'K': replica identity columns, others None; 'O': the whole row
    old_kind: str | None    # "K", "O" or None (no old tuple: the key did not change)
    new: tuple


@dataclass(frozen=True)
class Delete:
    oid: int
    old: tuple
    old_kind: str


@dataclass(frozen=True)
class Truncate:
    oids: tuple[int, ...]
    cascade: bool
    restart_identity: bool


class ProtocolError(Exception):
    """A message this parser does not understand."""


def lsn_text(lsn: int) -> str:
    """An LSN as PostgreSQL writes it: `16/B374D848`."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, slash, low = text.partition("/")
    if not slash:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(high, 16) << 32) | int(low, 16)


class _Reader:
    __slots__ = ("data", "at")

    def __init__(self, data: bytes):
        self.data = data
        self.at = 0

    def byte(self) -> str:
        value = self.data[self.at:self.at + 1].decode("ascii")
        self.at += 1
        return value

    def int8(self) -> int:
        value = self.data[self.at]
        self.at += 1
        return value

    def int16(self) -> int:
        (value,) = struct.unpack_from("!h", self.data, self.at)
        self.at += 2
        return value

    def int32(self) -> int:
        (value,) = struct.unpack_from("!i", self.data, self.at)
        self.at += 4
        return value

    def uint32(self) -> int:
        (value,) = struct.unpack_from("!I", self.data, self.at)
        self.at += 4
        return value

    def int64(self) -> int:
        (value,) = struct.unpack_from("!q", self.data, self.at)
        self.at += 8
        return value

    def string(self) -> str:
        end = self.data.index(b"\0", self.at)
        value = self.data[self.at:end].decode("utf-8")
        self.at = end + 1
        return value

    def timestamp(self) -> float:
        return self.int64() / 1_000_000 + _POSTGRES_EPOCH

    def tuple_data(self) -> tuple:
        values = []
        for _ in range(self.int16()):
            kind = self.byte()
            if kind == "n":
                values.append(None)
            elif kind == "u":
                values.append(UNCHANGED)
            elif kind in ("t", "b"):
                length = self.int32()
                raw = self.data[self.at:self.at + length]
                self.at += length
                values.append(raw.decode("utf-8") if kind == "t" else bytes(raw))
            else:
                raise ProtocolError(f"unknown tuple value kind {kind!r}")
        return tuple(values)


def parse(payload: bytes):
    """The message in `payload`, or None for the kinds a reader does not need (Type,
    Origin, logical decoding messages)."""
    reader = _Reader(bytes(payload))
    kind = reader.byte()
    if kind == "B":
        return Begin(final_lsn=reader.int64(), committed_at=reader.timestamp(),
                     xid=reader.uint32())
    if kind == "C":
        reader.int8()   # flags (unused)
        return Commit(commit_lsn=reader.int64(), end_lsn=reader.int64(),
                      committed_at=reader.timestamp())
    if kind == "R":
        oid = reader.uint32()
        namespace = reader.string()
        name = reader.string()
        identity = chr(reader.int8())
        columns = []
        for _ in range(reader.int16()):
            flags = reader.int8()
            columns.append(RelationColumn(name=reader.string(), type_oid=reader.uint32(),
                                          type_modifier=reader.int32(), key=bool(flags & 1)))
        return Relation(oid=oid, namespace=namespace, name=name, replica_identity=identity,
                        columns=tuple(columns))
    if kind == "I":
        oid = reader.uint32()
        reader.byte()   # 'N'
        return Insert(oid=oid, new=reader.tuple_data())
    if kind == "U":
        oid = reader.uint32()
        marker = reader.byte()
        old = old_kind = None
        if marker in ("K", "O"):
            old_kind = marker
            old = reader.tuple_data()
            marker = reader.byte()
        if marker != "N":
            raise ProtocolError(f"update without a new tuple (marker {marker!r})")
        return Update(oid=oid, old=old, old_kind=old_kind, new=reader.tuple_data())
    if kind == "D":
        oid = reader.uint32()
        old_kind = reader.byte()
        return Delete(oid=oid, old=reader.tuple_data(), old_kind=old_kind)
    if kind == "T":
        count = reader.int32()
        options = reader.int8()
        return Truncate(oids=tuple(reader.uint32() for _ in range(count)),
                        cascade=bool(options & 1), restart_identity=bool(options & 2))
    if kind in ("Y", "O", "M"):
        return None
    raise ProtocolError(f"unknown pgoutput message {kind!r}")
