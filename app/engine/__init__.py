"""The lifecycle engine (provision, rebuild, pause...): not built yet.

It will drive databases through the status matrix of contract §6, using
app.sources (test the connection), app.build (compile the artifact) and the
instance runtime (app.engine.runtime) to start and stop instances.
"""
