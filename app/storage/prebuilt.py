"""SELECTs of a fixed shape whose SQL text is built once per database, then run with new parameters.

peewee builds a statement's SQL text from its query tree every time it runs: for the
statements every request sends (a key lookup, a caller's row by id), that took more CPU
than sending them (docs/control-plane-performance.md). A `PrebuiltSelect` builds its query
once per database with sample arguments, keeps the SQL text and where each argument went
among the parameters, and later sends that text with the new parameters; the rows come back
as model instances (or tuples) converted by the selected fields, as peewee's own would.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable

from peewee import Field, ForeignKeyField, Model, UUIDField

from app.storage.database import db


def _sample(field: Field):
    """A value for `field` that no other sample and no constant of a query can equal."""
    target = field.rel_field if isinstance(field, ForeignKeyField) else field
    return uuid.uuid4() if isinstance(target, UUIDField) else f"sample-{secrets.token_hex(8)}"


class PrebuiltSelect:
    """`build(*arguments)` returns a SELECT of `model`; `fields[i]` converts argument i (its column's field).

    The query's shape must not depend on the argument values (it may depend on the database,
    e.g. `FOR UPDATE` on PostgreSQL only): building it twice with other values must give the
    same SQL text. That is checked once per database, when the text is first built.
    """

    def __init__(self, model: type[Model], build: Callable, fields: tuple[Field, ...]):
        self.model = model
        self.build = build
        self.fields = fields
        # id(database) -> (database, SQL, parameters, (position, argument) slots, the selected
        # columns' converters and field names)
        self._built: dict[int, tuple] = {}
        self._lock = threading.Lock()

    def rows(self, *arguments) -> list:
        """The model instances the query returns for `arguments` (the query selects whole rows)."""
        sql, params, built = self._statement(arguments)
        names = built[5]
        rows = []
        for values in self._converted(built, db.execute_sql(sql, params).fetchall()):
            # As peewee's own cursor wrapper makes them: stored values, no defaults, nothing dirty.
            row = self.model(__no_default__=1, **dict(zip(names, values, strict=True)))
            row._dirty.clear()
            rows.append(row)
        return rows

    def first(self, *arguments):
        """The first row the query returns for `arguments`, or None."""
        rows = self.rows(*arguments)
        return rows[0] if rows else None

    def tuples(self, *arguments) -> list[tuple]:
        """The rows for `arguments` as tuples of the selected columns, each converted by its field."""
        sql, params, built = self._statement(arguments)
        return self._converted(built, db.execute_sql(sql, params).fetchall())

    async def tuples_from_loop(self, statements, *arguments) -> list[tuple]:
        """`tuples()`, sent from the event loop on one of `statements`' connections
        (app/storage/loop_statements.py; `Busy` when none is free)."""
        sql, params, built = self._statement(arguments)
        return self._converted(built, await statements.fetch(sql, params))

    @staticmethod
    def _converted(built, rows) -> list[tuple]:
        converters = built[4]
        return [tuple(value if convert is None else convert(value)
                      for convert, value in zip(converters, row, strict=True))
                for row in rows]

    def _statement(self, arguments) -> tuple[str, list, tuple]:
        database = db.obj
        built = self._built.get(id(database))
        if built is None or built[0] is not database:
            built = self._build_for(database)
        _, sql, params, slots, _, _ = built
        params = list(params)
        for position, argument in slots:
            params[position] = self.fields[argument].db_value(arguments[argument])
        return sql, params, built

    def _build_for(self, database):
        samples = [_sample(field) for field in self.fields]
        query = self.build(*samples)
        sql, params = query.sql()
        converted = [field.db_value(sample) for field, sample in zip(self.fields, samples, strict=True)]
        slots = tuple((position, converted.index(param)) for position, param in enumerate(params)
                      if param in converted)
        if sorted(argument for _, argument in slots) != list(range(len(self.fields))):
            raise ValueError(f"{self.model.__name__}: each argument must be one parameter of the query")
        again = [_sample(field) for field in self.fields]
        if self.build(*again).sql()[0] != sql:
            raise ValueError(f"{self.model.__name__}: the query's SQL changes with its arguments")
        columns = query.selected_columns
        converters = tuple(getattr(column, "python_value", None) for column in columns)
        names = tuple(getattr(column, "name", None) for column in columns)
        built = (database, sql, params, slots, converters, names)
        with self._lock:
            self._built[id(database)] = built
        return built


class PrebuiltInsert:
    """An INSERT of one whole row of `model`: the SQL text built once per database, the values
    converted by the model's fields, a missing field given its default (as peewee's insert does)."""

    def __init__(self, model: type[Model]):
        self.model = model
        self.fields = tuple(model._meta.sorted_fields)
        self._sql: dict[int, tuple[object, str]] = {}

    def execute(self, values: dict, *, at_commit: bool = False) -> None:
        """Insert the row `values` (field name -> value) holds; with `at_commit`, in the round trip
        of the transaction's COMMIT where the store can (`PooledStore.execute_at_commit`)."""
        database = db.obj
        built = self._sql.get(id(database))
        if built is None or built[0] is not database:
            # `database.quote` holds the identifier quotes ('""' here), as peewee's own SQL uses them.
            columns = ", ".join(field.column_name.join(database.quote) for field in self.fields)
            marks = ", ".join([database.param] * len(self.fields))
            built = (database, f"INSERT INTO {self.model._meta.table_name.join(database.quote)} "
                               f"({columns}) VALUES ({marks})")
            self._sql[id(database)] = built
        unknown = values.keys() - {field.name for field in self.fields}
        if unknown:
            raise ValueError(f"{self.model.__name__} has no field {sorted(unknown)[0]!r}")
        params = []
        for field in self.fields:
            if field.name in values:
                value = values[field.name]
            elif callable(field.default):
                value = field.default()
            else:
                value = field.default
            params.append(field.db_value(value))
        send = getattr(database, "execute_at_commit", None) if at_commit else None
        (send or database.execute_sql)(built[1], params)


class PrebuiltUpdate:
    """`UPDATE <table> SET <columns> WHERE id = <id>` of `model`: the SQL text built once per
    database and set of columns, the values converted by the model's fields."""

    def __init__(self, model: type[Model]):
        self.model = model
        self._sql: dict[tuple[int, tuple[str, ...]], tuple[object, str]] = {}

    def execute(self, row_id, changes: dict) -> int:
        """Set `changes` (field name -> value) on the row `row_id`; returns the rows changed (0 or 1)."""
        database = db.obj
        fields = self.model._meta.fields
        names = tuple(changes)
        unknown = [name for name in names if name not in fields]
        if unknown:
            raise ValueError(f"{self.model.__name__} has no field {unknown[0]!r}")
        key = (id(database), names)
        built = self._sql.get(key)
        if built is None or built[0] is not database:
            # `database.quote` holds the identifier quotes, as peewee's own SQL uses them.
            assignments = ", ".join(f"{fields[name].column_name.join(database.quote)} = {database.param}"
                                    for name in names)
            primary_key = self.model._meta.primary_key
            built = (database, f"UPDATE {self.model._meta.table_name.join(database.quote)} SET {assignments} "
                               f"WHERE {primary_key.column_name.join(database.quote)} = {database.param}")
            self._sql[key] = built
        params = [fields[name].db_value(value) for name, value in changes.items()]
        params.append(self.model._meta.primary_key.db_value(row_id))
        return db.execute_sql(built[1], params).rowcount
