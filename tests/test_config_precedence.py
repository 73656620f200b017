"""Issue 14: every source of storage options merges in one documented order.

Sources, most specific first: the call (C: `storage_options=`, `-o`), your remote (U), the
repo's remote (R), fsspec's configuration (F), the SDK's environment (E). For every pair,
on each cloud, the more specific source gives the emulator's endpoint and the other one a
closed port (and, where it may, credentials or a token that would fail): the call succeeds
only if the more specific one wins, and the explanation says so. The two sources spell the
option differently where the backend has two spellings (s3fs's `endpoint_url` and
`client_kwargs.endpoint_url`; gcsfs's `anon: true` and `token`).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import fsspec.config
import pytest
import yaml
from conftest import Backend, make_backend
from services import S3_KEY, S3_SECRET, Endpoints
from test_cli import SCRIPT

from mlemremote import _options
from mlemremote._location import filesystem
from mlemremote._remotes import Remote
from mlemremote.api import configured, explain_storage_options, init, link, load_meta
from mlemremote.core.errors import MlemError, RemoteConfigError, StorageOptionError
from mlemremote.core.objects import MlemLink, MlemModel

CLOSED = "http://127.0.0.1:9"
CLOUDS = ["s3-moto", "s3-seaweedfs", "gcs", "azure"]
PAIRS = ["CU", "CR", "CF", "CE", "UR", "UF", "UE", "RF", "RE", "FE"]
LABEL = {
    "C": "the call's storage options",
    "U": "your remote",
    "R": "the repo's remote",
    "F": "fsspec's configuration",
    "E": "the SDK's environment",
}
CONF = {"s3": "s3", "gs": "gs", "az": "abfs"}
# A service-account token gcsfs cannot use: whoever passes it fails at once.
BOGUS_TOKEN = {"type": "service_account", "client_email": "x@example.com"}


def closed_azure(connection_string: str) -> str:
    parts = [p for p in connection_string.split(";") if p and not p.startswith("BlobEndpoint=")]
    account = next(p.split("=", 1)[1] for p in parts if p.startswith("AccountName="))
    return ";".join([*parts, f"BlobEndpoint={CLOSED}/{account}"]) + ";"


class Sources:
    """Each source's options for one cloud: the emulator's (`right`) or a closed port's."""

    def __init__(self, backend: Backend, monkeypatch: pytest.MonkeyPatch, pair: str) -> None:
        self.backend = backend
        self.pair = pair
        self.mp = monkeypatch
        so = backend.storage_options or {}
        if backend.scheme == "s3":
            self.url = so["client_kwargs"]["endpoint_url"]
        elif backend.scheme == "gs":
            self.url = so["endpoint_url"]
        else:
            self.url = so["connection_string"]

    def options(self, source: str, right: bool, higher: bool) -> dict[str, Any]:
        """What `source` says (the repo's remote holds no secrets)."""
        scheme, shared = self.backend.scheme, source == "R"
        if scheme == "s3":
            endpoint = self.url if right else CLOSED
            # The more specific source spells it as `-o client_kwargs.endpoint_url=` does,
            # the other as FSSPEC_S3_ENDPOINT_URL does: the TypeError.
            spelled = {"client_kwargs": {"endpoint_url": endpoint}} if higher else {}
            spelled = spelled or {"endpoint_url": endpoint}
            return spelled if shared else {**spelled, "key": S3_KEY, "secret": S3_SECRET}
        if scheme == "gs":
            if right:
                return {"endpoint_url": self.url, "anon": True, "project": "test"}
            return {"endpoint_url": CLOSED} if shared else {"endpoint_url": CLOSED,
                                                             "token": BOGUS_TOKEN}  # fmt: skip
        # Azure: a connection string is a secret, so the repo's remote can only name an
        # account (which the more specific connection string replaces whole), or set
        # what is not secret: with it, the connect timeout is the value that must win,
        # and the connection string is the emulator's wherever it is given.
        timeout = 7 if right else 3
        if shared:
            if right:
                return {"connection_timeout": timeout}
            return {"account_name": "elsewhere", "account_host": "127.0.0.1:9",
                    "connection_timeout": timeout}  # fmt: skip
        good = right or "R" in self.pair
        return {"connection_string": self.url if good else closed_azure(self.url),
                "connection_timeout": timeout}  # fmt: skip

    def environment(self, right: bool) -> None:
        """The SDK's own variables (the conftest's, a closed port, are the default)."""
        if self.backend.scheme == "s3":
            self.mp.setenv("AWS_ENDPOINT_URL", self.url if right else CLOSED)
            self.mp.setenv("AWS_ACCESS_KEY_ID", S3_KEY)
            self.mp.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
        elif self.backend.scheme == "gs":
            self.mp.setenv("STORAGE_EMULATOR_HOST", self.url if right else CLOSED)
        else:
            value = self.url if right or "R" in self.pair else closed_azure(self.url)
            self.mp.setenv("AZURE_STORAGE_CONNECTION_STRING", value)

    def observed(self, fs: Any) -> Any:
        """What the filesystem was made with, for the value under test."""
        if self.backend.scheme == "s3":
            assert "endpoint_url" not in fs.client_kwargs  # (never passed twice)
            return fs.endpoint_url
        if self.backend.scheme == "gs":
            assert fs.credentials.method == "anon"
            return fs._endpoint
        return fs.connection_string, fs._timeout_kwargs.get("connection_timeout")

    def expected(self, pair: str) -> Any:
        if self.backend.scheme != "az":
            return self.url
        return self.url, 7

    def option_name(self) -> str:
        return {"s3": "endpoint_url", "gs": "endpoint_url", "az": "connection_string"}[
            self.backend.scheme
        ]


@pytest.fixture
def cloud_model(
    request: pytest.FixtureRequest, endpoints: Endpoints, tmp_path: Path
) -> tuple[Backend, str]:
    backend = make_backend(request.param, endpoints, tmp_path / "cloud")
    model = backend.uri("models", "rf")
    MlemModel(model_type={"on": backend.name}).dump(model, storage_options=backend.storage_options)
    return backend, model


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("cloud_model", CLOUDS, indirect=True)
def test_the_more_specific_source_wins(
    cloud_model: tuple[Backend, str],
    pair: str,
    monkeypatch: pytest.MonkeyPatch,
    no_user_config: Path,
    tmp_path: Path,
) -> None:
    backend, model = cloud_model
    sources = Sources(backend, monkeypatch, pair)
    higher, lower = pair
    monkeypatch.delitem(fsspec.config.conf, CONF[backend.scheme], raising=False)
    said = {higher: True, lower: False}  # who gives the emulator's values

    call = sources.options("C", True, True) if "C" in pair else None
    if "E" in pair:
        sources.environment(said["E"])
    if "F" in pair:
        monkeypatch.setitem(
            fsspec.config.conf, CONF[backend.scheme], sources.options("F", said["F"], higher == "F")
        )
    if "U" in pair:
        options = sources.options("U", said["U"], higher == "U")
        secrets = {k: options.pop(k) for k in ("key", "secret") if k in options}
        for name, value in secrets.items():  # (a secret comes from the environment)
            monkeypatch.setenv(f"MINE_{name.upper()}", value)
        remote = {"url": backend.root, "options": options,
                  "env": {name: f"MINE_{name.upper()}" for name in secrets}}  # fmt: skip
        no_user_config.write_text(yaml.safe_dump({"remotes": {"mine": remote}}))

    with configured(retry_attempts=1, connect_timeout=2):
        if "R" not in pair:
            loaded = load_meta(model, storage_options=call)
            explained = explain_storage_options(model, storage_options=call)
        else:
            repo = str(tmp_path / "repo")
            init(repo)
            remote = {
                "url": backend.root,
                "options": sources.options("R", said["R"], higher == "R"),
            }
            (Path(repo) / ".mlem" / "config.yaml").write_text(
                yaml.safe_dump({"remotes": {"theirs": remote}})
            )
            if "C" in pair:
                # The call's options reach the locations named in it; the target repo's
                # remote (which reaches the source `link` reads when the call gives no
                # options) is never mixed into them. In the merge step, the call wins.
                made = link(model, target="alias", target_repo=repo, storage_options=call)
                assert made.path == model + ".mlem"
                layers = _options.option_layers(
                    call, (None, Remote("theirs", backend.root, remote["options"], origin="r"))
                )
                kwargs = _options.plan_for(backend.scheme, layers).kwargs
                if backend.scheme == "s3":
                    assert kwargs["endpoint_url"] == sources.url
                return
            MlemLink(path=model + ".mlem", link_type="model").dump("alias", repo=repo)
            if backend.scheme == "s3" and higher == "R":
                # The repo's endpoint would get your credentials (the lower source's):
                # refused until one of your own settings names the same endpoint.
                with pytest.raises(StorageOptionError) as info:
                    load_meta("alias", repo=repo)
                assert "endpoint_url (the repo's remote 'theirs'" in str(info.value)
                assert S3_SECRET not in str(info.value) and S3_KEY not in str(info.value)
                monkeypatch.setenv("AWS_ENDPOINT_URL_S3", sources.url)
            loaded = load_meta("alias", repo=repo)
            explained = explain_storage_options(model, repo=repo)

    assert loaded.model_type == {"on": backend.name}
    assert sources.observed(loaded.location.fs) == sources.expected(pair)
    assert explained.problem is None
    used = {r.option.split(" ")[0]: r for r in explained.rows if r.used}
    name = sources.option_name() if not (backend.scheme == "az" and "R" in pair) else (
        "connection_timeout"
    )  # fmt: skip
    if higher == "E":  # pragma: no cover - the environment is never the more specific
        raise AssertionError
    assert used[name].source.startswith(LABEL[higher]), explained.rows
    losers = [r for r in explained.rows if not r.used and r.source.startswith(LABEL[lower])]
    if backend.scheme == "az" and pair == "RE":
        # The environment gives no timeout here: its connection string is used, since
        # nothing above gives one.
        row = next(r for r in explained.rows if r.option == "$AZURE_STORAGE_CONNECTION_STRING")
        assert row.used and row.value == "***"
    else:
        assert losers, explained.rows
    for row in explained.rows:
        for secret in (S3_SECRET, "AccountKey="):
            assert secret not in row.value


# -- the issue's own case, on the command line -------------------------------------------
@pytest.mark.parametrize("backend", ["s3-moto", "s3-seaweedfs"], indirect=True)
def test_fsspec_variable_and_dash_o_do_not_collide(backend: Backend) -> None:
    so = backend.storage_options or {}
    url = so["client_kwargs"]["endpoint_url"]
    repo = backend.uri("repo")
    init(repo, storage_options=so)
    MlemModel().dump("rf", repo=repo, storage_options=so)
    link("rf", source_repo=repo, target="latest", target_repo=repo, storage_options=so)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSSPEC_")}
    env |= {
        "FSSPEC_S3_ENDPOINT_URL": CLOSED,
        "FSSPEC_S3_KEY": S3_KEY,
        "FSSPEC_S3_SECRET": S3_SECRET,
    }
    env |= {"MLEMREMOTE_RETRY_ATTEMPTS": "1", "MLEMREMOTE_CONNECT_TIMEOUT": "1"}
    o = ["-o", f"client_kwargs.endpoint_url={url}"]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=120, env=env)

    done = cli("show", "latest", "-r", repo, *o)
    assert done.returncode == 0, done.stderr
    assert "TypeError" not in done.stderr and "rf.mlem" in done.stdout
    explained = cli("show", "--explain-config", "latest", "-r", repo, *o)
    assert explained.returncode == 0, explained.stderr
    lines = explained.stdout.splitlines()
    used = next(line for line in lines if line.lstrip().startswith("endpoint_url (as client"))
    assert url in used and "the call's storage options" in used
    overridden = next(line for line in lines if "$FSSPEC_S3_ENDPOINT_URL" in line)
    assert CLOSED in overridden and "overridden by the call" in overridden
    assert S3_SECRET not in explained.stdout + explained.stderr
    as_json = json.loads(cli("show", "--explain-config", "latest", "-r", repo, *o, "--json").stdout)
    rows = {r["option"]: r for r in as_json["options"] if r["used"]}
    assert rows["secret"]["value"] == "***" and "FSSPEC_S3_SECRET" in rows["secret"]["source"]
    for flag in (["--rev", "main"], ["--no-follow"]):  # (it reads no object: refused)
        refused = cli("show", "--explain-config", "latest", "-r", repo, *flag)
        assert refused.returncode == 2 and flag[0] in refused.stderr, refused.stderr
    # Without -o: fsspec's configuration is all there is (a closed port): a clean error.
    failed = cli("show", "latest", "-r", repo)
    assert failed.returncode == 2 and len(failed.stderr.strip().splitlines()) == 1


# -- conflicts, unknown options, masking ----------------------------------------------------
@pytest.mark.backends("none")
@pytest.mark.parametrize(
    ("scheme", "options", "names"),
    [
        ("s3", {"endpoint_url": "http://a", "client_kwargs": {"endpoint_url": "http://b"}},
         ["endpoint_url", "client_kwargs.endpoint_url"]),
        ("s3", {"key": "k-one", "username": "k-two"}, ["username", "key"]),
        ("s3", {"anon": True, "key": "k-one"}, ["anon", "key"]),
        ("s3", {"profile": "p", "secret": "hunter2hunter2"}, ["profile", "secret"]),
        ("az", {"connection_string": "AccountName=a;AccountKey=hunter2hunter2",
                "account_name": "b"}, ["connection_string", "account_name"]),
        ("az", {"account_name": "a", "account_key": "hunter2hunter2", "sas_token": "sv=1"},
         ["account_key", "sas_token"]),
        ("gs", {"anon": True, "token": "/keys/hunter2.json"}, ["anon", "token"]),
    ],
    ids=["s3-endpoint", "s3-key", "s3-anon-key", "s3-profile-secret", "az-string-account",
         "az-key-sas", "gcs-anon-token"],
)  # fmt: skip
def test_two_ways_in_one_source_are_refused_by_name(
    scheme: str, options: dict[str, Any], names: list[str]
) -> None:
    with pytest.raises(StorageOptionError) as info:
        load_meta(f"{scheme}://bucket/x", storage_options=options)
    message = str(info.value)
    assert "\n" not in message and "the call's storage options" in message
    for name in names:
        assert name in message
    assert "hunter2" not in message and "http://a" not in message and "k-one" not in message


@pytest.mark.backends("none")
def test_the_same_value_in_two_spellings_is_one_option() -> None:
    options = {"endpoint_url": "http://a", "client_kwargs": {"endpoint_url": "http://a"}}
    fs = filesystem("s3", options)
    assert fs.endpoint_url == "http://a" and "endpoint_url" not in fs.client_kwargs
    fs.connect()  # botocore's client is made: no TypeError about endpoint_url


@pytest.mark.backends("none")
def test_fsspec_configuration_under_another_spelling_is_not_passed_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(fsspec.config.conf, "s3", {
        "client_kwargs": {"endpoint_url": CLOSED, "region_name": "eu-west-3"},
        "username": "conf-key", "anon": True,
    })  # fmt: skip
    fs = filesystem(
        "s3", {"endpoint_url": "http://a", "key": "mine-key-0001", "secret": "s3cr3t-value"}
    )
    assert fs.endpoint_url == "http://a" and fs.key == "mine-key-0001" and not fs.anon
    assert fs.client_kwargs == {"region_name": "eu-west-3"}  # merged key by key
    fs.connect()


@pytest.mark.backends("none")
@pytest.mark.parametrize(
    ("scheme", "option", "hint"),
    [("s3", "endpont_url", "endpoint_url"), ("s3", "region_name", "client_kwargs.region_name"),
     ("s3", "client_kwargs.endpoint", "client_kwargs.endpoint_url"),
     ("gs", "projct", "project"), ("az", "acount_name", "account_name")],
)  # fmt: skip
def test_an_unknown_option_is_named_with_its_source(scheme: str, option: str, hint: str) -> None:
    *parents, last = option.split(".")
    options: dict[str, Any] = {last: "hunter2hunter2"}
    for parent in reversed(parents):
        options = {parent: options}
    with pytest.raises(StorageOptionError) as info:
        load_meta(f"{scheme}://bucket/x", storage_options=options)
    message = str(info.value)
    assert f"unknown storage option {option} (the call's storage options" in message
    assert f"did you mean {hint}?" in message and "hunter2" not in message


@pytest.mark.backends("none")
def test_an_unknown_option_in_fsspec_configuration_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(fsspec.config.conf, "s3", {"regoin": "x"})
    monkeypatch.setenv("FSSPEC_S3_REGOIN", "x")
    with pytest.raises(
        StorageOptionError, match=r"regoin \(fsspec's configuration .*FSSPEC_S3_REGOIN"
    ):
        load_meta("s3://bucket/x")


@pytest.mark.backends("none")
def test_azure_account_against_another_accounts_connection_string_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """adlfs prefers $AZURE_STORAGE_CONNECTION_STRING to a named account: a silent
    switch of account, refused by name; the same account is fine."""
    monkeypatch.delitem(fsspec.config.conf, "abfs", raising=False)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "AccountName=theirs;AccountKey=hunter2==")
    with pytest.raises(StorageOptionError) as info:
        load_meta("az://c/x", storage_options={"account_name": "mine", "anon": True})
    assert "account_name" in str(info.value) and "AZURE_STORAGE_CONNECTION_STRING" in str(
        info.value
    )
    assert "hunter2" not in str(info.value)
    found = explain_storage_options("az://c/x", storage_options={"account_name": "theirs"})
    assert found.problem is None
    # The same account at another host, or with credentials of its own: ignored by adlfs.
    for other in ({"account_host": "elsewhere.example"}, {"sas_token": "sv=hunter2"}):
        found = explain_storage_options(
            "az://c/x", storage_options={"account_name": "theirs", **other}
        )
        assert found.problem is not None and next(iter(other)) in found.problem
        assert "hunter2" not in found.problem


@pytest.mark.backends("none")
def test_explanations_mask_every_secret(
    monkeypatch: pytest.MonkeyPatch, no_user_config: Path
) -> None:
    secrets = ["s3cr3t-from-call", "s3cr3t-from-env", "s3cr3t-from-conf", "s3cr3t-session"]
    monkeypatch.setenv("MINE_SECRET", secrets[1])
    monkeypatch.setenv("AWS_SESSION_TOKEN", secrets[3])
    monkeypatch.setitem(fsspec.config.conf, "s3", {"secret": secrets[2], "endpoint_url": CLOSED})
    no_user_config.write_text(yaml.safe_dump({"remotes": {"mine": {
        "url": "s3://bucket", "env": {"secret": "MINE_SECRET"},
        "options": {"client_kwargs": {"aws_session_token": "s3cr3t-session"}}}}}))  # fmt: skip
    found = explain_storage_options(
        "s3://bucket/x", storage_options={"password": secrets[0], "token": "s3cr3t-session"}
    )
    text = json.dumps(found.as_dict())
    for secret in secrets:
        assert secret not in text
    rows = {(r.option, r.used): r for r in found.rows}
    assert rows["secret (as password)", True].source.startswith(LABEL["C"])
    assert any("$MINE_SECRET" in r.source and not r.used for r in found.rows)
    assert rows["$AWS_SESSION_TOKEN", False].value == "***"
    # A number under a secret's name, a header inside `*_kwargs`: masked all the same.
    found = explain_storage_options("gs://b/x", storage_options={
        "session_kwargs": {"headers": {"Authorization": "Basic dXNlcjpzM2NyM3Q="}},
        "token": 12345678})  # fmt: skip
    text = json.dumps(found.as_dict())
    assert "dXNlcjpzM2NyM3Q=" not in text and "12345678" not in text
    # The same on the command line, with a token dict for GCS.
    done = subprocess.run(
        [SCRIPT, "show", "--explain-config", "gs://b/x", "-o",
         'token={"type": "service_account", "private_key": "s3cr3t-pem"}'],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "s3cr3t-pem" not in done.stdout + done.stderr and "token" in done.stdout


@pytest.mark.backends("none")
def test_the_repos_config_never_overrides_yours(no_user_config: Path, tmp_path: Path) -> None:
    """Even a longer (more specific) url in the repo's config: your options win, and the
    repo's fill only what you leave out."""
    repo = str(tmp_path / "repo")
    init(repo)
    theirs = {"url": "s3://bucket/models", "options": {"endpoint_url": "https://theirs.example",
              "client_kwargs": {"region_name": "eu-west-3"}}}  # fmt: skip
    (Path(repo) / ".mlem" / "config.yaml").write_text(yaml.safe_dump({"remotes": {"t": theirs}}))
    mine = {"url": "s3://bucket", "options": {"endpoint_url": "https://users-own.example"}}
    no_user_config.write_text(yaml.safe_dump({"remotes": {"m": mine}}))
    found = explain_storage_options("s3://bucket/models/rf.mlem", repo=repo)
    used = {r.option: r for r in found.rows if r.used}
    assert used["endpoint_url"].value == "https://users-own.example"
    assert used["endpoint_url"].source.startswith(LABEL["U"])
    assert used["client_kwargs.region_name"].source.startswith(LABEL["R"])
    assert "a link target read from repo" in found.how
    # A credential spelling in the repo's config (a profile) does not replace yours.
    theirs["options"] = {"profile": "theirs"}
    (Path(repo) / ".mlem" / "config.yaml").write_text(yaml.safe_dump({"remotes": {"t": theirs}}))
    mine["options"] = {"key": "mine-key", "secret": "mine-secret-1234"}
    no_user_config.write_text(yaml.safe_dump({"remotes": {"m": mine}}))
    found = explain_storage_options("s3://bucket/models/rf.mlem", repo=repo)
    assert "profile" not in {r.option for r in found.rows if r.used}
    # And secrets there are still refused, before anything is asked of the bucket.
    theirs["options"] = {"client_kwargs": {"aws_secret_access_key": "hunter2hunter2"}}
    (Path(repo) / ".mlem" / "config.yaml").write_text(yaml.safe_dump({"remotes": {"t": theirs}}))
    with pytest.raises(RemoteConfigError) as info:
        explain_storage_options("s3://bucket/models/rf.mlem", repo=repo)
    assert "hunter2" not in str(info.value)


@pytest.mark.backends("none")
def test_explain_names_how_a_uri_is_reached(tmp_path: Path) -> None:
    local = explain_storage_options(str(tmp_path / "x"))
    assert local.rows == [] and "local disk" in local.how
    with pytest.raises(MlemError):
        explain_storage_options("ftp://host/x")
    with pytest.raises(MlemError):
        explain_storage_options("s3://b/x", storage_options="notadict")  # type: ignore[arg-type]


@pytest.mark.backends("none")
@pytest.mark.parametrize(
    "options",
    [{"use_ssl": False}, {"client_kwargs": {"verify": False}},
     {"config_kwargs": {"proxies": {"https": "http://proxy.example:3128"}}},
     {"session_kwargs": {"trust_env": True}}],
    ids=["use_ssl", "verify", "proxies", "session_kwargs"],
)  # fmt: skip
def test_a_repos_config_cannot_weaken_or_reroute_your_connections(
    options: dict[str, Any], tmp_path: Path
) -> None:
    """Your credentials (fsspec's configuration, the SDK's environment) reach the bucket
    a repo's remote names: the repo may say where it is, never how to connect."""
    repo = str(tmp_path / "repo")
    init(repo)
    remote = {"url": "s3://bucket", "options": {"endpoint_url": "https://s3.example", **options}}
    (Path(repo) / ".mlem" / "config.yaml").write_text(yaml.safe_dump({"remotes": {"t": remote}}))
    MlemLink(path="s3://bucket/m.mlem", link_type="model").dump("alias", repo=repo)
    with pytest.raises(RemoteConfigError, match="changes how your connections are made"):
        load_meta("alias", repo=repo)
