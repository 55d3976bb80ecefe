"""Fixtures shared by every test folder: PostgreSQL schemas and SQLite files, concurrent processes, servers.

PostgreSQL: ``SPLITLAB_TEST_POSTGRES_URL`` (default: the local server of DESIGN.md). Each test
session works in schemas named ``splitlab_test_<random>_<n>``: every test gets a fresh, empty
schema (the connection's ``search_path``), dropped after the test, and anything left over is
dropped at the end of the session, so parallel CI and dev runs never meet. When the server
cannot be reached the PostgreSQL half is skipped with the reason, except under ``CI=true``,
where it fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import venv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from splitlab.storage import open_store

POSTGRES_URL_VAR = "SPLITLAB_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
START_HINT = "start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"


def postgres_unavailable(reason: str) -> NoReturn:
    """Skip (dev machine) or fail (CI=true) because PostgreSQL is missing."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required under CI=true and is not reachable: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not reachable ({reason}); {START_HINT} or set {POSTGRES_URL_VAR}")


class PostgresSchemas:
    """Fresh schemas for one test session, all under one random prefix."""

    def __init__(self, base: URL) -> None:
        self.base = base
        self.prefix = f"splitlab_test_{secrets.token_hex(4)}"
        self._engine: Engine = create_engine(base, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        self._count = 0

    def create(self) -> tuple[str, str]:
        """A new empty schema: (its name, a URL whose connections use it)."""
        self._count += 1
        name = f"{self.prefix}_{self._count}"
        with self._engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
        url = self.base.update_query_dict({"options": f"-csearch_path={name}"})
        return name, url.render_as_string(hide_password=False)

    def drop(self, name: str) -> None:
        with self._engine.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')

    def drop_all(self) -> None:
        with self._engine.connect() as conn:
            names = conn.execute(
                text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :pattern"), {"pattern": f"{self.prefix}%"}
            ).scalars()
            for name in list(names):
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        self._engine.dispose()


@pytest.fixture(scope="session")
def postgres_schemas() -> Iterator[PostgresSchemas]:
    base = make_url(os.environ.get(POSTGRES_URL_VAR, DEFAULT_POSTGRES_URL)).set(drivername="postgresql+psycopg")
    probe = create_engine(base, poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with probe.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except OperationalError as exc:
        postgres_unavailable(f"{base.render_as_string(hide_password=True)}: {exc.orig}")
    finally:
        probe.dispose()
    schemas = PostgresSchemas(base)
    yield schemas
    schemas.drop_all()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a fresh, empty database on the test's backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    schemas: PostgresSchemas = request.getfixturevalue("postgres_schemas")
    name, url = schemas.create()
    yield url
    schemas.drop(name)


REDIS_URL_VAR = "SPLITLAB_TEST_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_START_HINT = 'start it with `redis-server --daemonize yes --port 6379 --save ""`'


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis (``SPLITLAB_TEST_REDIS_URL``, default the local server of DESIGN.md).

    Skipped when unreachable, except under ``CI=true``, where that fails. Tests need no database
    of their own: splitlab's keys carry the store's random deployment id.
    """
    import redis

    url = os.environ.get(REDIS_URL_VAR, DEFAULT_REDIS_URL)
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required under CI=true and is not reachable at {url}: {exc}", pytrace=False)
        pytest.skip(f"Redis not reachable at {url} ({exc}); {REDIS_START_HINT} or set {REDIS_URL_VAR}")
    finally:
        client.close()
    return url


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: make test runs ``pytest -n 2``
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Send a file's tests to one worker, and every Spark test to one worker.

    Module fixtures (servers, stores, a browser) then start once, and so does the run's one JVM. A
    Spark test is known by its id (``test_spark.py``, a ``[spark]`` parameter), because the scheduler
    sees ids, not markers.
    """
    from xdist.scheduler import LoadScopeScheduling

    class FileOrSparkScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return "spark" if "spark" in nodeid.lower() else nodeid.split("::", 1)[0]

    return FileOrSparkScheduling(config, log)


SPARK_SKIP_VAR = "SPLITLAB_SKIP_SPARK"


@pytest.fixture(scope="session")
def spark() -> Any:
    """The one Spark session of the test run (local mode, two cores), started on first use.

    Spark tests carry the ``spark`` marker: ``pytest -m "not spark"`` (or ``SPLITLAB_SKIP_SPARK=1``)
    leaves them out on a developer's machine. Under ``CI=true`` a missing pyspark or Java fails.
    """
    if os.environ.get(SPARK_SKIP_VAR) == "1" and os.environ.get("CI") != "true":
        pytest.skip(f"{SPARK_SKIP_VAR}=1")
    try:
        from splitlab.analysis.spark import spark_session

        session = spark_session("local[2]", app_name="splitlab-tests")
        session.conf.set("spark.sql.shuffle.partitions", "2")  # tests' tables are small: one task per core
    except Exception as exc:  # any start-up failure (no pyspark, no Java) is the same skip
        if os.environ.get("CI") == "true":
            pytest.fail(f"Spark is required under CI=true and could not start: {exc}", pytrace=False)
        pytest.skip(f"Spark could not start ({exc}); pip install pyspark and Java 17")
    return session


@pytest.fixture
def postgres_url(postgres_schemas: PostgresSchemas) -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL schema (for PostgreSQL-only tests)."""
    name, url = postgres_schemas.create()
    yield url
    postgres_schemas.drop(name)


@pytest.fixture
def run_python() -> Callable[..., list[subprocess.CompletedProcess[str]]]:
    """Run Python snippets in separate processes at the same time; returns each finished process."""

    def run(*codes: str, timeout: float = 120) -> list[subprocess.CompletedProcess[str]]:
        processes = [
            subprocess.Popen(  # noqa: S603 - our own interpreter and code
                [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for code in codes
        ]
        finished = []
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            finished.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
        return finished

    return run


@pytest.fixture
def postgres_policy() -> Callable[[str], NoReturn]:
    """The skip-or-fail rule for a missing PostgreSQL, for testing the rule itself."""
    return postgres_unavailable


def barrier(directory: Path, parties: int, index: int) -> str:
    """Python source that makes ``parties`` processes wait for each other before going on."""
    return (
        "import pathlib, time\n"
        f"_d = pathlib.Path({str(directory)!r}); _d.mkdir(exist_ok=True); (_d / 'ready-{index}').touch()\n"
        f"while len(list(_d.glob('ready-*'))) < {parties}:\n"
        "    time.sleep(0.005)\n"
    )


@pytest.fixture
def start_together(tmp_path: Path) -> Callable[[int, int], str]:
    """``start_together(parties, index)``: a snippet to put before the work that must overlap."""
    return lambda parties, index: barrier(tmp_path / "barrier", parties, index)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """``splitlab serve`` in a child process on a loopback port; stderr kept in a file for failures."""

    def __init__(self, database_url: str, *, workers: int, log: Path, port: int | None = None, **env: str) -> None:
        self.database_url = database_url
        self.workers = workers
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = {**os.environ, **env}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        """Start the server and wait until /api/v1/ready answers 200."""
        code = (
            "from splitlab.cli.serve import serve; "
            f"serve(port={self.port}, workers={self.workers}, database={self.database_url!r})"
        )
        with self.log.open("ab") as stderr:  # a pipe nobody reads would block the server
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and code
                [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=stderr, env=self.env
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.base}/api/v1/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"server did not become ready:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)  # polling for start-up, not timing anything

    def kill(self) -> None:
        """SIGKILL: no shutdown, nothing flushed."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self) -> None:
        """Terminate gracefully (SIGTERM), then kill if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """``servers(database_url, workers=1, **env)``: started server processes, all stopped after the test."""
    started: list[ServerProcess] = []

    def start(database_url: str, *, workers: int = 1, port: int | None = None, **env: str) -> ServerProcess:
        with open_store(database_url):  # migrate once, before the workers start
            pass
        server = ServerProcess(
            database_url, workers=workers, port=port, log=tmp_path / f"server-{len(started)}.log", **env
        )
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


ROOT = Path(__file__).resolve().parents[1]
SETUPTOOLS_FLOOR = 77
"""The build backend's floor in pyproject.toml: older setuptools refuses ``license = "MIT"``."""


def run_isolated(command: list[str | Path], *, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` without PYTHONPATH and PYTHONHOME, which would import the checkout instead of the wheel."""
    clean = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "PYTHONHOME"}}
    # The demo alone takes about 30 s of CPU; the timeout only stops a hung process before
    # pytest-timeout's 300 s would, leaving its output in the failure.
    return subprocess.run(  # noqa: S603 - our own interpreters and the wheel we built
        [str(part) for part in command],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )


def _build_wheel(tmp: Path) -> Path:
    # Build from a copy of the sources: an in-tree build writes build/ into the checkout, and a
    # build/lib left over from an earlier build would put deleted modules back into the wheel.
    source = tmp / "source"
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    dist = tmp / "dist"
    # No isolation and no index: the build uses this environment's setuptools and downloads nothing.
    options = ["--no-deps", "--no-build-isolation", "--no-index", "--quiet", "--wheel-dir", dist]
    built = run_isolated([sys.executable, "-m", "pip", "wheel", *options, source], cwd=tmp)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("splitlab-*.whl")
    return wheel


def _fresh_venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=False).create(path)
    python = path / "bin" / "python"
    purelib = run_isolated([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=path)
    # The dependencies (numpy, pandas, ...) come from this interpreter's site-packages, appended
    # after the venv's own: a plain path line in a .pth file does not run the .pth files of the
    # directory it names, so the editable splitlab of this checkout stays invisible.
    Path(purelib.stdout.strip(), "_splitlab_test_dependencies.pth").write_text(
        sysconfig.get_path("purelib") + "\n", encoding="utf-8"
    )
    return python


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel built from this checkout; returns its directory."""
    setuptools_major = int(version("setuptools").split(".")[0])
    assert setuptools_major >= SETUPTOOLS_FLOOR, (
        f"setuptools {version('setuptools')} cannot build splitlab; run `pip install -e '.[dev]'`"
    )
    tmp = tmp_path_factory.mktemp("packaging")
    wheel = _build_wheel(tmp)
    environment = tmp / "venv"
    python = _fresh_venv(environment)
    install = run_isolated(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet", wheel],
        cwd=tmp,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return environment


@dataclass(frozen=True)
class DemoRun:
    """One run of ``splitlab demo``: the finished process, and the database and reports folder it wrote."""

    process: subprocess.CompletedProcess[str]
    database: Path
    reports: Path


@pytest.fixture(scope="session")
def demo_run(installed_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """``splitlab demo`` run once, from the installed wheel, for every test of what it does.

    tests/cli/test_demo.py checks its verdicts, tests/test_packaging.py that it runs from the wheel:
    the demo takes about 20 s, too long to run twice for the same output.
    """
    directory = tmp_path_factory.mktemp("demo")
    command = [installed_wheel / "bin" / "splitlab", "demo", "--database", "demo.db", "--reports", "reports"]
    process = run_isolated(command, cwd=directory, COLUMNS="250")  # one verdict, one line
    return DemoRun(process=process, database=directory / "demo.db", reports=directory / "reports")
