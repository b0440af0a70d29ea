"""Optuna storage from a URL: RDB storages with heartbeats and retry of stale trials. Imports no torch,
so light processes (benchmarks, the dashboard side) can use it.

Bad URLs are user errors (exit 2); an unreachable server is infrastructure trouble (exit 1).
"""
from __future__ import annotations

import os
import random
import time
import warnings
from pathlib import Path

import optuna

from search.errors import RunError, UserError

HEARTBEAT = 10  # seconds between heartbeats of a running trial; stale after 3x that


class StorageError(RunError):
    """The database is unreachable: infrastructure, not input."""


def _sqlite_for_workers(engine) -> None:
    """Several local workers on one SQLite file (a local disk only; across machines use PostgreSQL).
    - Every transaction starts with BEGIN IMMEDIATE (takes the write lock first). Optuna claims an enqueued
      trial by reading it WAITING and writing RUNNING under SELECT ... FOR UPDATE, which SQLite ignores; with
      pysqlite's deferred transactions two workers both read WAITING and both trained the same first trial or
      race run (tests/test_faults.py's claim test). Taking the lock at BEGIN makes the
      read and the write one step, as the row lock does on PostgreSQL (SQLAlchemy's documented pysqlite recipe:
      the driver's own implicit BEGIN is turned off, ours is emitted).
    - Write-ahead logging lets readers that are not ours (optuna-dashboard) run beside the writer, and commits
      skip the fsync-per-transaction of the default journal."""
    import sqlalchemy

    @sqlalchemy.event.listens_for(engine, "connect")
    def _pragmas(conn, _record):
        conn.isolation_level = None
        conn.execute("PRAGMA synchronous=NORMAL")

    engine.dispose()  # pooled connections from table creation predate the listener
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")

    @sqlalchemy.event.listens_for(engine, "begin")  # after the journal mode, which cannot change inside one
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


# Messages of the schema set-up race: processes starting at the same instant on a fresh database all see no
# tables and all create them (Optuna's create_all + alembic stamp); the losers fail with one of these.
SCHEMA_RACE = ("already exists", "UNIQUE constraint failed", "duplicate key", "IntegrityError", "database is locked")


def _rdb_storage(url: str, engine: dict, heartbeat: int, tries: int = 8):
    """RDBStorage with heartbeats; a lost schema set-up race is retried (the winner's schema is then there)."""
    for attempt in range(tries):
        try:
            with warnings.catch_warnings():  # heartbeats are marked experimental; they are what we need
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine,
                    heartbeat_interval=heartbeat,
                    grace_period=3 * heartbeat,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2),
                )
        except Exception as e:
            if attempt + 1 == tries or not any(m in f"{type(e).__name__}: {e}" for m in SCHEMA_RACE):
                raise
            time.sleep(0.2 * (attempt + 1) + random.random() * 0.3)


def make_storage(url: str, heartbeat: int = HEARTBEAT):
    """RDB storages get heartbeats + retry of stale trials; other URLs go to Optuna as they are."""
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme not in ("sqlite", "postgresql", "mysql"):
        raise UserError(f"--storage: expected sqlite:///PATH, postgresql://USER@HOST/DB or mysql://..., got {url!r}")
    if scheme == "sqlite":
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else None
        if not path:
            raise UserError(f"--storage: expected sqlite:///PATH (three slashes), got {url!r}")
        parent = Path(path).parent
        if parent.exists() and not os.access(parent, os.W_OK):
            raise UserError(f"--storage: directory {parent} is not writable")
        parent.mkdir(parents=True, exist_ok=True)
    engine = {"connect_args": {"timeout": 60}} if scheme == "sqlite" else {"pool_pre_ping": True}
    if scheme == "postgresql":  # utf8: psycopg returns bytes, which SQLAlchemy cannot read, from SQL_ASCII databases
        engine["connect_args"] = {"connect_timeout": 10, "client_encoding": "utf8"}
    try:
        storage = _rdb_storage(url, engine, heartbeat)
        if scheme == "sqlite":
            _sqlite_for_workers(storage.engine)
        return storage
    except ImportError as e:
        missing = getattr(e.__cause__, "name", None) or e.name
        raise UserError(f"--storage: the {scheme} driver ({missing}) is not installed: pip install 'nas-run[postgres]'") from None
    except Exception as e:  # sqlalchemy's OperationalError & co: the server is not there
        if "Could not parse" in str(e) or isinstance(e, ValueError):
            raise UserError(f"--storage: malformed URL {url!r}") from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StorageError(f"--storage: cannot reach {url.split('@')[-1]}: {first}") from None


