"""Issue 12 items 4-5: `unlink` (a compare-and-swap removal of an alias, recorded in its
history and undone by `rollback`) on every backend, and `unlink`, `history` and
`rollback` on the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import Backend
from test_cli import cli, flags

from mlemremote.api import history, init, link, load_meta, rollback, unlink
from mlemremote.core.errors import (
    AliasChangedError,
    InvalidLinkError,
    MlemObjectNotFound,
    ObjectExistsError,
)
from mlemremote.core.objects import MlemLink, MlemModel


def opts(backend: Backend) -> dict[str, Any]:
    return {"storage_options": backend.storage_options}


def setup(backend: Backend) -> str:
    """A repo with models v1, v2 and the alias `latest` moved v1 -> v2."""
    repo = backend.uri("repo")
    init(repo, **opts(backend))
    for name in ("v1", "v2"):
        MlemModel(model_type={"name": name}).dump(name, repo=repo, external=True, **opts(backend))
        link(name, source_repo=repo, target="latest", target_repo=repo, **opts(backend))
    return repo


def alias_uri(backend: Backend) -> str:
    return backend.uri("repo", ".mlem", "link", "latest.mlem")


def test_unlink_removes_the_alias_and_rollback_restores_it(backend: Backend) -> None:
    repo = setup(backend)
    removed = unlink("latest", repo=repo, **opts(backend))
    assert isinstance(removed, MlemLink) and removed.path == "v2.mlem"
    assert not backend.exists(alias_uri(backend))
    with pytest.raises(MlemObjectNotFound):
        load_meta("latest", repo=repo, **opts(backend))
    entries = history("latest", repo=repo, **opts(backend))
    assert entries[0].removed and entries[0].link is None
    assert [e.link.path for e in entries[1:] if e.link is not None] == ["v2.mlem", "v1.mlem"]
    restored = rollback("latest", repo=repo, **opts(backend))
    assert restored.path == "v2.mlem"
    assert load_meta("latest", repo=repo, **opts(backend)).model_type == {"name": "v2"}
    after = history("latest", repo=repo, **opts(backend))
    assert after[0].link is not None and after[0].link.path == "v2.mlem"
    assert after[1].removed  # the removal stays in the record
    # Once more, and back to an index: v1.
    unlink("latest", repo=repo, **opts(backend))
    entries = history("latest", repo=repo, **opts(backend))
    index = next(
        i for i, e in enumerate(entries) if e.link is not None and e.link.path == "v1.mlem"
    )
    rollback("latest", repo=repo, to=index, **opts(backend))
    assert load_meta("latest", repo=repo, **opts(backend)).model_type == {"name": "v1"}


def test_unlink_refuses_a_model_and_leaves_it_untouched(backend: Backend) -> None:
    repo = setup(backend)
    model = backend.uri("repo", "v1.mlem")
    before = backend.read(model)
    with pytest.raises(ObjectExistsError):
        unlink("v1", repo=repo, **opts(backend))
    with pytest.raises(ObjectExistsError):
        unlink(backend.uri("repo", "v1"), **opts(backend))  # by path, outside the repo rule
    plain = backend.uri("plain", "m")
    MlemModel().dump(plain, **opts(backend))
    plain_before = backend.read(plain + ".mlem")
    with pytest.raises(ObjectExistsError):
        unlink(plain, **opts(backend))
    with pytest.raises(ObjectExistsError):
        unlink(plain, expected="anything", **opts(backend))  # a token never lets it through
    assert backend.read(model) == before
    assert backend.read(plain + ".mlem") == plain_before


def test_unlink_with_stale_expected_removes_nothing(backend: Backend) -> None:
    repo = setup(backend)
    seen = load_meta("latest", repo=repo, follow_links=False, **opts(backend))
    assert isinstance(seen, MlemLink) and seen._token is not None
    link("v1", source_repo=repo, target="latest", target_repo=repo, **opts(backend))
    before = backend.read(alias_uri(backend))
    with pytest.raises(AliasChangedError):
        unlink("latest", repo=repo, expected=seen, **opts(backend))
    with pytest.raises(AliasChangedError):
        unlink("latest", repo=repo, expected=seen._token, **opts(backend))
    # A string that is not the alias's token (a version id, a typo) says what it is now.
    with pytest.raises(AliasChangedError, match="not its token") as wrong:
        unlink("latest", repo=repo, expected="not-a-token", **opts(backend))
    fresh = load_meta("latest", repo=repo, follow_links=False, **opts(backend))
    assert fresh.token is not None and repr(fresh.token) in str(wrong.value)
    # rollback(expected=): the history read earlier is the one rolled back, or nothing.
    with pytest.raises(AliasChangedError):
        rollback("latest", repo=repo, to=1, expected=seen.token, **opts(backend))
    assert backend.read(alias_uri(backend)) == before
    entries = history("latest", repo=repo, **opts(backend))
    assert not entries[0].removed and entries[0].link is not None
    assert entries[0].link.token == fresh.token  # what --expected takes, from history
    with pytest.raises(InvalidLinkError, match="as it is now"):  # a move to where it is
        rollback("latest", repo=repo, to=0, **opts(backend))
    back = rollback("latest", repo=repo, to=1, expected=entries[0].link.token, **opts(backend))
    assert back.path == "v2.mlem" and back.token is not None
    fresh = load_meta("latest", repo=repo, follow_links=False, **opts(backend))
    assert fresh.token == back.token
    link("v1", source_repo=repo, target="latest", target_repo=repo, **opts(backend))
    fresh = load_meta("latest", repo=repo, follow_links=False, **opts(backend))
    assert fresh.token is not None
    # A quoted ETag typed in a shell loses its quotes: the same token.
    unquoted = fresh.token.strip('"')
    assert unlink("latest", repo=repo, expected=unquoted, **opts(backend)).path == "v1.mlem"
    assert not backend.exists(alias_uri(backend))


def test_unlink_of_a_missing_alias_is_not_found(backend: Backend) -> None:
    repo = setup(backend)
    with pytest.raises(MlemObjectNotFound):
        unlink("nothing", repo=repo, **opts(backend))
    with pytest.raises(MlemObjectNotFound):
        history("nothing", repo=repo, **opts(backend))
    unlink("latest", repo=repo, **opts(backend))
    with pytest.raises(MlemObjectNotFound):
        unlink("latest", repo=repo, **opts(backend))


def test_history_outside_a_repo_only_where_the_bucket_keeps_versions(
    versioned_backend: Backend,
) -> None:
    from mlemremote import _history
    from mlemremote._location import resolve

    b = versioned_backend
    kept = _history.keeps_history(resolve(b.uri("plain", "alias.mlem"), **opts(b)))
    assert kept == (b.name.split("-")[0] in ("s3", "gcs"))  # their versions are the history


def test_unlink_outside_a_repo(backend: Backend) -> None:
    MlemModel().dump(backend.uri("plain", "m"), **opts(backend))
    link(backend.uri("plain", "m"), target=backend.uri("plain", "alias"), **opts(backend))
    assert unlink(backend.uri("plain", "alias"), **opts(backend)).path.endswith("/plain/m.mlem")
    assert not backend.exists(backend.uri("plain", "alias.mlem"))
    assert backend.exists(backend.uri("plain", "m.mlem"))


# -- the command line --------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["local", "s3-moto"], indirect=True)
def test_cli_unlink_history_rollback(backend: Backend) -> None:
    repo = setup(backend)
    o = flags(backend)

    table = cli("history", "latest", "--repo", repo, *o)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.strip().splitlines()
    assert lines[0].split()[:2] == ["#", "TIME"] and len(lines) == 3
    assert lines[1].split()[0] == "0" and lines[1].endswith("v2.mlem")

    shown = json.loads(cli("show", "latest", "--repo", repo, "--nf", "--json", *o).stdout)
    token = shown[0]["token"]  # what --expected takes
    assert token == load_meta("latest", repo=repo, follow_links=False, **opts(backend)).token
    moved = cli("link", "v1", "latest", "--sr", repo, "--tr", repo, "--json", *o)
    assert moved.returncode == 0, moved.stderr
    stale = cli("unlink", "latest", "--repo", repo, "--expected", token, *o)
    assert stale.returncode == 2 and stale.stderr.startswith("error: ")
    assert len(stale.stderr.strip().splitlines()) == 1 and "changed" in stale.stderr
    assert backend.exists(alias_uri(backend))
    # rollback --to N --expected: N is an index into the history read with that token.
    late = cli("rollback", "latest", "--repo", repo, "--to", "1", "--expected", token, *o)
    assert late.returncode == 2 and "changed" in late.stderr
    now = json.loads(cli("history", "latest", "--repo", repo, "--json", *o).stdout)[0]
    assert now["token"] == json.loads(moved.stdout)["token"] is not None
    back = cli("rollback", "latest", "--repo", repo, "--to", "1", "--expected", now["token"], *o)
    assert back.returncode == 0 and back.stdout.strip().endswith("-> v2.mlem"), back.stderr
    stale_move = cli("link", "v1", "latest", "--sr", repo, "--tr", repo, "--expected", token, *o)
    assert stale_move.returncode == 2 and "changed" in stale_move.stderr
    now = json.loads(cli("show", "latest", "--repo", repo, "--nf", "--json", *o).stdout)[0]
    relinked = cli(
        "link", "v1", "latest", "--sr", repo, "--tr", repo, "--expected", now["token"], *o
    )
    assert relinked.returncode == 0, relinked.stderr

    model = cli("unlink", "v1", "--repo", repo, *o)
    assert model.returncode == 2 and len(model.stderr.strip().splitlines()) == 1
    assert backend.exists(backend.uri("repo", "v1.mlem"))

    done = cli("unlink", "latest", "--repo", repo, "--json", *o)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["removed"].endswith("/repo/.mlem/link/latest.mlem") and out["points_to"] == "v1.mlem"
    assert not backend.exists(alias_uri(backend))

    missing = cli("unlink", "latest", "--repo", repo, *o)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no link to remove")
    assert len(missing.stderr.strip().splitlines()) == 1

    rows = json.loads(cli("history", "latest", "--repo", repo, "--json", *o).stdout)
    assert rows[0]["removed"] and rows[0]["points_to"] is None and rows[0]["index"] == 0
    assert [r["points_to"] for r in rows[1:]] == ["v1.mlem", "v2.mlem"] * 2 + ["v1.mlem"]

    back = cli("rollback", "latest", "--repo", repo, "--to", "2", "--json", *o)
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["points_to"] == "v2.mlem"
    assert load_meta("latest", repo=repo, **opts(backend)).model_type == {"name": "v2"}
    plain = cli("rollback", "latest", "--repo", repo, *o)
    assert plain.returncode == 0 and plain.stdout.strip().endswith("-> v1.mlem")

    rows = json.loads(cli("history", "latest", "--repo", repo, "--json", *o).stdout)
    gone = next(r["index"] for r in rows if r["removed"])
    removal = cli("rollback", "latest", "--repo", repo, "--to", str(gone), *o)
    assert removal.returncode == 2 and "unlink it" in removal.stderr
    assert "()" not in removal.stderr and "to=" not in removal.stderr  # CLI words
    nothing = cli("history", "nothing", "--repo", repo, *o)
    assert nothing.returncode == 2 and nothing.stderr.startswith("error: ")


def test_an_external_alias_keeps_its_history_after_unlink(tmp_path: Path) -> None:
    """`link -e` writes `R/ext.mlem`, logged under `.mlem/history/external/`: after the
    alias is gone, history and rollback look there too."""
    repo = str(tmp_path / "r")
    init(repo)
    for version in ("v1", "v2"):
        MlemModel(model_type={"v": version}).dump(version, repo=repo)
        link(version, source_repo=repo, target="ext", target_repo=repo, external=True)
    unlink("ext", repo=repo)
    entries = history("ext", repo=repo)
    assert entries[0].removed and [e.link.path for e in entries[1:] if e.link] == [
        ".mlem/model/v2.mlem",
        ".mlem/model/v1.mlem",
    ]
    assert rollback("ext", repo=repo).path == ".mlem/model/v2.mlem"
    assert (tmp_path / "r" / "ext.mlem").exists()
