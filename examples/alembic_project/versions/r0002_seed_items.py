"""Seed the first item (run twice, it would add a second row)."""

import sqlalchemy as sa
from alembic import context, op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    prefix = context.config.attributes.get("prefix", "")
    items = sa.table(f"{prefix}items", sa.column("id", sa.Integer), sa.column("name", sa.String))
    op.bulk_insert(items, [{"id": 1, "name": "first"}])


def downgrade() -> None:
    op.execute(f"DELETE FROM {context.config.attributes.get('prefix', '')}items WHERE id = 1")
