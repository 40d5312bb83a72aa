"""Compile an introspected source schema and a schema config into an artifact.

Naming rules (stable: they do not depend on which relations a config filters out):

- Forward relation (the foreign key is on this table): the key column without a
  trailing `_id` (`author_id` -> `author`); for a composite key, or a column
  without `_id`, the target table's alias. On a clash with a field or another
  relation of the table: `<name>_rel`, then `<name>_rel2`, `<name>_rel3`...
- Reverse relation (on the referenced table): the referencing table's alias.
  When that table has several keys to this one, or the alias clashes, it is
  `<alias>_by_<forward name>` (`messages_by_sender`); still clashing: `_rel`...
- Relations are named in table order, then constraint-name order.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from app.contracts import artifact
from app.contracts.messages import field_path
from app.contracts.schema_config import ALIAS_PATTERN, ConfigError, load_config
from app.sources.base import ForeignKey, SourceSchema, SourceTable

_IDENTIFIER = re.compile(ALIAS_PATTERN)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
# How alike a name must be to be suggested (difflib's ratio): `titel` for `title` is 0.8.
_CLOSE_ENOUGH = 0.7


@dataclass
class CompileResult:
    artifact: artifact.SchemaArtifact
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Plan:
    """One included table while it is being compiled."""

    index: int | None          # position in the config's `tables`, None without one
    entry: dict
    source: SourceTable
    alias: str
    exposed: list[str]         # exposed source columns, ordinal order
    fields: dict[str, str]     # exposed source column -> field name
    needed: set[str] = field(default_factory=set)   # hidden columns to load
    forward: list[tuple[str, ForeignKey]] = field(default_factory=list)
    reverse: list[tuple[str, _Plan, ForeignKey]] = field(default_factory=list)

    def path(self, *parts) -> str:
        entry = ("tables", self.index) if self.index is not None else ()
        return field_path(*entry, *parts)


def compile_artifact(source_schema: SourceSchema, config: dict | str | None = None
                     ) -> artifact.SchemaArtifact:
    """The artifact for `source_schema` under `config` (None = expose everything)."""
    return compile_schema(source_schema, config).artifact


def compile_schema(source_schema: SourceSchema, config: dict | str | None = None
                   ) -> CompileResult:
    """Like compile_artifact, plus the warnings worth showing in the build log."""
    config = load_config(config) if config is not None else {"version": 1}
    warnings: list[str] = []
    plans = _plan_tables(source_schema, config, warnings)
    by_name = {plan.source.name: plan for plan in plans}
    _name_relations(plans, by_name, warnings)
    relations = _filter_relations(plans)
    wheres = _plan_where(plans, config, warnings)
    tables = tuple(_table(plan, wheres.get(plan.source.name)) for plan in plans)
    for plan in plans:
        if not plan.source.primary_key:
            warnings.append(f"table {plan.source.name!r} has no primary key: rows come in "
                            f"load order")
        _check_names(plan, warnings)
    if not plans:
        warnings.append(f"schema {source_schema.schema!r} has no tables")
    return CompileResult(
        artifact=artifact.SchemaArtifact(backend=source_schema.backend,
                                         schema=source_schema.schema, tables=tables,
                                         relations=tuple(relations)),
        warnings=warnings)


# -- tables and columns ----------------------------------------------------------

def _plan_tables(schema: SourceSchema, config: dict, warnings: list[str]) -> list[_Plan]:
    if "tables" in config:
        entries = list(enumerate(config["tables"]))
    else:
        entries = [(None, {"name": table.name}) for table in schema.tables]
    plans: list[_Plan] = []
    seen_names: dict[str, _Plan] = {}
    seen_aliases: dict[str, _Plan] = {}
    for index, entry in entries:
        name = entry["name"]
        source = schema.table(name)
        probe = _Plan(index, entry, source, "", [], {})
        if source is None:
            hint = _did_you_mean(name, [t.name for t in schema.tables])
            raise ConfigError(probe.path("name"), f"table {name!r} does not exist in schema "
                                                  f"{schema.schema!r}{hint}")
        if name in seen_names:
            raise ConfigError(probe.path("name"), f"table {name!r} is listed twice (first at "
                                                  f"{seen_names[name].path()})")
        alias = entry.get("alias") or name
        if alias in seen_aliases:
            other = seen_aliases[alias]
            raise ConfigError(probe.path("alias" if "alias" in entry else "name"),
                              f"table name {alias!r} is already used by table "
                              f"{other.source.name!r}: give one of them another alias")
        plan = _plan_columns(_Plan(index, entry, source, alias, [], {}))
        plan.needed.update(source.primary_key)
        seen_names[name] = seen_aliases[alias] = plan
        plans.append(plan)
    return plans


def _plan_columns(plan: _Plan) -> _Plan:
    source, entry = plan.source, plan.entry
    names = source.column_names
    allowed = entry.get("columns")
    for position, column in enumerate(allowed or ()):
        if column not in names:
            hint = _did_you_mean(column, names)
            raise ConfigError(plan.path("columns", position),
                              f"column {column!r} does not exist on table {source.name!r}{hint}")
    plan.exposed = [name for name in names if allowed is None or name in allowed]
    aliases = entry.get("field_aliases", {})
    for key in ("field_aliases", "field_notes"):
        for column in entry.get(key, {}):
            if column not in names:
                hint = _did_you_mean(column, names)
                raise ConfigError(plan.path(key, column), f"column {column!r} does not exist "
                                                          f"on table {source.name!r}{hint}")
            if column not in plan.exposed:
                raise ConfigError(plan.path(key, column),
                                  f"column {column!r} is not in the table's columns allow-list")
    owners: dict[str, str] = {}
    for column in plan.exposed:
        name = aliases.get(column, column)
        if name in owners:
            blame = column if column in aliases else owners[name]
            raise ConfigError(plan.path("field_aliases", blame),
                              f"field name {name!r} is used twice on table {source.name!r} "
                              f"(columns {owners[name]!r} and {column!r})")
        owners[name] = column
        plan.fields[column] = name
    return plan


def _table(plan: _Plan, where: str | None) -> artifact.Table:
    notes = plan.entry.get("field_notes", {})
    fields = set(plan.fields.values())
    columns = []
    for column in plan.source.columns:
        if column.name in plan.fields:
            columns.append(artifact.Column(
                name=column.name, type=column.type, nullable=column.nullable,
                field=plan.fields[column.name], note=notes.get(column.name)))
        elif column.name in plan.needed:
            if column.name in fields:
                owner = next(c for c, f in plan.fields.items() if f == column.name)
                raise ConfigError(plan.path("field_aliases", owner),
                                  f"field name {column.name!r} is also the name of key column "
                                  f"{column.name!r}, which is loaded (hidden) for keys and "
                                  f"relations: choose another alias")
            columns.append(artifact.Column(name=column.name, type=column.type,
                                           nullable=column.nullable, hidden=True))
    return artifact.Table(name=plan.source.name, alias=plan.alias, columns=tuple(columns),
                          primary_key=plan.source.primary_key, where=where)


# -- relations -----------------------------------------------------------------------

def _unique(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    candidate, number = f"{base}_rel", 2
    while candidate in taken:
        candidate, number = f"{base}_rel{number}", number + 1
    return candidate


def _name_relations(plans: list[_Plan], by_name: dict[str, _Plan], warnings: list[str]) -> None:
    for plan in plans:
        taken = set(plan.fields.values())
        for key in plan.source.foreign_keys:
            target = by_name.get(key.target_table)
            if target is None:
                warnings.append(f"foreign key {plan.source.name}({', '.join(key.columns)}) -> "
                                f"{key.target_table} gives no relation: table "
                                f"{key.target_table!r} is not included")
                continue
            column = key.columns[0]
            if len(key.columns) == 1 and len(column) > 3 and column.lower().endswith("_id"):
                base = column[:-3]
            else:
                base = target.alias
            name = _unique(base, taken)
            taken.add(name)
            plan.forward.append((name, key))
    for target in plans:
        incoming = [(plan, name, key) for plan in plans for name, key in plan.forward
                    if key.target_table == target.source.name]
        taken = set(target.fields.values()) | {name for name, _ in target.forward}
        for plan, forward_name, key in incoming:
            by_form = f"{plan.alias}_by_{forward_name}"
            several = sum(1 for other, _, _ in incoming if other is plan) > 1
            base = by_form if several or plan.alias in taken else plan.alias
            name = _unique(base, taken)
            taken.add(name)
            target.reverse.append((name, plan, key))


def _filter_relations(plans: list[_Plan]) -> list[artifact.Relation]:
    by_name = {plan.source.name: plan for plan in plans}
    kept_forward: dict[int, set[str]] = {}
    kept_reverse: dict[int, set[str]] = {}
    for plan in plans:
        forward_names = [name for name, _ in plan.forward]
        rules = plan.entry.get("relations", {})
        for mode in ("include", "exclude"):
            for position, name in enumerate(rules.get(mode, ())):
                if name not in forward_names:
                    raise ConfigError(plan.path("relations", mode, position),
                                      f"table {plan.source.name!r} has no relation {name!r}; "
                                      f"its relations: {_listing(forward_names)}")
        if "include" in rules:
            kept_forward[id(plan)] = set(rules["include"])
        else:
            kept_forward[id(plan)] = set(forward_names) - set(rules.get("exclude", ()))
        reverse_names = [name for name, _, _ in plan.reverse]
        excluded = plan.entry.get("reverse_relations", {}).get("exclude", ())
        for position, name in enumerate(excluded):
            if name not in reverse_names:
                raise ConfigError(plan.path("reverse_relations", "exclude", position),
                                  f"table {plan.source.name!r} has no reverse relation "
                                  f"{name!r}; its reverse relations: "
                                  f"{_listing(reverse_names)}")
        kept_reverse[id(plan)] = set(reverse_names) - set(excluded)
    relations = []
    for plan in plans:
        for name, key in plan.forward:
            if name in kept_forward[id(plan)]:
                target = by_name[key.target_table]
                relations.append(_relation(plan, name, target, key, many=False))
        for name, source, key in plan.reverse:
            if name in kept_reverse[id(plan)]:
                relations.append(_relation(plan, name, source, key, many=True))
    return relations


def _relation(plan: _Plan, name: str, other: _Plan, key: ForeignKey, *, many: bool
              ) -> artifact.Relation:
    # Both ends of a kept relation must be loaded, exposed or not.
    if many:    # `plan` is the referenced table, `other` holds the key
        plan.needed.update(key.target_columns)
        other.needed.update(key.columns)
        return artifact.Relation(table=plan.alias, name=name, target=other.alias,
                                 columns=key.target_columns, target_columns=key.columns,
                                 many=True)
    plan.needed.update(key.columns)
    other.needed.update(key.target_columns)
    return artifact.Relation(table=plan.alias, name=name, target=other.alias,
                             columns=key.columns, target_columns=key.target_columns, many=False)


# -- where -----------------------------------------------------------------------------

def _plan_where(plans: list[_Plan], config: dict, warnings: list[str]) -> dict[str, str]:
    global_where = config.get("where")
    needs = config.get("where_columns", ())
    wheres: dict[str, str] = {}
    skipped = []
    for plan in plans:
        parts = []
        names = set(plan.source.column_names)
        if global_where and all(column in names for column in needs):
            for column in needs:
                if plan.fields.get(column, column) != column:
                    raise ConfigError(plan.path("field_aliases", column),
                                      f"column {column!r} is renamed, but the global where "
                                      f"uses it by its name: remove the alias")
            plan.needed.update(needs)
            parts.append(global_where.strip())
        elif global_where:
            skipped.append(plan.source.name)
        if plan.entry.get("where"):
            where = plan.entry["where"].strip()
            # A filter may name columns outside the allow-list: load them hidden.
            words = set(_WORD.findall(_STRING.sub(" ", where)))
            plan.needed.update(words & (names - set(plan.fields)))
            parts.append(where)
        if len(parts) == 1:
            wheres[plan.source.name] = parts[0]
        elif parts:
            wheres[plan.source.name] = " AND ".join(f"({part})" for part in parts)
    if skipped:
        warnings.append(f"the global where is not applied to {len(skipped)} table(s) without "
                        f"column(s) {', '.join(needs)}: {_listing(skipped)}")
    return wheres


# -- messages --------------------------------------------------------------------------

def _check_names(plan: _Plan, warnings: list[str]) -> None:
    if not _IDENTIFIER.match(plan.alias):
        warnings.append(f"table {plan.source.name!r} is not a valid query name: give it an "
                        f"alias in the schema config")
    for column, name in plan.fields.items():
        if not _IDENTIFIER.match(name):
            warnings.append(f"column {plan.source.name}.{column!r} is not a valid query name: "
                            f"give it a field alias in the schema config")


def _listing(names) -> str:
    names = list(names)
    if not names:
        return "none"
    shown = ", ".join(names[:20])
    return shown + (f" and {len(names) - 20} more" if len(names) > 20 else "")


def _did_you_mean(name: str, candidates) -> str:
    """A hint naming the candidate `name` was probably meant to be: other case or a typo."""
    by_folded: dict[str, str] = {}
    for candidate in candidates:
        by_folded.setdefault(candidate.casefold(), candidate)
    close = difflib.get_close_matches(name.casefold(), by_folded, n=1, cutoff=_CLOSE_ENOUGH)
    return f" (did you mean {by_folded[close[0]]!r}?)" if close else ""
