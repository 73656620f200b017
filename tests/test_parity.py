"""MLEM parity on every backend: where links are written, how names are looked up, what is
refused, and moves made by MLEM (its exact bytes, written by a plain filesystem write).

The rules were derived by running MLEM 0.2.0 itself; tests/test_mlem_interop.py checks
them against the real MLEM on local disk and S3.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Backend

import mlemremote
from mlemremote import _bulk
from mlemremote.api import history, init, link, load_meta, rollback
from mlemremote.core.errors import (
    AmbiguousObjectError,
    GitUnreachableError,
    InvalidLinkError,
    MlemObjectNotFound,
    ObjectExistsError,
    SecretInURLError,
)
from mlemremote.core.objects import MlemLink, MlemModel


def opts(backend: Backend) -> dict[str, Any]:
    return {"storage_options": backend.storage_options}


def full_uri(backend: Backend, *parts: str) -> str:
    return mlemremote.resolve(backend.uri(*parts), **opts(backend)).uri


def a_model(backend: Backend, version: int, *parts: str, **dump: Any) -> None:
    MlemModel(model_type={"v": version}).dump(backend.uri(*parts), **dump, **opts(backend))


def mlem_link(path: str, repo: str | None = None) -> str:
    """A link exactly as MLEM writes it (sorted keys, no comment)."""
    text = f"link_type: model\nobject_type: link\npath: {path}\n"
    return text + (f"repo: {repo}\n" if repo is not None else "")


def files(backend: Backend) -> set[str]:
    return {name for name in backend.files() if name.endswith(".mlem")}


# -- 1. where links are written ---------------------------------------------------------
@pytest.mark.parametrize("external", [None, False, True])
@pytest.mark.parametrize("form", ["path in repo", "name + target_repo", "outside repos"])
def test_links_are_written_where_mlem_writes_them(
    backend: Backend, form: str, external: bool | None
) -> None:
    r = backend.uri("repo")
    init(r, **opts(backend))
    a_model(backend, 1, "repo", "models", "rf", external=True)
    before = files(backend)
    if form == "path in repo":
        target: dict[str, Any] = {"target": backend.uri("repo", "aliases", "prod")}
    elif form == "name + target_repo":
        target = {"target": "aliases/prod", "target_repo": r}
    else:
        target = {"target": backend.uri("plain", "prod")}
    link(backend.uri("repo", "models", "rf"), external=external, **target, **opts(backend))
    written = files(backend) - before
    if form == "outside repos":
        assert written == {"plain/prod.mlem"}
    elif external:
        assert written == {"repo/aliases/prod.mlem"}
    else:
        assert written == {"repo/.mlem/link/aliases/prod.mlem"}
    (name,) = written
    assert load_meta(backend.uri(*name.split("/")), **opts(backend)).model_type == {"v": 1}


def test_objects_dumped_in_a_repo_go_to_their_type_folder(backend: Backend) -> None:
    init(backend.uri("repo"), **opts(backend))
    a_model(backend, 1, "repo", "models", "rf")
    a_model(backend, 2, "repo", "models", "ext", external=True)
    a_model(backend, 3, "plain", "m")
    assert files(backend) == {
        "repo/.mlem/model/models/rf.mlem",
        "repo/models/ext.mlem",
        "repo/.mlem/link/models/ext.mlem",  # MLEM's index link: `mlem ls` lists it
        "plain/m.mlem",
    }
    index = yaml.safe_load(backend.read(backend.uri("repo", ".mlem", "link", "models", "ext.mlem")))
    assert index == {"link_type": "model", "object_type": "link", "path": "models/ext.mlem"}


def test_an_index_link_never_replaces_an_alias(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    r = backend.uri("repo")
    init(r, **opts(backend))
    a_model(backend, 1, "repo", "v1", external=True)
    link("v1", source_repo=r, target="models/ext", target_repo=r, **opts(backend))
    alias = backend.read(backend.uri("repo", ".mlem", "link", "models", "ext.mlem"))
    # An external object at models/ext.mlem would hide the alias `models/ext`: refused.
    with pytest.raises(ObjectExistsError, match="would hide"):
        a_model(backend, 2, "repo", "models", "ext", external=True)
    assert backend.read(backend.uri("repo", ".mlem", "link", "models", "ext.mlem")) == alias
    assert not backend.exists(backend.uri("repo", "models", "ext.mlem"))
    assert load_meta("models/ext", repo=r, **opts(backend)).model_type == {"v": 1}


def test_writes_never_change_what_another_name_finds(backend: Backend) -> None:
    r = backend.uri("repo")
    init(r, **opts(backend))
    a_model(backend, 1, "repo", "rf")  # .mlem/model/rf.mlem
    a_model(backend, 2, "repo", "v2", external=True)
    link("v2", source_repo=r, target="prod", target_repo=r, **opts(backend))
    before = backend.files()
    with pytest.raises(ObjectExistsError, match="ambiguous"):  # an alias named like a model
        link("v2", source_repo=r, target="rf", target_repo=r, **opts(backend))
    with pytest.raises(ObjectExistsError, match="ambiguous"):  # a model named like an alias
        a_model(backend, 3, "repo", "prod")
    with pytest.raises(ObjectExistsError, match="would hide"):  # an external one, the same
        a_model(backend, 3, "repo", "prod", external=True)
    with pytest.raises(ObjectExistsError, match="would hide"):
        link("v2", source_repo=r, target="rf", target_repo=r, external=True, **opts(backend))
    assert backend.files() == before
    assert load_meta("prod", repo=r, **opts(backend)).model_type == {"v": 2}
    assert load_meta("rf", repo=r, **opts(backend)).model_type == {"v": 1}


def test_repo_field_ends_with_a_slash_and_same_repo_links_name_the_exact_metafile(
    backend: Backend,
) -> None:
    r, other = backend.uri("repo"), backend.uri("other")
    init(r, **opts(backend))
    init(other, **opts(backend))
    a_model(backend, 1, "repo", "models", "rf")  # in .mlem/model/
    link("models/rf", source_repo=r, target="latest", target_repo=r, **opts(backend))
    link("latest", source_repo=r, target="prod", target_repo=r, follow_links=False, **opts(backend))
    link("latest", source_repo=r, target="x", target_repo=other, **opts(backend))
    data = yaml.safe_load(backend.read(backend.uri("repo", ".mlem", "link", "prod.mlem")))
    # MLEM would write its name form, `latest.mlem`, which any `<repo>/latest.mlem` added
    # later (or an object `latest` in another type folder) takes over; MLEM reads this
    # exact path directly, to the same file.
    assert data == {
        "link_type": "model",
        "object_type": "link",
        "path": ".mlem/link/latest.mlem",
    }
    data = yaml.safe_load(backend.read(backend.uri("other", ".mlem", "link", "x.mlem")))
    assert data["repo"] == full_uri(backend, "repo") + "/"
    assert data["path"] == ".mlem/model/models/rf.mlem"
    for name, repo in (("prod", r), ("x", other)):
        assert load_meta(name, repo=repo, **opts(backend)).model_type == {"v": 1}


def test_links_outside_repos_hold_full_uris_unless_asked(backend: Backend) -> None:
    a_model(backend, 1, "a", "m")
    link(backend.uri("a", "m"), target=backend.uri("a", "l"), **opts(backend))
    link(
        backend.uri("a", "m"),
        target=backend.uri("a", "rel"),
        folder_relative=True,
        **opts(backend),
    )
    assert yaml.safe_load(backend.read(backend.uri("a", "l.mlem")))["path"] == full_uri(
        backend, "a", "m.mlem"
    )
    assert yaml.safe_load(backend.read(backend.uri("a", "rel.mlem")))["path"] == "./m.mlem"


# -- 2. lookup: the path first, then .mlem/<type>/ ----------------------------------------
def test_the_path_wins_over_a_type_folder_and_the_hidden_one_is_reported(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    r = backend.uri("repo")
    init(r, **opts(backend))
    a_model(backend, 1, "repo", "models", "rf")  # .mlem/model/models/rf.mlem
    # models/rf.mlem, as MLEM writes it (mlemremote refuses to hide an object this way)
    external = MlemModel(model_type={"v": 2}).to_yaml()
    backend.write(backend.uri("repo", "models", "rf.mlem"), external)
    with caplog.at_level(logging.WARNING, logger="mlemremote"):
        found = load_meta("models/rf", repo=r, **opts(backend))
    assert found.model_type == {"v": 2}
    assert any(".mlem/model/models/rf.mlem" in m for m in caplog.messages)
    results = {res.uri: res for res in _bulk.survey(r, **opts(backend)).results}
    hidden = results[full_uri(backend, "repo", ".mlem", "model", "models", "rf.mlem")]
    assert hidden.status == "shadowed" and not hidden.broken
    assert "models/rf.mlem" in hidden.detail


def test_a_name_in_two_type_folders_is_refused(backend: Backend) -> None:
    r = backend.uri("repo")
    init(r, **opts(backend))
    a_model(backend, 1, "repo", "rf")  # .mlem/model/rf.mlem
    # An alias of the same name, as MLEM writes it (mlemremote refuses to)
    alias = mlem_link(".mlem/model/rf.mlem")
    backend.write(backend.uri("repo", ".mlem", "link", "rf.mlem"), alias)
    with pytest.raises(AmbiguousObjectError, match="MLEM refuses"):
        load_meta("rf", repo=r, **opts(backend))
    results = {res.uri: res for res in _bulk.survey(r, **opts(backend)).results}
    hidden = results[full_uri(backend, "repo", ".mlem", "model", "rf.mlem")]
    assert hidden.status == "ambiguous" and hidden.broken


def test_mlem_index_links_hide_nothing(backend: Backend, caplog: pytest.LogCaptureFixture) -> None:
    r = backend.uri("repo")
    init(r, **opts(backend))
    a_model(backend, 1, "repo", "models", "ext", external=True)
    backend.write(
        backend.uri("repo", ".mlem", "link", "models", "ext.mlem"), mlem_link("models/ext.mlem")
    )
    with caplog.at_level(logging.WARNING, logger="mlemremote"):
        assert load_meta("models/ext", repo=r, **opts(backend)).model_type == {"v": 1}
    assert not caplog.messages
    results = list(_bulk.survey(r, **opts(backend)).results)
    assert [res.status for res in results] == ["ok"]


# -- 4. MLEM's working-directory-relative links -----------------------------------------
def test_a_working_directory_relative_link_that_misses_says_why(backend: Backend) -> None:
    a_model(backend, 1, "plain", "m")
    backend.write(backend.uri("plain", "l.mlem"), mlem_link("plain/m.mlem"))
    if backend.name != "local":  # only MLEM on local disk writes these
        return
    with pytest.raises(MlemObjectNotFound) as caught:
        load_meta(backend.uri("plain", "l"), **opts(backend))
    message = str(caught.value)
    assert "working directory" in message and "plain/plain/m.mlem" in message
    backend.write(backend.uri("plain", "ok.mlem"), mlem_link("m.mlem"))
    assert load_meta(backend.uri("plain", "ok"), **opts(backend)).model_type == {"v": 1}


# -- 5. moves made by MLEM are seen by history and rollback -------------------------------
def test_history_and_rollback_see_moves_made_by_mlem(backend: Backend) -> None:
    r = backend.uri("repo")
    init(r, **opts(backend))
    for version in (1, 2, 3, 4):
        a_model(backend, version, "repo", f"v{version}", external=True)
    alias = backend.uri("repo", ".mlem", "link", "latest.mlem")
    link("v1", source_repo=r, target="latest", target_repo=r, **opts(backend))
    backend.write(alias, mlem_link("v2.mlem"))  # MLEM moves it: no write id, no log
    link("v3", source_repo=r, target="latest", target_repo=r, **opts(backend))
    backend.write(alias, mlem_link("v4.mlem"))  # and again
    entries = history("latest", repo=r, **opts(backend))
    paths = [entry.link.path for entry in entries]
    assert paths[0] == "v4.mlem" and not entries[0].recorded
    assert paths.index("v3.mlem") < paths.index("v1.mlem")
    if "v2.mlem" in paths:  # the move in between: seen where it left a trace
        assert paths.index("v3.mlem") < paths.index("v2.mlem") < paths.index("v1.mlem")
    back = rollback("latest", repo=r, **opts(backend))
    assert back.path == "v3.mlem"
    assert load_meta("latest", repo=r, **opts(backend)).model_type == {"v": 3}
    backend.write(alias, mlem_link("v2.mlem"))  # MLEM moves it once more
    assert rollback("latest", repo=r, **opts(backend)).path == "v3.mlem"


# -- 7. MLEM's links into GitHub repos ----------------------------------------------------
@pytest.mark.parametrize(
    "repo_field",
    [
        "https://github.com/org/models",
        "https://github.com/org/models/",
        "https://gitlab.com/org/models.git",
        "github://org:models@main/",
    ],
)
def test_links_into_remote_git_repos_are_read_as_git(
    backend: Backend, repo_field: str, no_user_config: Path
) -> None:
    """Never fetched as web pages, and, from a link someone wrote, never contacted
    unless the user allowed the host (or a remote of theirs names it); then read as git
    repositories (test_git_remote.py serves them from a real git server)."""
    text = mlem_link("models/rf.mlem", repo_field) + "rev: main\n"
    backend.write(backend.uri("gh.mlem"), text)
    with pytest.raises(InvalidLinkError, match="not allowed"):
        load_meta(backend.uri("gh"), **opts(backend))
    mirror = {
        "url": "http://127.0.0.1:9/",
        "insteadof": ["https://github.com/", "https://gitlab.com/"],
    }
    no_user_config.write_text(yaml.safe_dump({"remotes": {"closed": mirror}}))
    with pytest.raises(GitUnreachableError, match=r"127\.0\.0\.1:9"):
        load_meta(backend.uri("gh"), **opts(backend))
    with pytest.raises(GitUnreachableError, match=r"v1\.2"):
        load_meta("models/rf", repo=repo_field, rev="v1.2", **opts(backend))


def test_a_token_in_a_git_url_is_refused_as_a_secret() -> None:
    with pytest.raises(SecretInURLError):
        load_meta("models/rf", repo="https://x-access-token:ghp_SECRET@github.com/org/m", rev="v1")


def test_mlem_links_load_as_links(backend: Backend) -> None:
    a_model(backend, 1, "m")
    backend.write(backend.uri("l.mlem"), mlem_link(full_uri(backend, "m.mlem")))
    assert isinstance(load_meta(backend.uri("l"), follow_links=False, **opts(backend)), MlemLink)


# -- cost: what the lookup reads (the README's figures) ----------------------------------
def test_lookup_costs(backend: Backend, reads: list[str]) -> None:
    r = backend.uri("repo")
    init(r, **opts(backend))
    a_model(backend, 1, "repo", "models", "rf")  # in .mlem/model/
    a_model(backend, 2, "repo", "models", "ext", external=True)
    link("models/rf", source_repo=r, target="internal", target_repo=r, **opts(backend))
    link("models/ext", source_repo=r, target="external", target_repo=r, **opts(backend))
    a_model(backend, 3, "plain", "m")
    link(backend.uri("plain", "m"), target=backend.uri("plain", "l"), **opts(backend))
    costs = {}
    for name, call in {
        "alias -> model in .mlem/model/": lambda: load_meta("internal", repo=r, **opts(backend)),
        "alias -> external model": lambda: load_meta("external", repo=r, **opts(backend)),
        "link file by URI -> model": lambda: load_meta(backend.uri("plain", "l"), **opts(backend)),
    }.items():
        reads.clear()
        call()
        costs[name] = len(reads)
    assert costs == {
        "alias -> model in .mlem/model/": 7 + 1,
        "alias -> external model": 7 + 1,
        "link file by URI -> model": 2,
    }
