"""Builds: turn a source schema plus its schema config into a compiled artifact.

`build_artifact` is what a Build runs; `compile_artifact` is the pure part.
"""

from __future__ import annotations

from collections.abc import Callable

from app.build.compile import CompileResult, compile_artifact, compile_schema
from app.contracts import artifact
from app.contracts.schema_config import ConfigError, load_config
from app.sources import SourceCredentials, open_source


def build_artifact(credentials: SourceCredentials, config: dict | str | None = None, *,
                   connect_timeout: int = 10, on_log: Callable[[str], None] | None = None
                   ) -> tuple[artifact.SchemaArtifact, list[str]]:
    """Check access to the source, introspect it and compile the artifact.

    Returns (artifact, log lines). Raises ConfigError or SourceError; `on_log`
    receives each log line as it is written, so a failed build keeps its log.
    """
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        if on_log is not None:
            on_log(line)

    if config is not None:
        log("validating the schema config")
        config = load_config(config)
    else:
        log("no schema config: every table, column and relation is exposed")
    c = credentials
    log(f"connecting to {c.backend} server {c.host}:{c.port} as user {c.user!r}")
    with open_source(c, connect_timeout=connect_timeout) as source:
        log(f"checking access to schema {c.target!r}")
        source.check_access()
        log("introspecting tables, columns and keys")
        schema = source.introspect()
        estimates = source.row_count_estimates()
    log(f"found {len(schema.tables)} table(s) in schema {c.target!r}")
    for table in schema.tables:
        rows = estimates.get(table.name)
        rows_text = f", about {rows:,} rows" if rows is not None else ""
        log(f"  {table.name}: {len(table.columns)} column(s), primary key "
            f"({', '.join(table.primary_key) or 'none'}), {len(table.foreign_keys)} foreign "
            f"key(s){rows_text}")
    result = compile_schema(schema, config)
    compiled = result.artifact
    log(f"compiled {len(compiled.tables)} table(s) and {len(compiled.relations)} relation(s)")
    for table in compiled.tables:
        exposed = sum(1 for column in table.columns if not column.hidden)
        hidden = len(table.columns) - exposed
        name = table.name if table.alias == table.name else f"{table.name} as {table.alias}"
        relations = ", ".join(
            f"{r.name} -> {r.target}{'[]' if r.many else ''}"
            for r in compiled.relations_of(table.alias)) or "none"
        log(f"  {name}: {exposed} field(s)"
            + (f" + {hidden} hidden key column(s)" if hidden else "")
            + f"; relations: {relations}"
            + (f"; where: {table.where}" if table.where else ""))
    for warning in result.warnings:
        log(f"warning: {warning}")
    log("build succeeded")
    return compiled, lines


__all__ = ["CompileResult", "ConfigError", "build_artifact", "compile_artifact",
           "compile_schema", "load_config"]
