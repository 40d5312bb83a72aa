"""What the control plane and the data plane share: formats, nothing that runs.

- `backends`: the source engines, which the data plane reads, their CDC modes and ports.
- `artifact`: the compiled schema a build produces and an instance serves.
- `query_keys`: the query-key format and the keys file an instance checks keys against.
- `schema_config`: the `reflexdb.yaml` format and its loader.
- `instance_settings`: the settings file an instance process is started with.

Nothing here imports another part of `app` (import-linter checks it).
"""
