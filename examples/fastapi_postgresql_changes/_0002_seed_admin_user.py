from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from aioflamingock import Change
from aioflamingock.sql import SQLContext


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    email: Mapped[str] = mapped_column(String(200), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class SeedAdminUser(Change):
    """Through the ORM, in the engine's transaction: the user and the APPLIED entry commit together."""

    id = "seed-admin-user"
    author = "fastapi-example"
    target_system = "app-db"

    async def execute(self, ctx: SQLContext) -> None:
        async with ctx.session() as session:
            session.add(User(email="admin@example.com", name="Administrator"))
            await session.commit()  # ends the session's savepoint; the engine commits

    async def rollback(self, ctx: SQLContext) -> None:
        async with ctx.session() as session:
            await session.delete(await session.get_one(User, "admin@example.com"))
            await session.commit()
