"""The fault-injection helpers: each private server starts, stops, comes back, and is cleaned up."""

from __future__ import annotations

import glob
import shutil
import socket

import pytest

from tests.faults.services import SHARED_POSTGRES_PORT, throwaway_postgres, throwaway_redis

pytestmark = pytest.mark.timeout(120)


def _refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_throwaway_redis_stop_start_freeze():
    import redis

    with throwaway_redis() as server:
        client = redis.Redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=2)
        client.set("k", "v")
        assert client.get("k") == b"v"

        server.stop()
        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(server.url, socket_connect_timeout=1).ping()

        server.start()
        fresh = redis.Redis.from_url(server.url, socket_timeout=2)
        assert fresh.ping() is True
        assert fresh.get("k") is None  # restarted empty

        server.freeze()
        impatient = redis.Redis.from_url(server.url, socket_timeout=0.25, socket_connect_timeout=0.25)
        with pytest.raises(redis.TimeoutError):
            impatient.ping()
        server.thaw()
        assert redis.Redis.from_url(server.url, socket_timeout=2).ping() is True

        port, directory = server.port, server.dir
    assert _refuses(port)
    assert not directory.exists()


@pytest.mark.skipif(not glob.glob("/usr/lib/postgresql/*/bin/initdb"), reason="PostgreSQL server not installed")
def test_throwaway_postgres_stop_start():
    import psycopg

    with throwaway_postgres() as pg:
        assert pg.port != SHARED_POSTGRES_PORT
        assert pg.url == f"postgresql+psycopg://postgres@127.0.0.1:{pg.port}/postgres"
        with psycopg.connect(pg.dsn, connect_timeout=5) as conn:
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (42)")
            assert conn.execute("SHOW port").fetchone()[0] == str(pg.port)

        pg.stop()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg.dsn, connect_timeout=2)

        pg.start()
        with psycopg.connect(pg.dsn, connect_timeout=5) as conn:
            assert conn.execute("SELECT n FROM kept").fetchone() == (42,)  # a restart keeps the data

        port, directory = pg.port, pg.dir
    assert _refuses(port)
    assert not directory.exists()


@pytest.mark.skipif(not glob.glob("/usr/lib/postgresql/*/bin/initdb"), reason="PostgreSQL server not installed")
def test_throwaway_postgres_url_works_with_sqlalchemy():
    from sqlalchemy import create_engine, text

    with throwaway_postgres() as pg:
        engine = create_engine(pg.url)
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT 1")).scalar() == 1
        finally:
            engine.dispose()
