"""The SQLAlchemy store: schema, migrations, queries, audit chain."""
