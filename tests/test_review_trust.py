"""Hostile review (rev2-trust) of the rule that a repo's remote may say where a bucket is
but never sends your credentials to an endpoint only it names: each test fails on the
commit before its fix.

- adlfs makes its host of `account_name` (`https://{account_name}.blob.core.windows.net`),
  pasted in as it is: a repo's `account_name: evil.example.com/x` sent your
  `$AZURE_STORAGE_SAS_TOKEN` to evil.example.com, and `explain` saw no problem;
- `STORAGE_EMULATOR_HOST=localhost:4443` (no scheme, as gcsfs takes it) did not vouch for
  a repo's `endpoint_url: http://localhost:4443`: a legitimate setup refused.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec.config
import pytest
import yaml

from mlemremote.api import configured, explain_storage_options, init, load_meta
from mlemremote.core.errors import StorageOptionError
from mlemremote.core.objects import MlemLink

pytestmark = pytest.mark.backends("none")

SAS = "sv=2024-01-01&sig=victimsasVICTIMSAS"


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A port that records the first bytes of whatever connects to it."""
    got: list[bytes] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    got.append(conn.recv(65536))
                except OSError:
                    got.append(b"(connected)")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], got
    finally:
        stop.set()
        thread.join(5)
        server.close()


def repo_with_remote(tmp_path: Path, url: str, options: dict[str, Any]) -> str:
    repo = str(tmp_path / "repo")
    init(repo)
    remotes = {"theirs": {"url": url, "options": options}}
    (Path(repo) / ".mlem" / "config.yaml").write_text(yaml.safe_dump({"remotes": remotes}))
    MlemLink(path=f"{url}/m.mlem", link_type="model").dump("alias", repo=repo)
    return repo


@pytest.mark.parametrize(
    "spelling", ["localhost:{port}/x", "127.0.0.1:{port}#", "localhost:{port}?"]
)
def test_a_repos_azure_account_name_is_no_host_of_its_choosing(
    spelling: str,
    listener: tuple[int, list[bytes]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    port, got = listener
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", SAS)
    name = spelling.format(port=port)
    repo = repo_with_remote(tmp_path, "az://container", {"account_name": name})
    found = explain_storage_options("az://container/m.mlem", repo=repo)
    assert found.problem is not None and "account_name (the repo's remote" in found.problem
    with configured(retry_attempts=1, connect_timeout=2), pytest.raises(StorageOptionError) as info:
        load_meta("alias", repo=repo)
    assert "\n" not in str(info.value) and "victimsas" not in str(info.value)
    assert got == [], "a connection reached the host the repo's account_name named"


def test_an_azure_account_name_is_still_taken() -> None:
    # A real account name (Azure's: lower-case letters and digits), from the repo or you.
    assert (
        explain_storage_options(
            "az://c/x", storage_options={"account_name": "mystorage01", "anon": True}
        ).problem
        is None
    )
    # With account_host the name is not part of the host (Azurite's own account, say).
    options = {"account_name": "dev_store", "account_host": "127.0.0.1:10000", "anon": True}
    assert explain_storage_options("az://c/x", storage_options=options).problem is None


def test_storage_emulator_host_without_a_scheme_names_the_repos_endpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # gcsfs reads `localhost:4443` as http://localhost:4443: your own endpoint, so a repo
    # naming it is not refused; another port still is.
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "localhost:4443")
    monkeypatch.setitem(fsspec.config.conf, "gs", {"token": "/home/me/key.json"})
    repo = repo_with_remote(tmp_path, "gs://bucket", {"endpoint_url": "http://localhost:4443"})
    assert explain_storage_options("gs://bucket/m.mlem", repo=repo).problem is None
    other = repo_with_remote(tmp_path / "o", "gs://bucket", {"endpoint_url": "http://localhost:1"})
    assert explain_storage_options("gs://bucket/m.mlem", repo=other).problem is not None
