"""What the control plane and the data plane share: formats and helpers, nothing that runs.

- `backends`: the source engines, which the data plane reads, their CDC modes and ports.
- `sql`: how identifiers are quoted in SQL text.
- `artifact`: the compiled schema a build produces and an instance serves.
- `schema_config`: the `reflexdb.yaml` format and its loader.
- `query_keys`: the query-key format and the keys file an instance checks keys against.
- `query_limits`: the limits every query is held to.
- `instance_settings`: the settings file an instance process is started with.
- `instance_secrets`: how an instance gets its secrets (a pipe).
- `changes`: what a change stream hands to the instance that applies it.
- `messages`: places in a document (`field_path`) and jsonschema errors in English.
- `files`: atomic writes (`write_atomic`), private ones 0600 from creation.
- `timestamps`: the one RFC 3339 format (`rfc3339`).

Nothing here imports another part of `app` (import-linter checks it).
"""
