"""Issue 3, part 2: remotes, storage options per URL prefix, never in YAML.

The alias repo lives on each backend in turn; the model lives in a bucket on another
server that fsspec's defaults cannot reach (its configuration for that protocol is
removed), so the load succeeds only through the remote's settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fsspec.config
import pytest
import yaml
from conftest import Backend, make_backend
from services import Endpoints

from mlemremote.api import check, configured, init, link, load_many, load_meta
from mlemremote.core.errors import MlemError, RemoteConfigError
from mlemremote.core.objects import MlemLink, MlemModel

PROTOCOL_CONF = {"s3": "s3", "gs": "gs", "az": "abfs"}


def write_config(path: Path | str, backend: Backend | None, remotes: dict[str, Any]) -> None:
    text = yaml.safe_dump({"remotes": remotes})
    if backend is None:
        Path(path).write_text(text)
    else:
        backend.write(str(path), text)


def repo_with_remotes(tmp_path: Path, remotes: dict[str, Any]) -> str:
    """A local repo whose config names `remotes`."""
    repo = str(tmp_path / "repo")
    init(repo)
    write_config(Path(repo) / ".mlem" / "config.yaml", None, remotes)
    return repo


def wrong_endpoint(endpoints: Endpoints) -> dict[str, str]:
    """Options that reach a server without the far bucket: whoever applies them fails."""
    return {"endpoint_url": endpoints.s3["moto"]}


@pytest.fixture
def far_model(
    endpoints: Endpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: Any
) -> tuple[Backend, dict[str, Any], dict[str, str]]:
    """A model in a bucket that only a remote can reach: the backend, the repo-config
    (non-secret) options and the user-config `env` that supply the rest."""
    kind = request.param
    name = {"s3": "s3-seaweedfs", "gs": "gcs", "az": "azure"}[kind]
    far = make_backend(name, endpoints, tmp_path / "far")
    MlemModel(model_type={"far": kind}).dump(
        far.uri("models", "rf"), storage_options=far.storage_options
    )
    monkeypatch.delitem(fsspec.config.conf, PROTOCOL_CONF[kind], raising=False)
    so = far.storage_options or {}
    if kind == "s3":
        shared = {"endpoint_url": so["client_kwargs"]["endpoint_url"]}
        monkeypatch.setenv("FAR_KEY", so["key"])
        monkeypatch.setenv("FAR_SECRET", so["secret"])
        env = {"key": "FAR_KEY", "secret": "FAR_SECRET"}
    elif kind == "gs":
        shared = {"endpoint_url": so["endpoint_url"], "token": "anon", "project": "test"}
        env = {}
    else:
        shared = {}
        monkeypatch.setenv("FAR_AZURE", so["connection_string"])
        env = {"connection_string": "FAR_AZURE"}
    return far, shared, env


@pytest.mark.parametrize("far_model", ["s3", "gs", "az"], indirect=True)
def test_link_crosses_into_a_remote(
    backend: Backend,
    far_model: tuple[Backend, dict[str, Any], dict[str, str]],
    no_user_config: Path,
) -> None:
    far, shared, env = far_model
    so = backend.storage_options
    repo = backend.uri("repo")
    init(repo, storage_options=so)
    bucket_url = far.root
    write_config(backend.uri("repo", ".mlem", "config.yaml"), backend,
                 {"far": {"url": bucket_url, "options": shared}})  # fmt: skip
    if env:
        write_config(no_user_config, None, {"far": {"url": bucket_url, "env": env}})
    MlemLink(path=far.uri("models", "rf.mlem"), link_type="model").dump(
        "alias", repo=repo, storage_options=so
    )
    loaded = load_meta("alias", repo=repo, storage_options=so)
    assert loaded.model_type == {"far": far.scheme}
    # The bulk calls apply the repo's remotes too.
    [many] = load_many(["alias"], repo=repo, storage_options=so)
    assert isinstance(many, MlemModel) and many.model_type == {"far": far.scheme}
    assert [r.status for r in check(repo, storage_options=so)] == ["external"]
    # Nothing of the remote's settings was written anywhere.
    secrets = [str(v) for v in (far.storage_options or {}).values() if isinstance(v, str)]
    for files in (backend.files(), far.files()):
        for name, data in files.items():
            if name.endswith("config.yaml"):
                continue
            for secret in secrets:
                if secret not in ("anon", "test"):
                    assert secret.encode() not in data, name


@pytest.mark.backends("local", "s3-seaweedfs")
@pytest.mark.parametrize("far_model", ["s3"], indirect=True)
def test_link_writes_through_a_remote_and_longest_prefix_wins(
    far_model: tuple[Backend, dict[str, Any], dict[str, str]],
    endpoints: Endpoints,
    no_user_config: Path,
    tmp_path: Path,
) -> None:
    far, shared, env = far_model
    repo = repo_with_remotes(tmp_path, {
        "whole-bucket": {"url": far.root, "options": wrong_endpoint(endpoints)},
        "models": {"url": far.uri("models"), "options": shared},
    })  # fmt: skip
    write_config(no_user_config, None, {"models": {"url": far.uri("models"), "env": env}})
    made = link(far.uri("models", "rf"), target="alias", target_repo=repo)
    assert made.path == far.uri("models", "rf.mlem")
    assert load_meta("alias", repo=repo).model_type == {"far": "s3"}


@pytest.mark.backends("local", "s3-seaweedfs")
@pytest.mark.parametrize("far_model", ["s3"], indirect=True)
def test_user_settings_win_over_the_repo(
    far_model: tuple[Backend, dict[str, Any], dict[str, str]],
    endpoints: Endpoints,
    no_user_config: Path,
    tmp_path: Path,
) -> None:
    far, shared, env = far_model
    repo = repo_with_remotes(
        tmp_path, {"far": {"url": far.root, "options": wrong_endpoint(endpoints)}}
    )
    write_config(no_user_config, None, {"mine": {"url": far.root, "options": shared, "env": env}})
    MlemLink(path=far.uri("models", "rf.mlem"), link_type="model").dump("alias", repo=repo)
    assert load_meta("alias", repo=repo).model_type == {"far": "s3"}


@pytest.mark.backends("local", "s3-seaweedfs")
@pytest.mark.parametrize("far_model", ["s3"], indirect=True)
def test_only_the_callers_repo_config_counts(
    far_model: tuple[Backend, dict[str, Any], dict[str, str]], no_user_config: Path, tmp_path: Path
) -> None:
    """A repo reached through a link (another team's) cannot redirect our requests."""
    far, shared, env = far_model
    ours, theirs = str(tmp_path / "ours"), str(tmp_path / "theirs")
    init(ours)
    init(theirs)
    write_config(
        Path(theirs) / ".mlem" / "config.yaml", None, {"far": {"url": far.root, "options": shared}}
    )
    write_config(no_user_config, None, {"far": {"url": far.root, "env": env}})
    MlemLink(path=far.uri("models", "rf.mlem"), link_type="model").dump("hop", repo=theirs)
    assert load_meta("hop", repo=theirs).model_type == {"far": "s3"}  # their own config
    # Without the remote, the far bucket is looked for at a closed local port: one try.
    with configured(retry_attempts=1):
        with pytest.raises(MlemError):  # checked at link time: it would not resolve
            link("hop", source_repo=theirs, target="alias", target_repo=ours, follow_links=False)
        MlemLink(path=".mlem/link/hop.mlem", repo=f"file://{theirs}", link_type="model").dump(
            "alias", repo=ours
        )
        with pytest.raises(MlemError):
            load_meta("alias", repo=ours)


@pytest.mark.backends("local")
@pytest.mark.parametrize(
    "remote",
    [
        {"url": "s3://b", "options": {"secret": "hunter2"}},
        {"url": "s3://b", "options": {"client_kwargs": {"aws_secret_access_key": "hunter2"}}},
        {"url": "az://c", "options": {"connection_string": "AccountKey=hunter2"}},
        {"url": "s3://b", "env": {"key": "MY_KEY"}},
        {"options": {}},
        {"url": "s3://b", "surprise": 1},
    ],
    ids=["secret", "nested-secret", "connection-string", "env-in-repo", "no-url", "unknown"],
)
def test_bad_repo_remotes_are_refused(remote: dict[str, Any], tmp_path: Path) -> None:
    repo = str(tmp_path / "repo")
    init(repo)
    write_config(Path(repo) / ".mlem" / "config.yaml", None, {"bad": remote})
    MlemLink(path="s3://b/m.mlem", link_type="model").dump("alias", repo=repo)
    with pytest.raises(RemoteConfigError) as info:
        load_meta("alias", repo=repo)
    assert "hunter2" not in str(info.value)


@pytest.mark.backends("local")
def test_missing_environment_variable_is_named(no_user_config: Path, tmp_path: Path) -> None:
    write_config(no_user_config, None, {"r": {"url": "s3://b", "env": {"key": "NOT_SET_ANYWHERE"}}})
    link_file = str(tmp_path / "alias")
    MlemLink(path="s3://b/m.mlem", link_type="model").dump(link_file)
    with pytest.raises(RemoteConfigError, match="NOT_SET_ANYWHERE"):
        load_meta(link_file)
