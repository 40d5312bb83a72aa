"""The change stream's state as the engine last collected it from an instance's /health."""

from peewee import *


def up(migrator, db):
    migrator.migrate(migrator.add_column("instances", "sync_state", TextField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("instances", "sync_state"))
