"""Database engine and sessions: Postgres in production, SQLite (WAL, busy timeout) embedded."""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Iterator, Sequence

from sqlalchemy import Insert, create_engine, event, insert, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import UpdateBase

from beacon.settings import get_settings


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            from pathlib import Path

            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # noqa: ANN001
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    # Optimistic disconnect handling: no ping round trip per checkout (a third of a small
    # transaction's time here). A connection found dead fails its request once (503, or a unit
    # the sweeper re-dispatches) and is replaced; connections are recycled every 30 minutes.
    return create_engine(
        url,
        pool_size=10,
        max_overflow=20,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5},
    )


class Database:
    """An engine and its session factory."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any error."""
        with self.sessions() as session, session.begin():
            yield session


    def write_together(self, statements: Sequence[UpdateBase]) -> list[Any]:
        """Run these INSERT/UPDATE/DELETE statements (each with its values, and at most one RETURNING
        column) atomically; return what each one returned first (None without RETURNING or rows).

        On Postgres this is one autocommitted statement, a chain of data-modifying CTEs: one round
        trip, no BEGIN or COMMIT (constraints are checked at the end of the statement, so a row may
        refer to another row of the same chain, but no statement sees another's effects except through
        its RETURNING). Elsewhere, one transaction. A unique violation
        raises ``IntegrityError`` and writes nothing. Column defaults set in Python do not apply
        inside a CTE: give every NOT NULL value."""
        if not self.is_postgres:
            with self.session() as session:
                results = [session.execute(stmt) for stmt in statements]
                return [result.scalar() if stmt.exported_columns else None
                        for stmt, result in zip(statements, results)]
        ctes = [stmt.cte(f"write_{i}") for i, stmt in enumerate(statements)]
        columns = [select(cte.c[0]).limit(1).scalar_subquery() if stmt.exported_columns else literal(None)
                   for stmt, cte in zip(statements, ctes)]
        with self.autocommitted() as connection:
            return list(connection.execute(select(*columns).add_cte(*ctes)).one())

    def autocommitted(self) -> Connection:
        """A connection whose every statement commits on its own: no BEGIN or COMMIT round trip."""
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")


@lru_cache(maxsize=None)
def database_for(url: str) -> Database:
    return Database(url)


def get_database() -> Database:
    """The process-wide database of the current settings."""
    return database_for(get_settings().database_url)


def insert_ignore(session: Session, model, *conflict_columns: str) -> Insert:  # noqa: ANN001  (a mapped class)
    """``INSERT … ON CONFLICT (conflict_columns) DO NOTHING`` in the session's dialect."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return pg_insert(model).on_conflict_do_nothing(index_elements=list(conflict_columns))
    if dialect == "sqlite":
        return sqlite_insert(model).on_conflict_do_nothing()
    return insert(model)
