"""Issue 3: pinned versions, compare-and-swap alias moves, alias history and rollback.

Every test runs on every backend; where a backend keeps no versions (memory, Azurite,
local disk outside git, unversioned buckets) the test expects the clear error instead.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from conftest import VERSIONED, Backend, git

from mlemremote.api import history, init, link, load_meta, rollback
from mlemremote.core.errors import (
    AliasChangedError,
    InvalidLinkError,
    MlemObjectNotFound,
    ObjectExistsError,
    RevisionNotFound,
    RevisionNotSupportedError,
)
from mlemremote.core.objects import MlemLink, MlemModel

BACKEND_WORD = {"memory": "memory", "azure": "Azure", "local": "git"}


def opts(backend: Backend) -> dict[str, Any]:
    return {"storage_options": backend.storage_options}


def setup_repo(backend: Backend) -> tuple[str, str | None]:
    """A repo with model `rf` (v1) and, where versions are kept, the version id of v1."""
    repo = backend.uri("repo")
    init(repo, **opts(backend))
    model = MlemModel(model_type={"v": 1})
    model.dump("rf", repo=repo, external=True, **opts(backend))
    if backend.name == "local":
        git(backend.root, "add", "-A")
        git(backend.root, "commit", "-qm", "v1")
        return repo, git(backend.root, "rev-parse", "HEAD")
    return repo, model._version


def overwrite_and_delete(backend: Backend, repo: str) -> None:
    MlemModel(model_type={"v": 2}).dump("rf", repo=repo, external=True, **opts(backend))
    assert load_meta("rf", repo=repo, **opts(backend)).model_type == {"v": 2}


def expect_refused(backend: Backend, call: Any) -> None:
    with pytest.raises(RevisionNotSupportedError) as info:
        call()
    word = BACKEND_WORD.get(backend.name)
    if word is not None:
        assert word in str(info.value)


# -- 1. rev means a version --------------------------------------------------------------
def test_rev_reads_that_version(versioned_backend: Backend) -> None:
    backend = versioned_backend
    repo, version = setup_repo(backend)
    if backend.name not in VERSIONED:
        # Azurite ignores version ids: a fake one must be refused, not answered.
        expect_refused(
            backend,
            lambda: link(
                "rf",
                source_repo=repo,
                rev="2026-01-01T00:00:00.0000000Z",
                target="pinned",
                target_repo=repo,
                **opts(backend),
            ),
        )
        assert not backend.exists(backend.uri("repo", ".mlem", "link", "pinned.mlem"))
        expect_refused(backend, lambda: load_meta("rf", repo=repo, rev="1", **opts(backend)))
        return
    assert version is not None
    link("rf", source_repo=repo, rev=version, target="pinned", target_repo=repo, **opts(backend))
    written = yaml.safe_load(backend.read(backend.uri("repo", ".mlem", "link", "pinned.mlem")))
    assert written["rev"] == version and written["path"] == "rf.mlem"
    assert "://" in written["repo"]
    overwrite_and_delete(backend, repo)
    if backend.name != "local":  # a deleted object's old versions stay readable
        backend.fs.rm(backend.fspath(backend.uri("repo", "rf.mlem")))
    pinned = load_meta("pinned", repo=repo, **opts(backend))
    assert pinned.model_type == {"v": 1}
    assert pinned.loc.rev == version
    assert load_meta("rf", repo=repo, rev=version, **opts(backend)).model_type == {"v": 1}


def test_pin_records_the_current_version(versioned_backend: Backend) -> None:
    backend = versioned_backend
    repo, version = setup_repo(backend)
    make = lambda: link(  # noqa: E731
        "rf", source_repo=repo, target="pinned", target_repo=repo, pin=True, **opts(backend)
    )
    if backend.name not in VERSIONED:
        expect_refused(backend, make)
        assert not backend.exists(backend.uri("repo", ".mlem", "link", "pinned.mlem"))
        return
    made = make()
    assert made.rev == version
    overwrite_and_delete(backend, repo)
    assert load_meta("pinned", repo=repo, **opts(backend)).model_type == {"v": 1}
    # rev= and pin=True: the version rev names now (already a fixed one here)
    assert link("rf", source_repo=repo, rev=version, pin=True, **opts(backend)).rev == version


def test_pin_needs_versions(backend: Backend) -> None:
    """Unversioned buckets, local disk outside git, memory, Azure: a clear error."""
    repo, _ = setup_repo(backend) if backend.name != "local" else (backend.uri("repo"), None)
    if backend.name == "local":
        init(repo)
        MlemModel().dump("rf", repo=repo, external=True)
    with pytest.raises(RevisionNotSupportedError):
        link("rf", source_repo=repo, target="p", target_repo=repo, pin=True, **opts(backend))
    assert not backend.exists(backend.uri("repo", ".mlem", "link", "p.mlem"))


@pytest.mark.backends("local")
def test_pin_refuses_uncommitted_changes_in_git(tmp_path: Any) -> None:
    root = str(tmp_path / "work")
    repo = f"{root}/repo"
    init(repo)
    MlemModel(model_type={"v": 1}).dump("rf", repo=repo, external=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "v1")
    MlemModel(model_type={"v": "dirty"}).dump("rf", repo=repo, external=True)
    with pytest.raises(RevisionNotSupportedError, match="commit"):
        link("rf", source_repo=repo, target="p", target_repo=repo, pin=True)


def test_unknown_version_is_not_found(versioned_backend: Backend) -> None:
    backend = versioned_backend
    repo, _ = setup_repo(backend)
    if backend.name not in VERSIONED:
        expect_refused(backend, lambda: load_meta("rf", repo=repo, rev="1", **opts(backend)))
        return
    bogus = {"local": "0" * 40, "gcs": "12345"}.get(
        backend.name, "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"
    )
    with pytest.raises((MlemObjectNotFound, RevisionNotFound)):
        load_meta("rf", repo=repo, rev=bogus, **opts(backend))


# -- 3. compare-and-swap moves ------------------------------------------------------------
def models(backend: Backend, repo: str, *names: str) -> None:
    for name in names:
        MlemModel(model_type={"name": name}).dump(name, repo=repo, external=True, **opts(backend))


def test_compare_and_swap_move(backend: Backend) -> None:
    repo = backend.uri("repo")
    init(repo, **opts(backend))
    models(backend, repo, "v1", "v2", "v3")
    link("v1", source_repo=repo, target="latest", target_repo=repo, **opts(backend))
    seen_by_a = load_meta("latest", repo=repo, follow_links=False, **opts(backend))
    seen_by_b = load_meta("latest", repo=repo, follow_links=False, **opts(backend))
    assert isinstance(seen_by_a, MlemLink)
    moved = link(
        "v2",
        source_repo=repo,
        target="latest",
        target_repo=repo,
        expected=seen_by_a,
        **opts(backend),
    )
    before = backend.read(backend.uri("repo", ".mlem", "link", "latest.mlem"))
    with pytest.raises(AliasChangedError):
        link(
            "v3",
            source_repo=repo,
            target="latest",
            target_repo=repo,
            expected=seen_by_b,
            **opts(backend),
        )
    assert backend.read(backend.uri("repo", ".mlem", "link", "latest.mlem")) == before
    # The link returned by a move carries the new token: moves can be chained.
    link("v3", source_repo=repo, target="latest", target_repo=repo, expected=moved, **opts(backend))
    assert load_meta("latest", repo=repo, **opts(backend)).model_type == {"name": "v3"}
    # A bare token works too.
    current = load_meta("latest", repo=repo, follow_links=False, **opts(backend))
    assert current._token is not None
    link(
        "v1",
        source_repo=repo,
        target="latest",
        target_repo=repo,
        expected=current._token,
        **opts(backend),
    )
    with pytest.raises(AliasChangedError):
        link(
            "v2",
            source_repo=repo,
            target="latest",
            target_repo=repo,
            expected=current._token,
            **opts(backend),
        )


def test_expected_must_be_that_link(backend: Backend) -> None:
    repo = backend.uri("repo")
    init(repo, **opts(backend))
    models(backend, repo, "v1", "v2")
    link("v1", source_repo=repo, target="a", target_repo=repo, **opts(backend))
    other = load_meta("a", repo=repo, follow_links=False, **opts(backend))
    assert isinstance(other, MlemLink)
    with pytest.raises(InvalidLinkError):
        link("v1", source_repo=repo, target="b", target_repo=repo, expected=other, **opts(backend))
    with pytest.raises(ObjectExistsError):  # a token never lets a link replace a model
        link(
            "v2",
            source_repo=repo,
            target="v1",
            target_repo=repo,
            external=True,
            expected="anything",
            **opts(backend),
        )


# -- 4. history and rollback --------------------------------------------------------------
@pytest.mark.parametrize("versions", ["kept", "not-kept"])
def test_history_and_rollback(backend: Backend, versioned_backend: Backend, versions: str) -> None:
    b = versioned_backend if versions == "kept" else backend
    repo = b.uri("repo")
    init(repo, **opts(b))
    models(b, repo, "v1", "v2", "v3")
    for name in ("v1", "v2", "v3"):
        link(name, source_repo=repo, target="latest", target_repo=repo, **opts(b))
    entries = history("latest", repo=repo, **opts(b))
    assert [e.link.path for e in entries] == ["v3.mlem", "v2.mlem", "v1.mlem"]
    assert all(e.version for e in entries)
    assert entries[0].time >= entries[1].time >= entries[2].time
    from_versions = versions == "kept" and b.name in VERSIONED and b.name != "local"
    log = b.files(b.uri("repo", ".mlem")) if b.exists(b.uri("repo", ".mlem")) else {}
    logged = [name for name in log if name.startswith("history/")]
    assert len(logged) == (0 if from_versions else 3)
    rolled = rollback("latest", repo=repo, **opts(b))
    assert rolled.path == "v2.mlem"
    assert load_meta("latest", repo=repo, **opts(b)).model_type == {"name": "v2"}
    entries = history("latest", repo=repo, **opts(b))
    assert [e.link.path for e in entries][:2] == ["v2.mlem", "v3.mlem"]
    rollback("latest", repo=repo, to=entries[-1], **opts(b))
    assert load_meta("latest", repo=repo, **opts(b)).model_type == {"name": "v1"}


def test_history_of_a_model_is_refused(backend: Backend) -> None:
    repo = backend.uri("repo")
    init(repo, **opts(backend))
    models(backend, repo, "v1")
    with pytest.raises(InvalidLinkError):
        history("v1", repo=repo, **opts(backend))
