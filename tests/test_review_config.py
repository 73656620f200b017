"""Hostile review of issue 14 (configuration precedence): each test fails on the commit
before its fix.

- a repo's remote could send your credentials (fsspec's configuration, the SDK's
  environment) to an endpoint of its choosing;
- with gcsfs's default class for gs:// (`ExtendedGcsFileSystem`, unless
  `GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`), every gs:// call was refused: "unknown storage
  option requests_timeout";
- adlfs's environment credentials silently replaced the credential the options chose;
- `-o`: a repeated key silently took the last value; a credential was read as YAML
  (`key=0123` became 83);
- (second review) adlfs makes its host of `account_name`, pasted in as it is: a repo's
  `account_name: evil.example.com/x` sent your `$AZURE_STORAGE_SAS_TOKEN` there;
  `STORAGE_EMULATOR_HOST=localhost:4443` (no scheme, as gcsfs takes it) did not vouch
  for a repo's `endpoint_url: http://localhost:4443`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec.config
import pytest
import typer
import yaml
from test_cli import SCRIPT

from mlemremote import _options
from mlemremote._cli import parse_storage_options
from mlemremote.api import configured, explain_storage_options, init, load_meta
from mlemremote.core.errors import StorageOptionError
from mlemremote.core.objects import MlemLink

pytestmark = pytest.mark.backends("none")

KEY_ID = "AKIAVICTIMKEY00001"
SECRET = "victim-secret-value-0001"
SAS = "sv=2024-01-01&sig=victimsasVICTIMSAS"


@pytest.fixture
def listener() -> Iterator[tuple[str, list[bytes]]]:
    """A port that records whatever reaches it (and answers 500)."""
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
                    conn.sendall(
                        b"HTTP/1.1 500 x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", got
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


# -- a repo's remote and your credentials ------------------------------------------------------
@pytest.mark.parametrize("where", ["fsspec", "environment"])
def test_a_repos_endpoint_never_gets_your_s3_credentials(
    where: str,
    listener: tuple[str, list[bytes]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    url, got = listener
    if where == "fsspec":
        monkeypatch.setitem(fsspec.config.conf, "s3", {"key": KEY_ID, "secret": SECRET})
    else:
        monkeypatch.delitem(fsspec.config.conf, "s3", raising=False)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    repo = repo_with_remote(tmp_path, "s3://bucket", {"endpoint_url": url})
    with configured(retry_attempts=1, connect_timeout=2), pytest.raises(StorageOptionError) as info:
        load_meta("alias", repo=repo)
    message = str(info.value)
    assert "endpoint_url (the repo's remote 'theirs'" in message and "\n" not in message
    assert KEY_ID not in message and SECRET not in message
    assert not any(KEY_ID.encode() in request for request in got), (
        "the key reached the repo's endpoint"
    )
    assert got == []
    # The explanation says so too; the command line, in one line.
    found = explain_storage_options("s3://bucket/m.mlem", repo=repo)
    assert found.problem is not None and "the repo's remote" in found.problem
    assert KEY_ID not in json.dumps(found.as_dict()) and SECRET not in json.dumps(found.as_dict())


def test_a_repos_endpoint_never_gets_your_gcs_token_or_azure_sas(
    listener: tuple[str, list[bytes]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, got = listener
    # GCS: a token (sent as a bearer token) from fsspec's configuration.
    monkeypatch.setitem(fsspec.config.conf, "gs", {"token": "/home/me/key.json"})
    repo = repo_with_remote(tmp_path / "g", "gs://bucket", {"endpoint_url": url})
    with pytest.raises(StorageOptionError, match=r"endpoint_url \(the repo.s remote"):
        load_meta("alias", repo=repo)
    # Azure: a SAS token (sent in the query) from the environment, even with `anon`.
    monkeypatch.delitem(fsspec.config.conf, "abfs", raising=False)
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", SAS)
    repo = repo_with_remote(
        tmp_path / "a",
        "az://container",
        {"account_name": "a", "account_host": url[7:], "anon": True},
    )
    with pytest.raises(StorageOptionError) as info:
        load_meta("alias", repo=repo)
    assert "AZURE_STORAGE_SAS_TOKEN" in str(info.value) and "victimsas" not in str(info.value)
    assert got == []


def test_a_repos_endpoint_is_used_when_you_trust_it(
    monkeypatch: pytest.MonkeyPatch, no_user_config: Path, tmp_path: Path
) -> None:
    endpoint = "https://minio.example.com"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    repo = repo_with_remote(tmp_path, "s3://bucket/models", {"endpoint_url": endpoint})

    def problem() -> str | None:
        return explain_storage_options("s3://bucket/models/m.mlem", repo=repo).problem

    assert problem() is not None
    # Your remote for a shorter URL (a whole bucket, every bucket) does not vouch for it.
    no_user_config.write_text(yaml.safe_dump({"remotes": {"all": {"url": "s3://bucket"}}}))
    assert problem() is not None
    # Nor one for a longer URL: it was not written for what the repo says of a shorter one.
    no_user_config.write_text(yaml.safe_dump({"remotes": {"x": {"url": "s3://bucket/models/m"}}}))
    assert explain_storage_options("s3://bucket/models/m/x", repo=repo).problem is not None
    # Your remote for the same URL (the documented split: the repo says where, you who).
    no_user_config.write_text(yaml.safe_dump({"remotes": {"m": {"url": "s3://bucket/models/"}}}))
    assert problem() is None
    no_user_config.unlink()
    # The same endpoint named by your environment or fsspec's configuration.
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint + "/")
    assert problem() is None
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint})
    assert problem() is None
    monkeypatch.delitem(fsspec.config.conf, "s3")
    # A repo's remote for every s3:// URL borrows none of your remotes.
    broad = repo_with_remote(tmp_path / "broad", "s3://", {"endpoint_url": endpoint})
    no_user_config.write_text(yaml.safe_dump({"remotes": {"b": {"url": "s3://bucket"}}}))
    assert explain_storage_options("s3://bucket/m.mlem", repo=broad).problem is not None
    no_user_config.unlink()
    # Anonymous access sends no credentials.
    repo = repo_with_remote(
        tmp_path / "anon", "s3://bucket", {"endpoint_url": endpoint, "anon": True}
    )
    assert explain_storage_options("s3://bucket/m.mlem", repo=repo).problem is None


def test_the_cli_refuses_a_repos_endpoint_in_one_line(
    listener: tuple[str, list[bytes]], tmp_path: Path
) -> None:
    url, got = listener
    repo = repo_with_remote(tmp_path, "s3://bucket", {"endpoint_url": url})
    env = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
    done = subprocess.run(
        [SCRIPT, "show", "alias", "-r", repo], capture_output=True, text=True, timeout=60,
        env={**os.environ, **env},
    )  # fmt: skip
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "the repo's remote" in done.stderr and KEY_ID not in done.stderr
    assert got == []


# -- gcsfs's default class ----------------------------------------------------------------------
def test_gcsfs_extended_class_takes_gcsfs_options() -> None:
    extended = pytest.importorskip("gcsfs.extended_gcsfs").ExtendedGcsFileSystem
    layers = [_options.Layer(_options.CALL, {"token": "anon", "project": "p"})]
    kwargs = _options.plan_for(extended, layers, fsspec_config=False).kwargs
    assert kwargs["project"] == "p" and "requests_timeout" in kwargs
    with pytest.raises(StorageOptionError, match="did you mean project"):
        _options.plan_for(extended, [_options.Layer(_options.CALL, {"projct": "p"})])


# -- adlfs's environment credentials --------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "variable", "refused"),
    [
        ({"sas_token": SAS}, "AZURE_STORAGE_ACCOUNT_KEY", True),
        ({"client_id": "i", "client_secret": "s3cr3t-s3cr3t", "tenant_id": "t"},
         "AZURE_STORAGE_SAS_TOKEN", True),
        ({"anon": True}, "AZURE_STORAGE_ACCOUNT_KEY", True),
        ({"account_key": "bXkta2V5LXZhbHVl"}, "AZURE_STORAGE_SAS_TOKEN", False),
        ({"sas_token": SAS}, "AZURE_STORAGE_CLIENT_ID", False),
    ],
    ids=["sas-vs-env-key", "principal-vs-env-sas", "anon-vs-env-key", "key-vs-env-sas",
         "sas-vs-env-principal"],
)  # fmt: skip
def test_azure_credential_from_the_environment_never_silently_wins(
    options: dict[str, Any], variable: str, refused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(fsspec.config.conf, "abfs", raising=False)
    monkeypatch.setenv(variable, "ZW52LWNyZWRlbnRpYWwtdmFsdWU=")
    call = {"account_name": "mine", **options}
    found = explain_storage_options("az://c/x", storage_options=call)
    if not refused:
        assert found.problem is None
        return
    assert found.problem is not None and variable in found.problem
    assert "ZW52" not in found.problem and "victimsas" not in found.problem
    with pytest.raises(StorageOptionError):
        load_meta("az://c/x", storage_options=call)


# -- the command line's -o ---------------------------------------------------------------------
def test_dash_o_refuses_a_repeated_key() -> None:
    for items in (
        ["key=a", "key=b"],
        ["client_kwargs={endpoint_url: a}", "client_kwargs.endpoint_url=b"],
    ):
        with pytest.raises(typer.BadParameter, match="given twice"):
            parse_storage_options(items)
    done = subprocess.run(
        [SCRIPT, "show", "--explain-config", "s3://b/x", "-o", "key=hunter2a",
         "-o", "key=hunter2b"], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "given twice" in done.stderr and "hunter2" not in done.stderr


def test_dash_o_takes_a_credential_as_written() -> None:
    options = parse_storage_options([
        "key=0123", "secret=1e10", "client_kwargs.aws_session_token=@tok:en", "sas_token=*x",
        "token={type: service_account}", "anon=true", "connection_timeout=5",
        "connection_string=AccountName=a;AccountKey=a2V5==",
    ])  # fmt: skip
    assert options == {
        "key": "0123", "secret": "1e10", "client_kwargs": {"aws_session_token": "@tok:en"},
        "sas_token": "*x", "token": {"type": "service_account"}, "anon": True,
        "connection_timeout": 5, "connection_string": "AccountName=a;AccountKey=a2V5==",
    }  # fmt: skip


# -- a repo's Azure account and GCS emulator host (second review) ---------------------------
@pytest.mark.parametrize(
    "spelling", ["localhost:{port}/x", "127.0.0.1:{port}#", "localhost:{port}?"]
)
def test_a_repos_azure_account_name_is_no_host_of_its_choosing(
    spelling: str,
    listener: tuple[str, list[bytes]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    url, got = listener
    port = int(url.rsplit(":", 1)[1])
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
