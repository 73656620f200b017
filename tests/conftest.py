"""The backend test rig: every behaviour test runs once per backend.

Backends: local disk, fsspec memory, S3 on each S3 server (moto and SeaweedFS here, or
whatever `MLEMREMOTE_TEST_S3_SERVERS` names, e.g. docker-compose's MinIO), GCS on
fake-gcs-server, Azure Blob on Azurite. Servers come from `tests/services.py`: started
as local processes when their environment variables are not set. A backend that cannot
be reached fails its tests; nothing is skipped.

In parallel (`pytest -n N`, pytest-xdist, as `make test` runs it) the controller starts
the servers once, before the workers, and hands them their addresses through those
environment variables; it stops them (by PID) at the end. Tests that must have the
machine to themselves are marked `exclusive` and run alone, after all the others (see
`tests/xdist_exclusive.py`). The figures tests put in `REPORT` travel to the controller
with each test's report, so the summary is the same in parallel as in one process.
"""

from __future__ import annotations

import os

# gcsfs probes a TLS gRPC endpoint for ~60 s per call unless told not to (see the
# README's "Try it yourself"; `python tests/services.py` prints it too).
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
# Only 127.0.0.1 is ever reached: a filesystem made without the test servers' settings
# talks to a closed local port instead of the clouds' public endpoints.
os.environ["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"
os.environ["AWS_ACCESS_KEY_ID"] = "unset"
os.environ["AWS_SECRET_ACCESS_KEY"] = "unset"
os.environ["STORAGE_EMULATOR_HOST"] = "http://127.0.0.1:9"
# botocore's own retries off: the suite exercises (and times) mlemremote's retry policy.
os.environ["AWS_MAX_ATTEMPTS"] = "1"

import contextlib
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import fsspec.config
import pytest
from fsspec.spec import AbstractFileSystem

sys.path.insert(0, str(Path(__file__).parent))
from services import (
    ENV_AZURE,
    ENV_GCS,
    ENV_S3,
    S3_KEY,
    S3_SECRET,
    Endpoints,
    running_services,
    s3_server_names,
)

# tests/data/make_mlem_fixtures.py and peer_ops.py run under the MLEM peer's Python, not
# here; xdist_exclusive.py is a plugin for pytest-xdist (registered below when it is there).
collect_ignore = ["data", "peer_ops.py", "xdist_exclusive.py"]

TESTS = Path(__file__).resolve().parent
BACKENDS = ["local", "memory", *(f"s3-{name}" for name in s3_server_names()), "gcs", "azure"]


def s3_options(url: str) -> dict[str, Any]:
    return {"key": S3_KEY, "secret": S3_SECRET, "client_kwargs": {"endpoint_url": url}}


def gcs_options(url: str) -> dict[str, Any]:
    return {"endpoint_url": url, "token": "anon", "project": "test"}


def azure_options(connection_string: str) -> dict[str, Any]:
    return {"connection_string": connection_string}


@pytest.fixture(autouse=True)
def quick_retries() -> Iterator[None]:
    """The default retry policy, with short waits: the tests' faults are all local."""
    from mlemremote.api import configured

    with configured(retry_initial_wait=0.01, retry_max_wait=0.1, retry_max_seconds=20):
        yield


@pytest.fixture(autouse=True)
def no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Tests never read the developer's own ~/.config/mlemremote/config.yaml."""
    path = tmp_path / "user-config.yaml"
    monkeypatch.setenv("MLEMREMOTE_CONFIG", str(path))
    return path


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Each test has its own cache of fetched git commits (never the user's)."""
    path = tmp_path / "cache"
    monkeypatch.setenv("MLEMREMOTE_CACHE_DIR", str(path))
    return path


GIT_TOKEN = "s3cr3t-git-token"


@dataclass
class GitWorld:
    """A real git smart-HTTP server (tests/gitserver.py) and its fixture repos."""

    server: Any
    shas: dict[str, Any]
    root: Path

    def url(self, name: str = "org/models.git") -> str:
        return f"{self.server.url}/{name}"


@pytest.fixture(scope="session")
def git_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitWorld]:
    from gitserver import GitServer, models_repo

    root = tmp_path_factory.mktemp("git-server")
    shas = models_repo(root)
    server = GitServer(root, tokens={"private.git": GIT_TOKEN}).start()
    try:
        yield GitWorld(server, shas, root)
    finally:
        server.stop()


# -- servers shared by the workers of a parallel run ------------------------------------
# Set by the controller of a parallel run for its workers: why the servers did not start
# (every test that needs one then fails with it), and which of the server variables it set
# (test_readme's shell block starts its own emulators, as the README says, unless the
# caller named servers).
ENV_SERVICES_ERROR = "MLEMREMOTE_TEST_SERVICES_ERROR"
ENV_SHARED = "MLEMREMOTE_TEST_SHARED_BY_CONTROLLER"
_SERVICES = pytest.StashKey[contextlib.ExitStack]()
EXCLUSIVE = "exclusive"  # the xdist group of the tests marked exclusive (xdist_exclusive.py)


def _is_xdist_controller(config: pytest.Config) -> bool:
    if hasattr(config, "workerinput"):
        return False
    return bool(getattr(config.option, "numprocesses", 0)) and config.option.dist != "no"


def _start_shared_services(config: pytest.Config) -> None:
    """In the controller of a parallel run: start every server once (those not named
    by the environment already) and pass their addresses on to the workers."""
    if config.option.collectonly:
        return
    stack = contextlib.ExitStack()
    config.stash[_SERVICES] = stack
    try:
        found = stack.enter_context(running_services())
    except Exception as exc:  # each test that needs a server fails with this
        stack.close()
        os.environ[ENV_SERVICES_ERROR] = f"test servers did not start: {exc}"
        return
    named = {ENV_S3, ENV_GCS, ENV_AZURE} & {k for k, v in os.environ.items() if v}
    shared = {k: v for k, v in found.environ().items() if k not in named}
    os.environ.update(shared)
    os.environ[ENV_SHARED] = ",".join(sorted(shared))


@pytest.fixture(scope="session")
def endpoints() -> Iterator[Endpoints]:
    """All test servers, with fsspec's own configuration pointing at the default ones
    (the first S3 server, GCS, Azure), the way a user configures fsspec once."""
    if os.environ.get(ENV_SERVICES_ERROR):
        raise RuntimeError(os.environ[ENV_SERVICES_ERROR])
    with running_services() as found:
        saved = {key: fsspec.config.conf.get(key) for key in ("s3", "gs", "abfs")}
        first_s3 = next(iter(found.s3.values()))
        fsspec.config.conf["s3"] = s3_options(first_s3)
        fsspec.config.conf["gs"] = gcs_options(found.gcs)
        fsspec.config.conf["abfs"] = azure_options(found.azure)
        try:
            yield found
        finally:
            for key, value in saved.items():
                if value is None:
                    fsspec.config.conf.pop(key, None)
                else:
                    fsspec.config.conf[key] = value


@dataclass
class Backend:
    """One backend for one test: a fresh bucket (or folder) and how to reach it."""

    name: str
    scheme: str
    root: str  # URI (or local path) of an empty folder that belongs to this test
    storage_options: dict[str, Any] | None
    fs: AbstractFileSystem

    def uri(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def fspath(self, uri: str) -> str:
        return str(self.fs._strip_protocol(uri))

    def read(self, uri: str) -> bytes:
        return bytes(self.fs.cat_file(self.fspath(uri)))

    def write(self, uri: str, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        if self.scheme == "file":
            os.makedirs(os.path.dirname(uri), exist_ok=True)
        self.fs.pipe_file(self.fspath(uri), data)

    def exists(self, uri: str) -> bool:
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache()
        return bool(self.fs.exists(self.fspath(uri)))

    def files(self, uri: str | None = None) -> dict[str, bytes]:
        """Every file below `uri` (default: the root), by path relative to it."""
        top = self.fspath(uri or self.root).rstrip("/")
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache()
        found = self.fs.find(top)
        return {p[len(top) + 1 :]: bytes(self.fs.cat_file(p)) for p in found}

    def copy_tree(self, src: str, dst: str) -> None:
        for rel, data in self.files(src).items():
            self.write(f"{dst.rstrip('/')}/{rel}", data)

    def move_tree(self, src: str, dst: str) -> None:
        self.copy_tree(src, dst)
        self.fs.rm(self.fspath(src), recursive=True)
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache()


def make_backend(
    name: str, endpoints: Endpoints | None, tmp_path: Path, *, versioned: bool = False
) -> Backend:
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    if name == "local":
        return Backend(name, "file", str(tmp_path / "root"), None, fsspec.filesystem("file"))
    if name == "memory":
        return Backend(name, "memory", f"memory://{bucket}", None, fsspec.filesystem("memory"))
    assert endpoints is not None
    if name.startswith("s3-"):
        options = s3_options(endpoints.s3[name[3:]])
        scheme = "s3"
    elif name == "gcs":
        options, scheme = gcs_options(endpoints.gcs), "gs"
    elif name == "azure":
        options, scheme = azure_options(endpoints.azure), "az"
    else:  # pragma: no cover
        raise ValueError(name)
    fs = fsspec.filesystem(scheme, **options)
    if versioned and scheme == "s3":
        fs.mkdir(bucket)
        fs.make_bucket_versioned(bucket)
    elif versioned and scheme == "gs":
        fs.mkdir(bucket, enable_versioning=True)
    else:
        fs.mkdir(bucket)
    return Backend(name, scheme, f"{scheme}://{bucket}", options, fs)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    name = request.param
    endpoints = None if name in ("local", "memory") else request.getfixturevalue("endpoints")
    return make_backend(name, endpoints, tmp_path)


# What keeps versions: git on local disk, versioned buckets on S3 and GCS.
VERSIONED = {"local": "git", "gcs": "generation"} | {
    name: "VersionId" for name in BACKENDS if name.startswith("s3-")
}


@pytest.fixture
def versioned_backend(backend: Backend, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The same backend with versions kept wherever it can: a git repository at the root
    on local disk, a versioned bucket on S3 and GCS (memory and Azure: as they are)."""
    endpoints = (
        None if backend.name in ("local", "memory") else request.getfixturevalue("endpoints")
    )
    versioned = make_backend(backend.name, endpoints, tmp_path / "versioned", versioned=True)
    if backend.name == "local":
        os.makedirs(versioned.root)
        git(versioned.root, "init", "-q", "-b", "main")
    return versioned


def git(folder: str, *args: str) -> str:
    command = ["git", "-C", folder, "-c", "user.email=t@example.com", "-c", "user.name=t"]
    done = subprocess.run([*command, *args], check=True, capture_output=True, text=True)
    return done.stdout.strip()


class Reads(list[str]):
    """The URIs read, in order; `body_bytes`: the bytes each conditional read handed back
    (a poll that found no change hands back none)."""

    body_bytes: Counter[str]


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    """Every file read (one request each) made through mlemremote's stores, by URI; a
    conditional read (a watch's poll) is one read too."""
    from mlemremote import _bulk, _history, _links, _location, _stores, _watch, api

    seen = Reads()
    seen.body_bytes = Counter()
    original = _stores.store_for

    class Counting:
        def __init__(self, store: Any) -> None:
            self._store = store

        def read(self, loc: Any) -> Any:
            seen.append(str(loc))
            return self._store.read(loc)

        async def _get(self, loc: Any, limit: int) -> Any:  # bulk reads, gathered
            seen.append(str(loc))
            return await self._store._get(loc, limit)

        def read_if_changed(self, loc: Any, last: Any) -> Any:
            seen.append(str(loc))
            answer = self._store.read_if_changed(loc, last)
            seen.body_bytes[str(loc)] += len(getattr(answer, "data", b""))
            return answer

        def __getattr__(self, name: str) -> Any:
            return getattr(self._store, name)

    def counting_store_for(loc: Any) -> Any:
        return Counting(original(loc))

    for module in (_stores, _links, _history, _location, _bulk, _watch, api):
        monkeypatch.setattr(module, "store_for", counting_store_for)
    return seen


# -- a fault-injecting proxy in front of each cloud (test_faults, test_limits) ------------
CLOUDS = ["s3-moto", "s3-seaweedfs", "gcs", "azure"]


def upstream_of(name: str, endpoints: Endpoints) -> str:
    if name.startswith("s3-"):
        return endpoints.s3[name[3:]]
    if name == "gcs":
        return endpoints.gcs
    part = next(p for p in endpoints.azure.split(";") if p.startswith("BlobEndpoint="))
    return part.split("=", 1)[1].rsplit("/", 1)[0]


@pytest.fixture(params=CLOUDS)
def proxied(
    request: pytest.FixtureRequest, endpoints: Endpoints, tmp_path: Path
) -> Iterator[tuple[Backend, Any]]:
    """A fresh bucket on each cloud, reached through a fault proxy (tests/faultproxy.py)."""
    from faultproxy import FaultProxy

    name = request.param
    direct = make_backend(name, endpoints, tmp_path)  # creates the bucket, directly
    proxy = FaultProxy(upstream_of(name, endpoints))
    url = proxy.start()
    if name.startswith("s3-"):
        options = s3_options(url)
    elif name == "gcs":
        options = gcs_options(url)
    else:
        options = azure_options(endpoints.azure.replace(upstream_of(name, endpoints), url))
    fs = fsspec.filesystem(direct.scheme, **options)
    try:
        yield Backend(name, direct.scheme, direct.root, options, fs), proxy
    finally:
        proxy.stop()


@pytest.fixture
def other_backend(endpoints: Endpoints, tmp_path: Path) -> Any:
    """Make a second backend (any name in BACKENDS) inside one test."""
    return lambda name: make_backend(name, endpoints, tmp_path / name)


# -- per-backend summary ---------------------------------------------------------------
_outcomes: dict[str, Counter[str]] = {}
# Figures the tests measure, printed at the end by section (stress, faults, crashes, ...).
REPORT: defaultdict[str, list[str]] = defaultdict(list)
# REPORT's lines travel with the reports of the test that wrote them (in user_properties,
# as ("report", (test index, section, line))): a worker's REPORT is not the controller's.
_REPORT_KEY = "report"
_reported: dict[str, int] = {}  # lines of each REPORT section already sent on
_index = pytest.StashKey[int]()
_figures: list[tuple[int, int, str, str]] = []  # (test index, order, section, line)


def _backend_of(item: pytest.Item) -> str:
    callspec = getattr(item, "callspec", None)
    for name in ("backend", "proxied", "cloud_model"):
        if callspec is not None and name in callspec.params:
            return str(callspec.params[name])
    marker = item.get_closest_marker("backends")
    if marker is not None:
        return "+".join(marker.args)
    return "none"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "backends(*names): the backends a cross test uses")
    config.addinivalue_line(
        "markers",
        "exclusive: needs the machine to itself (stress, races, crashes, time or memory "
        "bounds); in a parallel run it runs alone after every other test",
    )
    config.addinivalue_line("markers", "xdist_group(name): run on one worker (pytest-xdist)")
    if config.pluginmanager.hasplugin("xdist"):
        import xdist_exclusive

        config.pluginmanager.register(xdist_exclusive, "mlemremote-xdist-exclusive")
    if _is_xdist_controller(config):
        _start_shared_services(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    stack = config.stash.get(_SERVICES, None)
    if stack is not None:
        stack.close()  # stops the servers the controller started, by PID


@pytest.hookimpl(tryfirst=True)  # before xdist's loadgroup reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for index, item in enumerate(items):
        item.stash[_index] = index
        if item.path.is_relative_to(TESTS):  # (not the docstring examples)
            item.user_properties.append(("backend", _backend_of(item)))
        if item.get_closest_marker("exclusive") is not None:
            if item.get_closest_marker("xdist_group") is not None:
                raise pytest.UsageError(f"{item.nodeid}: exclusive, and in an xdist_group")
            item.add_marker(pytest.mark.xdist_group(EXCLUSIVE))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the REPORT lines written so far (by this test, its fixtures, or its module
    when imported) to the report, for whichever process prints the summary."""
    for section, lines in REPORT.items():
        for line in lines[_reported.get(section, 0) :]:
            item.user_properties.append((_REPORT_KEY, (item.stash.get(_index, 0), section, line)))
        _reported[section] = len(lines)
    return (yield)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # (docstring examples have no backend: a parallel run's controller sees them too)
    backend = dict(report.user_properties).get("backend")
    counted = report.when == "call" or (report.when == "setup" and report.outcome != "passed")
    if backend is not None and counted:
        _outcomes.setdefault(str(backend), Counter())[report.outcome] += 1
    if report.when == "teardown":  # (its user_properties hold every earlier phase's too)
        for key, value in report.user_properties:
            if key == _REPORT_KEY:
                index, section, line = value
                _figures.append((int(index), len(_figures), str(section), str(line)))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    sections: dict[str, list[str]] = {}
    for _, _, section, line in sorted(_figures):  # in the order of the tests
        sections.setdefault(section, []).append(line)
    for section, lines in sections.items():
        terminalreporter.section(section)
        for line in lines:
            terminalreporter.write_line(line)
    if not _outcomes:
        return
    terminalreporter.section("tests per backend")
    for backend in sorted(_outcomes):
        counts = _outcomes[backend]
        line = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))
        terminalreporter.write_line(f"{backend:>24}: {line}")
