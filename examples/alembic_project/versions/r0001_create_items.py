"""Create the items table."""

import sqlalchemy as sa
from alembic import context, op

revision = "0001"
down_revision = None


def upgrade() -> None:
    prefix = context.config.attributes.get("prefix", "")
    op.create_table(
        f"{prefix}items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
    )


def downgrade() -> None:
    op.drop_table(f"{context.config.attributes.get('prefix', '')}items")
