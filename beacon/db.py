"""Database engine and sessions: Postgres in production, SQLite (WAL, busy timeout) embedded."""

from __future__ import annotations

from collections import namedtuple
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterator, Sequence

from sqlalchemy import Executable, Insert, Select, bindparam, create_engine, event, insert, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Compiled, Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError
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
    # the sweeper re-dispatches) and is replaced; connections are recycled every 30 minutes. The
    # pool keeps 20 (a connection opened and closed per request past the pool costs Postgres a
    # backend each time) and opens up to 10 more under a burst.
    return create_engine(
        url,
        pool_size=20,
        max_overflow=10,
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

    def write_together(self, writes: Sequence[Write]) -> list[Any]:
        """Run these writes atomically; return what each one's statement returned first (None
        without RETURNING or rows).

        On Postgres this is one autocommitted statement, a chain of data-modifying CTEs (built once
        per chain of statements): one round trip, no BEGIN or COMMIT; constraints are checked at
        the end of the statement, so a row may refer to another row of the same chain, but no
        statement sees another's effects except through its RETURNING. Elsewhere, one
        transaction. A unique violation raises ``IntegrityError`` and writes nothing."""
        statements = tuple(write.statement for write in writes)
        params = {name: value for write in writes for name, value in write.params.items()}
        if not self.is_postgres:
            with self.session() as session:
                results = [session.execute(statement, params) for statement in statements]
                return [result.scalar() if statement.exported_columns else None
                        for statement, result in zip(statements, results)]
        return list(self.run(_chain(statements), params)[0])

    def run(self, statement: Executable, params: dict[str, Any]) -> list[tuple]:
        """One statement built once (a module constant), autocommitted; its rows as named tuples.

        On Postgres it goes to the driver as SQL compiled once, with SQLAlchemy's own bind and
        result processing of each value but none of its per-execution machinery (its compiled
        cache lookup, execution context and result object: 0.2–0.4 ms a statement here, as much as
        the statement itself). Elsewhere, through SQLAlchemy."""
        if not self.is_postgres:
            with self.autocommitted() as connection:
                return list(connection.execute(statement, params).all())
        dialect = self.engine.dialect
        form = _driver_form(statement, dialect)
        values = form.compiled.construct_params(params)
        for name, process in form.binds:
            values[name] = process(values[name])
        with self.autocommitted() as connection:
            driver = connection.connection.driver_connection
            try:
                cursor = driver.execute(form.compiled.string, values)
                rows = cursor.fetchall() if cursor.description else []
            except dialect.loaded_dbapi.Error as exc:  # raised as SQLAlchemy would: its class, a lost connection dropped
                lost = dialect.is_disconnect(exc, driver, None)
                if lost:
                    connection.invalidate(exc)
                raise DBAPIError.instance(form.compiled.string, values, exc, dialect.loaded_dbapi.Error,
                                          connection_invalidated=lost, dialect=dialect) from exc
        if rows and len(rows[0]) != len(form.results):
            raise ValueError(f"{len(rows[0])} columns returned, {len(form.results)} expected")
        return [form.row(*(value if process is None else process(value) for process, value in zip(form.results, row)))
                for row in rows]

    @contextmanager
    def autocommitted(self) -> Iterator[Connection]:
        """A connection whose every statement commits on its own: no BEGIN or COMMIT round trip.
        On Postgres this is psycopg's own switch (no round trip, and no isolation level for
        SQLAlchemy to reset), switched back before the connection returns to the pool."""
        if not self.is_postgres:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                yield connection
            return
        with self.engine.connect() as connection:
            driver = connection.connection.driver_connection
            driver.autocommit = True
            try:
                yield connection
            finally:
                if not driver.closed:  # a connection lost mid-statement is discarded by the pool
                    driver.autocommit = False


@dataclass(frozen=True)
class Write:
    """One statement of :meth:`Database.write_together`: built once (:func:`bound_insert`; at most
    one RETURNING column) and the values of its bound names."""

    statement: UpdateBase
    params: dict[str, Any]


@dataclass(frozen=True)
class _DriverForm:
    compiled: Compiled
    binds: tuple[tuple[str, Callable[[Any], Any]], ...]  # the bind processors of the bound names that have one
    results: tuple[Callable[[Any], Any] | None, ...]  # each returned column's result processor
    row: type  # a named tuple of the returned columns


@lru_cache(maxsize=64)
def _driver_form(statement: Executable, dialect: Dialect) -> _DriverForm:
    """``statement`` compiled for the driver, with the type processing SQLAlchemy would apply."""
    compiled = statement.compile(dialect=dialect)
    if compiled.literal_execute_params or compiled.post_compile_params:  # rendered per execution: not here
        raise ValueError("Database.run takes no IN (…) or literal-execute parameter; write IN as ORs of =")
    binds = tuple((compiled.escaped_bind_names.get(name, name), process) for bind, name in compiled.bind_names.items()
                  if (process := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None)
    columns = list(getattr(statement, "selected_columns", None) or getattr(statement, "exported_columns", None) or [])
    results = tuple(column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns)
    row = namedtuple("Row", [column.key or f"column_{i}" for i, column in enumerate(columns)], rename=True)
    return _DriverForm(compiled, binds, results, row)


@lru_cache(maxsize=64)
def _chain(statements: tuple[UpdateBase, ...]) -> Select:
    """``WITH write_0 AS (…), write_1 AS (…) SELECT <each one's first returned value>``."""
    ctes = [stmt.cte(f"write_{i}") for i, stmt in enumerate(statements)]
    columns = [select(cte.c[0]).limit(1).scalar_subquery() if stmt.exported_columns else literal(None)
               for stmt, cte in zip(statements, ctes)]
    return select(*columns).add_cte(*ctes)


def bound_insert(model, prefix: str, columns: Sequence[str]) -> Insert:  # noqa: ANN001  (a mapped class)
    """``INSERT INTO <model's table> (columns) VALUES (:<prefix><column>, …)``, built once for a
    :class:`Write` (a statement in a CTE takes no column defaults: name every NOT NULL column)."""
    table = model.__table__
    return insert(table).values({name: bindparam(prefix + name, type_=table.c[name].type) for name in columns})


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
