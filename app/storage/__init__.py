"""Storage: the Peewee database, models, migrations and secret encryption."""
