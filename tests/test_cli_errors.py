"""Issue 12, items 1-3: wrong answers. A missing bucket or container is named as such, a
missing prefix is not an empty repo, and every error (a wrong secret, a stopped or
black-holed endpoint) is one line on stderr, exit 2, within about the connect timeout."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import Backend, azure_options, gcs_options, s3_options
from services import S3_KEY
from test_cli import SCRIPT, flags

from mlemremote.api import check, configured, init
from mlemremote.core.errors import BucketNotFoundError, MlemObjectNotFound, SettingsError
from mlemremote.core.objects import MlemModel

CLOUDS = ["s3-moto", "s3-seaweedfs", "gcs", "azure"]
FAST = {
    "MLEMREMOTE_CONNECT_TIMEOUT": "1",
    "MLEMREMOTE_RETRY_ATTEMPTS": "2",
    "MLEMREMOTE_RETRY_MAX_SECONDS": "5",
}
BOUND = 60.0  # seconds; generous: the point is "not minutes", not a benchmark


def cli(*args: str, fast: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the command; `fast`: with short timeouts and retries (for endpoints that never
    answer; elsewhere they would make a busy machine's slow answer a failure)."""
    env = {**os.environ, **(FAST if fast else {})}
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=120, env=env)


def cli_all(*commands: list[str], fast: bool = False) -> list[subprocess.CompletedProcess[str]]:
    """Run the commands at once (each a process: most of their time is start-up)."""
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda args: cli(*args, fast=fast), commands))


def one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr and "<?xml" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def typo_of(backend: Backend) -> tuple[str, str]:
    """A bucket name that does not exist on the backend, and its URI."""
    name = backend.root.split("://", 1)[1] + "-typo"
    return name, f"{backend.scheme}://{name}"


@pytest.mark.parametrize("backend", CLOUDS, indirect=True)
def test_missing_bucket_is_named_by_every_command(backend: Backend) -> None:
    o = flags(backend)
    repo = backend.uri("repo")
    init(repo, storage_options=backend.storage_options)
    MlemModel().dump("m", repo=repo, storage_options=backend.storage_options)
    name, typo = typo_of(backend)
    commands = (
        ["init", f"{typo}/repo"],
        ["link", "m", "latest", "--sr", repo, "--tr", f"{typo}/repo"],
        ["link", f"{repo}/m", f"{typo}/latest"],
        ["ls", f"{typo}/repo"],
        ["check", f"{typo}/repo"],
        ["show", f"{typo}/m"],
    )
    for done in cli_all(*([*args, *o] for args in commands)):
        line = one_line_error(done, repr(name), "does not exist")
        assert "run init" not in line and "kept changing" not in line
    assert not backend.fs.exists(name)  # never created
    with pytest.raises(BucketNotFoundError):
        init(f"{typo}/repo", storage_options=backend.storage_options)
    with pytest.raises(BucketNotFoundError):
        check(f"{typo}/repo", storage_options=backend.storage_options)


@pytest.mark.parametrize("backend", ["local", *CLOUDS], indirect=True)
def test_missing_prefix_fails_and_an_empty_repo_does_not(backend: Backend) -> None:
    o = flags(backend)
    init(backend.uri("empty"), storage_options=backend.storage_options)
    backend.write(backend.uri("plain", "data.txt"), "not a metafile")
    runs = cli_all(
        *([command, backend.uri(where), *o] for where in ("nope", "empty", "plain")
          for command in ("ls", "check"))
    )  # fmt: skip
    for done in runs[:2]:
        one_line_error(done, "no such")
    listed, checked = runs[2:4]  # an empty repo
    assert listed.returncode == 0 and listed.stderr == "", listed.stderr
    assert checked.returncode == 0 and "0 links, 0 broken" in checked.stdout
    listed, checked = runs[4:6]  # a folder in no repo: ls lists repos (as `mlem ls`)
    one_line_error(listed, "in no repo")
    assert checked.returncode == 0 and "0 links, 0 broken" in checked.stdout


def test_api_missing_prefix_and_bucket(backend: Backend) -> None:
    options = backend.storage_options
    with pytest.raises(MlemObjectNotFound, match="no such"):
        check(backend.uri("nope"), storage_options=options)
    init(backend.uri("empty"), storage_options=options)
    assert check(backend.uri("empty"), storage_options=options) == []
    if backend.name in CLOUDS:
        with pytest.raises(BucketNotFoundError):
            check(f"{typo_of(backend)[1]}/repo", storage_options=options)


# -- unreachable servers and refused credentials ------------------------------------------
@pytest.fixture(scope="module")
def black_hole() -> Iterator[str]:
    """A port whose accept queue is full: a new connection is never answered (its SYN
    is dropped), as with a firewalled or powered-off host."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):  # more than the queue holds
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.2)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for sock in [*fillers, server]:
            sock.close()


def options_at(kind: str, url: str) -> dict[str, Any]:
    if kind == "s3":
        return s3_options(url)
    if kind == "gs":
        return gcs_options(url)
    return azure_options(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"BlobEndpoint={url}/devstoreaccount1;"
    )


def as_flags(options: dict[str, Any]) -> list[str]:
    return flags(Backend("x", "", "", options, None))  # type: ignore[arg-type]


@pytest.mark.backends("s3+gcs+azure")
@pytest.mark.parametrize("kind", ["s3", "gs", "az"])
def test_stopped_endpoint_is_one_line_and_quick(kind: str, black_hole: str) -> None:
    closed = as_flags(options_at(kind, "http://127.0.0.1:9"))
    silent = as_flags(options_at(kind, black_hole))
    start = time.monotonic()
    runs = cli_all(
        *([command, f"{kind}://bucket/repo", *closed] for command in ("ls", "check", "show")),
        *([command, f"{kind}://bucket/repo/m", *silent] for command in ("ls", "show")),
        fast=True,
    )
    assert time.monotonic() - start < BOUND  # each alone: about 1 s x 2 tries, 5 s at most
    for done in runs:
        one_line_error(done)


@pytest.mark.parametrize("backend", ["s3-seaweedfs", "azure"], indirect=True)
def test_wrong_secret_is_one_line(backend: Backend) -> None:
    repo = backend.uri("repo")
    init(repo, storage_options=backend.storage_options)
    if backend.scheme == "s3":
        url = backend.storage_options["client_kwargs"]["endpoint_url"]  # type: ignore[index]
        wrong = {"key": S3_KEY, "secret": "wrong", "client_kwargs": {"endpoint_url": url}}
    else:
        text = backend.storage_options["connection_string"]  # type: ignore[index]
        key = next(p for p in text.split(";") if p.startswith("AccountKey="))
        wrong = azure_options(text.replace(key, "AccountKey=d3Jvbmcta2V5"))
    for done in cli_all(
        *([command, repo, *as_flags(wrong)] for command in ("ls", "check", "show"))
    ):
        line = one_line_error(done)
        assert "wrong" not in line and "d3Jvbmcta2V5" not in line  # no secret echoed


def test_connect_timeout_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlemremote import _settings

    with configured(connect_timeout=0.5) as settings:
        assert settings.connect_timeout == 0.5
    for bad in (0, -1, float("nan"), "5"):
        with pytest.raises(SettingsError):
            _settings.configure(connect_timeout=bad)
    # A whole number too large for a float was taken, and then every later call raised
    # UnexpectedError (OverflowError computing its deadline).
    for name in ("retry_max_seconds", "connect_timeout", "min_transfer_rate"):
        with pytest.raises(SettingsError, match="finite"):
            _settings.configure(**{name: 10**400})
    assert _settings.current().retry_max_seconds < 10**6
    monkeypatch.setenv("MLEMREMOTE_CONNECT_TIMEOUT", "2.5")
    assert _settings._from_env().connect_timeout == 2.5
    # botocore makes one attempt per call: the retries are ours, bounded by the budget
    # (botocore's inside ours kept a refused port silent for a minute).
    from s3fs import S3FileSystem

    from mlemremote._options import Layer, plan_for

    config = plan_for(S3FileSystem, []).kwargs["config_kwargs"]
    assert config["retries"] == {"total_max_attempts": 1}
    # a source that sets any of botocore's retries gets exactly its own
    mine = Layer("the call's storage_options", {"config_kwargs": {"retries": {"mode": "standard"}}})
    config = plan_for(S3FileSystem, [mine]).kwargs["config_kwargs"]
    assert config["retries"] == {"mode": "standard"}


@pytest.mark.parametrize("backend", ["s3-moto"], indirect=True)
def test_a_denied_read_fails_the_listing_not_the_link(backend: Backend) -> None:
    """moto lets anyone list but not read (as an IAM policy with ListBucket and no
    GetObject): ls and check fail whole (exit 2), never report links as broken."""
    from mlemremote.api import link
    from mlemremote.core.errors import StorageError

    repo = backend.uri("repo")
    init(repo, storage_options=backend.storage_options)
    MlemModel().dump("m", repo=repo, storage_options=backend.storage_options)
    link("m", source_repo=repo, target="latest", target_repo=repo, **{
        "storage_options": backend.storage_options})  # fmt: skip
    url = backend.storage_options["client_kwargs"]["endpoint_url"]  # type: ignore[index]
    anonymous = {"anon": True, "client_kwargs": {"endpoint_url": url}}
    with pytest.raises(StorageError):
        check(f"{repo}/.mlem/link", storage_options=anonymous)
    for done in cli_all(
        ["ls", repo, *as_flags(anonymous)], ["check", f"{repo}/.mlem/link", *as_flags(anonymous)]
    ):
        one_line_error(done)
