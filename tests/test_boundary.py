"""Issue 9, part 6: one error boundary. Every public function, method and CLI command
raises only `MlemError`s, whatever it is given, and no foreign exception (whose text may
hold a signed URL or a line of a file) hangs in the cause chain of what it raises.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fsspec.config
import pytest
from conftest import REPORT, Backend

import mlemremote
from mlemremote import api
from mlemremote.core.errors import MlemError, UnexpectedError
from mlemremote.core.objects import MlemLink, MlemModel

SCRIPT = str(Path(sys.executable).with_name("mlemremote"))
SECRET = "Qx9BOUNDARYsecretZZ"

HOSTILE_VALUES: list[Any] = [
    None, 0, -1, 1.5, float("nan"), 10**30, True, b"bytes", bytearray(b"x"), ["a"], ("a",),
    {"a": 1}, object(), "", " ", "\x00", "a\x00b", "\n", "\udcff",
]  # fmt: skip
# URIs: every call may be given these (nothing is written: each is refused, or names a
# place on a closed 127.0.0.1 port).
HOSTILE_URIS: list[str] = [
    "ftp://x/y", "github://x", "webhdfs://x/y", "hdfs://x/y", "sftp://x/y", "zip://x",
    "reference://x", "s3://", "s3:///", "s3://b", "gs://", "az://",
    "abfs://c@acct.dfs.core.windows.net/x", "http://[::1", "http://127.0.0.1:99999/x",
    "https://", "file://", "http://169.254.169.254/latest/meta-data", "http://2852039166/x",
    f"s3://bucket/x?X-Amz-Signature={SECRET}", f"https://u:{SECRET}@127.0.0.1:9/x",
    "a" * 300 + "://x", "s3://" + "b" * 300 + "/x", "gs://UPPER_bucket/x",
    "az://Bad_Container/x", "s3://bucket/" + "k" * 2000,
]  # fmt: skip
# Local paths: read by every reading call; never given to a writing one (they name real
# places: `../../../../etc/passwd` would be written as /etc/passwd.mlem).
HOSTILE_LOCAL_PATHS: list[str] = [
    "C:\\x", "\\\\srv\\share\\x", "x" * 5000, "../../../../etc/passwd", "%2e%2e/%2e%2e/x",
    "~nonexistentuser/x", "/dev/null", "/proc/self/environ", "simplecache::s3://b/x",
    "\U0001f642://x", "memory://x/../../..",
]  # fmt: skip
HOSTILE_PATHS = HOSTILE_URIS + HOSTILE_LOCAL_PATHS
HOSTILE_OPTIONS: list[Any] = [
    "notadict", 5, ["k"], {"client_kwargs": 5}, {"endpoint_url": 5}, {"key": None},
    {"connection_string": f"AccountKey={SECRET};garbage"}, {"token": {"type": "service_account"}},
    {"token": {"type": "service_account", "private_key": SECRET}}, {"anon": "maybe"},
    {"no_such_option": 1}, {"asynchronous": True}, {"loop": 5},
]  # fmt: skip


def calls(tmp: Path) -> Iterator[tuple[str, Callable[[], object]]]:
    """(label, call) for every public entry point and every hostile input."""
    repo = str(tmp / "repo")
    api.init(repo)
    model = MlemModel(model_type={"n": 1})
    model.dump("rf", repo=repo, external=True)
    api.link("rf", source_repo=repo, target="latest", target_repo=repo)

    def load_link(path: object) -> object:
        return MlemLink.model_construct(path=path, link_type="model").load_link()

    reading = {
        "load_meta", "load_meta repo", "history", "check", "resolve", "load_link", "pull",
        "open_artifact", "open_artifact name",
    }  # fmt: skip
    for v in [*HOSTILE_VALUES, *HOSTILE_PATHS]:
        entry_points: list[tuple[str, Callable[..., object], tuple[Any, ...], dict[str, Any]]] = [
            ("load_meta", api.load_meta, (v,), {}),
            ("load_meta repo", api.load_meta, ("latest",), {"repo": v}),
            ("load_meta rev", api.load_meta, ("latest",), {"repo": repo, "rev": v}),
            ("load_meta force_type", api.load_meta, ("latest",), {"repo": repo, "force_type": v}),
            ("link", api.link, (v,), {"target": str(tmp / "t")}),
            ("link target", api.link, ("rf",), {"source_repo": repo, "target": v}),
            ("link target_repo", api.link, ("rf", repo), {"target": "t2", "target_repo": v}),
            ("link expected", api.link, ("rf", repo), {"target": "latest", "target_repo": repo,
                                                      "expected": v}),
            ("link rev", api.link, ("rf", repo), {"rev": v, "target": "t3"}),
            ("init", api.init, (v,), {}),
            ("history", api.history, (v,), {}),
            ("rollback to", api.rollback, ("latest", repo), {"to": v}),
            ("check", api.check, (v,), {}),
            ("configure", api.configure, (), {"retry_attempts": v}),
            ("dump", MlemModel().dump, (v,), {}),
            ("dump repo", MlemModel().dump, ("m",), {"repo": v}),
            ("MlemLink", MlemLink, (), {"path": v, "link_type": "model"}),
            ("load_link", load_link, (v,), {}),
            ("resolve", mlemremote.resolve, (v,), {}),
            ("pull", api.pull, (v, str(tmp / "pulled")), {}),
            ("pull dest", api.pull, ("latest", v), {"repo": repo}),
            ("pull repo", api.pull, ("latest", str(tmp / "pulled")), {"repo": v}),
            ("pull overwrite", api.pull, ("latest", str(tmp / "p2")), {"repo": repo,
                                                                      "overwrite": v}),
            ("pull concurrency", api.pull, ("latest", str(tmp / "p3")), {"repo": repo,
                                                                        "concurrency": v}),
            ("pull progress", api.pull, ("latest", str(tmp / "p4")), {"repo": repo,
                                                                     "progress": v}),
            ("open_artifact", api.open_artifact, (v,), {}),
            ("open_artifact name", api.open_artifact, ("latest",), {"repo": repo, "name": v}),
        ]  # fmt: skip
        for name, func, args, kwargs in entry_points:
            if v in HOSTILE_LOCAL_PATHS and name not in reading:
                continue
            yield f"{name}({v!r:.40})", functools.partial(func, *args, **kwargs)
    for o in HOSTILE_OPTIONS:
        for p in ("s3://b/x", "gs://b/x", "az://c/x", str(tmp / "x")):
            yield (
                f"load_meta({p}, so={o!r:.40})",
                functools.partial(api.load_meta, p, storage_options=o),
            )
            yield f"init({p}, so={o!r:.40})", functools.partial(api.init, p, storage_options=o)
    yield "load_many(5)", lambda: api.load_many(5)  # type: ignore[arg-type]
    yield "configure(bogus=1)", lambda: api.configure(bogus=1)
    yield "configure(link_schemes=5)", lambda: api.configure(link_schemes=5)
    yield "rollback(no history)", lambda: api.rollback("latest", repo=repo, to=99)


def foreign_in_chain(exc: BaseException) -> BaseException | None:
    current: BaseException | None = exc
    for _ in range(50):
        if current is None:
            return None
        if not isinstance(current, MlemError):
            return current
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return None


@pytest.fixture
def unconfigured_clouds(monkeypatch: pytest.MonkeyPatch) -> None:
    """No cloud is configured: fsspec's configuration and the SDKs' environment hold
    nothing (a user who never set Azure up, say); requests go nowhere but 127.0.0.1."""
    for protocol in ("s3", "gs", "abfs", "az"):
        monkeypatch.delitem(fsspec.config.conf, protocol, raising=False)
    for variable in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_NAME"):
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.backends("none")
def test_nothing_but_mlem_errors_escape(
    tmp_path: Path, unconfigured_clouds: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # relative names land here, if anywhere
    raised: dict[str, int] = {}
    with api.configured(retry_attempts=1, retry_max_seconds=0.5):
        for label, call in calls(tmp_path):
            try:
                result = call()
            except MlemError as exc:
                raised[type(exc).__name__] = raised.get(type(exc).__name__, 0) + 1
                assert foreign_in_chain(exc) is None, f"{label}: {foreign_in_chain(exc)!r}"
                text = f"{exc} {exc!r}"
                assert SECRET not in text, f"{label}: {text}"
                assert not isinstance(exc, UnexpectedError), f"{label}: {exc}"
            except BaseException as exc:
                pytest.fail(f"{label} raised {type(exc).__name__}: {exc}")
            else:
                assert not isinstance(result, BaseException), label
        many = api.load_many([*HOSTILE_PATHS, *[v for v in HOSTILE_VALUES if v is not None]])
    assert all(isinstance(r, MlemError) for r in many), many
    total = sum(raised.values())
    REPORT["error boundary"].append(
        f"{total} hostile calls to the public API raised only MlemError subclasses "
        f"({len(raised)} kinds), none with a foreign exception in its cause chain; "
        f"load_many of {len(many)} hostile paths: one error in place of each"
    )


@pytest.mark.backends("none")
def test_foreign_exceptions_are_mapped_in_one_place() -> None:
    from mlemremote._foreign import detach, to_mlem_error

    for exc in (ValueError("x"), TypeError("y"), KeyError("z"), RecursionError(), OSError(5, "io")):
        error = to_mlem_error(exc, "a test")
        assert isinstance(error, MlemError) and error.original is exc
    wrapped = MlemError("outer")
    try:
        try:
            raise RuntimeError(f"https://host/x?sig={SECRET}")
        except RuntimeError as inner:
            raise wrapped from inner
    except MlemError:
        pass
    assert foreign_in_chain(detach(wrapped)) is None
    assert wrapped.original is not None


# -- the command line -------------------------------------------------------------------
def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_cli_exit_codes_and_one_line_errors(backend: Backend, tmp_path: Path) -> None:
    repo = backend.uri("repo")
    api.init(repo)
    MlemModel().dump("rf", repo=repo, external=True)
    api.link("rf", source_repo=repo, target="latest", target_repo=repo)
    assert cli("check", repo).returncode == 0
    backend.write(
        backend.uri("repo", ".mlem", "link", "bad.mlem"),
        "object_type: link\nlink_type: model\npath: nowhere.mlem\n",
    )
    assert cli("check", repo).returncode == 1  # broken links: the only exit 1
    errors = [
        ("show", "nothing", "--repo", repo),
        ("show", "../../etc/passwd", "--repo", repo),
        ("init", "ftp://x/y"),
        ("show", "az://c/x"),
        ("show", f"https://u:{SECRET}@127.0.0.1:9/x"),
        ("link", "rf", "x", "--sr", repo, "--tr", str(tmp_path / "not-a-repo")),
        ("init", str(tmp_path / "r"), "-o", "no-equals-sign"),
        ("check",),
        ("no-such-command",),
        ("show", str(tmp_path), "--no-such-option"),
    ]
    for args in errors:
        done = cli(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, done.stderr)
        assert "Traceback" not in done.stderr and SECRET not in done.stderr
    verbose = cli("show", f"https://u:{SECRET}@127.0.0.1:9/x", "--verbose")
    assert verbose.returncode == 2 and SECRET not in verbose.stderr


@pytest.mark.parametrize("backend", ["azure"], indirect=True)
def test_cli_never_prints_a_secret_from_a_bad_connection_string(backend: Backend) -> None:
    """A malformed connection string that holds a key: the SDK's error may quote it."""
    bad = f"DefaultEndpointsProtocol=http;AccountName=x;AccountKey={SECRET};BlobEndpoint=::"
    for verbose in ([], ["--verbose"]):
        done = cli("show", "az://c/x", "-o", f"connection_string={bad}", *verbose)
        assert done.returncode == 2
        assert SECRET not in done.stderr + done.stdout, done.stderr
