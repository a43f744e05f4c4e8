"""Runs the revisions on the connection aioflamingock hands over (alembic's recipe for sharing a connection)."""

from alembic import context

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise SystemExit("this project's migrations run through aioflamingock (AlembicUpgrade), which hands a connection")

context.configure(connection=connection, version_table=config.attributes.get("version_table", "alembic_version"))
with context.begin_transaction():
    context.run_migrations()
