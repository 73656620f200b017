"""Second hostile review of the MLEM-parity change (issue 10), after the first review's
fixes (tests/test_review_parity.py). Each test is one finding and FAILS on the reviewed
code (4007bd6); the assertion states the expected behaviour.

Every test runs in its own temporary folder (chdir'ed into it). Tests marked `peer` drive
the real MLEM (tests/mlem_peer.py) to show what MLEM does with the same files.
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest
from mlem_peer import Peer, PeerError, missing_reason

from mlemremote.api import init, link, load_meta, rollback
from mlemremote.core.errors import AmbiguousObjectError, MlemError, ObjectExistsError
from mlemremote.core.objects import MlemModel

PEER_REASON = missing_reason()
needs_peer = pytest.mark.skipif(PEER_REASON is not None, reason=f"MLEM peer: {PEER_REASON}")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    p = Peer()
    yield p
    p.close()


def model(v: int, path: str, **kw: Any) -> None:
    MlemModel(model_type={"v": v}).dump(path, **kw)


def write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Path(path).write_text(text)


# -- R1: a write into .mlem/<type>/ silently makes an existing name ambiguous --------------
# The fix refuses a write that a file at the path would hide (F1), but not a write that
# makes the name unloadable: a second `.mlem/<type>/<name>.mlem`. Both tools then refuse
# the name (AmbiguousObjectError), so the alias (or model) that served it is gone.
def test_r1a_link_alias_with_its_models_name_breaks_the_name(tmp_path: Path) -> None:
    repo = str(tmp_path / "repo")
    init(repo)
    model(1, "rf", repo=repo)
    assert load_meta("rf", repo=repo).model_type == {"v": 1}
    try:
        link("rf", source_repo=repo, target="rf", target_repo=repo)  # returns normally...
    except ObjectExistsError:
        return  # (expected: refused, as a write the path would hide is)
    try:
        load_meta("rf", repo=repo)  # ... and the name "rf" no longer loads anything
    except AmbiguousObjectError as exc:
        pytest.fail(f"link() returned normally and broke the name 'rf': {exc}")


def test_r1b_dump_a_model_named_like_a_live_alias_breaks_the_alias(tmp_path: Path) -> None:
    repo = str(tmp_path / "repo")
    init(repo)
    model(2, "v2", repo=repo)
    link("v2", source_repo=repo, target="prod", target_repo=repo)
    assert load_meta("prod", repo=repo).model_type == {"v": 2}
    try:
        model(3, "prod", repo=repo)  # .mlem/model/prod.mlem next to .mlem/link/prod.mlem
    except ObjectExistsError:
        return
    try:
        load_meta("prod", repo=repo)
    except AmbiguousObjectError as exc:
        pytest.fail(f"dump() returned normally and took the production alias down: {exc}")


# -- R2: the reverse of F1: an external write hides a live alias, with a misleading warning
def test_r2_external_dump_silently_hides_a_live_alias(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = str(tmp_path / "repo")
    init(repo)
    model(2, "v2", repo=repo)
    link("v2", source_repo=repo, target="prod", target_repo=repo)
    caplog.set_level(logging.WARNING, logger="mlemremote")
    try:
        model(4, "prod", repo=repo, external=True)  # writes <repo>/prod.mlem
    except ObjectExistsError:
        return
    hidden_warned = any("hide" in r.message for r in caplog.records)
    served = load_meta("prod", repo=repo).model_type
    # Observed: only "is not indexed for `mlem ls`" is logged, and the alias "prod" now
    # serves the freshly dumped model {'v': 4} instead of following the alias to v2.
    assert served == {"v": 2} or hidden_warned, (
        f"'prod' now serves {served}; warnings: {[r.message for r in caplog.records]}"
    )


# -- R3: a folder named <name>.mlem: MLEM finds .mlem/<type>/<name>.mlem, we refuse loudly --
@needs_peer
def test_r3_folder_named_like_a_metafile_does_not_hide_in_mlem(tmp_path: Path, peer: Peer) -> None:
    d, repo = str(tmp_path), str(tmp_path / "repo")
    peer("init", cwd=d, path=repo)
    peer("save_model", cwd=d, path="dir", repo=repo, seed=2)
    os.makedirs(f"{repo}/dir.mlem")  # a folder (MLEM's get_meta_path asks isfile)
    theirs = peer("load", cwd=d, path="dir", repo=repo)["location"]["fullpath"]
    assert theirs == f"{repo}/.mlem/model/dir.mlem"
    # Kept loud on purpose: a folder where the name's metafile would be is reported
    # (NotAFileError), never skipped; no other file is served in its place.
    with pytest.raises(MlemError, match=r"dir\.mlem"):
        load_meta("dir", repo=repo)


# -- R4: MLEM's repo root is any folder with `.mlem`, ours needs `.mlem/config.yaml` ------
# (`mlem init` in a folder whose .mlem/ exists does not create config.yaml; mlemremote's
# own dump to <folder>/.mlem/model/x outside a repo creates such a folder.) F2's guard
# (`base.repo`) and MLEM's write rule then disagree with MLEM: a model loaded from the
# wrong file with no error, the class of F2.
@needs_peer
def test_r4_dot_mlem_without_config_reads_another_file_than_mlem(
    tmp_path: Path, peer: Peer
) -> None:
    d, root = str(tmp_path), str(tmp_path / "proj")
    os.makedirs(f"{root}/aliases")
    peer("save_model", cwd=d, path=f"{root}/aliases/m", seed=1)
    peer("save_model", cwd=d, path=f"{root}/m", seed=2)
    written = link(f"{root}/aliases/m", target=f"{root}/aliases/prod", folder_relative=True)
    assert written.path == "./m.mlem"
    MlemModel(model_type={"v": 9}).dump(f"{root}/.mlem/model/other")  # mlemremote itself
    peer("init", cwd=d, path=root)  # MLEM: ".mlem already exists", no config.yaml written
    assert not os.path.exists(f"{root}/.mlem/config.yaml")
    theirs = peer("load", cwd=d, path=f"{root}/aliases/prod")["location"]["fullpath"]
    assert theirs == f"{root}/m.mlem"  # MLEM: a repo, read against its root
    try:
        ours = str(load_meta(f"{root}/aliases/prod").location)
    except MlemError:
        return  # refused: fine
    assert ours.endswith("/proj/m.mlem"), f"MLEM loads {theirs}, mlemremote silently {ours}"


@needs_peer
def test_r4b_dot_mlem_without_config_write_location_differs(tmp_path: Path, peer: Peer) -> None:
    d, root = str(tmp_path), str(tmp_path / "proj")
    os.makedirs(f"{root}/.mlem/model")  # a repo for MLEM, not for mlemremote
    mlem_wrote = peer("save_model", cwd=d, path=f"{root}/models/rf", seed=3)["location"]
    assert mlem_wrote["fullpath"] == f"{root}/.mlem/model/models/rf.mlem"
    try:
        load_meta(f"{root}/models/rf")  # what MLEM just saved under that path
    except MlemError as exc:
        pytest.fail(f"MLEM saved {f'{root}/models/rf'} and mlemremote cannot find it: {exc}")


# -- R5: F5 is fixed for relative names only: absolute spellings of the repo still read
# <parent>/<repo>.mlem, outside the repo, where MLEM finds nothing ------------------------
@needs_peer
@pytest.mark.parametrize("suffix", ["/", "/.", "/x/.."])
def test_r5_absolute_spelling_of_the_repo_reads_the_file_next_to_it(
    tmp_path: Path, peer: Peer, suffix: str
) -> None:
    repo = str(tmp_path / "repo")
    init(repo)
    write(str(tmp_path / "repo.mlem"), "object_type: model\nmodel_type: {v: outside}\n")
    name = repo + suffix
    with pytest.raises(PeerError, match="MlemObjectNotFound"):
        peer("load", cwd=str(tmp_path), path=name, repo=repo)
    with pytest.raises(MlemError):  # observed: loads {'v': 'outside'}
        load_meta(name, repo=repo)


def test_r5b_file_uri_spelling_of_the_repo_reads_outside_it(tmp_path: Path) -> None:
    repo = str(tmp_path / "repo")
    init(repo)
    write(str(tmp_path / "repo.mlem"), "object_type: model\nmodel_type: {v: outside}\n")
    with pytest.raises(MlemError):  # observed: loads {'v': 'outside'}
        load_meta(f"file://{repo}", repo=repo)


# -- R6: a type folder symlinked out of the repo counts as a hit: false ambiguity ---------
@needs_peer
def test_r6_symlinked_type_folder_makes_a_false_ambiguity(tmp_path: Path, peer: Peer) -> None:
    d, repo = str(tmp_path), str(tmp_path / "repo")
    peer("init", cwd=d, path=repo)
    peer("save_model", cwd=d, path="m", repo=repo, seed=1)
    os.makedirs(f"{d}/shared-data")
    os.symlink(f"{d}/shared-data", f"{repo}/.mlem/dataset")  # datasets on another disk
    write(f"{repo}/.mlem/link/prod.mlem", "link_type: model\nobject_type: link\npath: m.mlem\n")
    theirs = peer("load", cwd=d, path="prod", repo=repo)["location"]["fullpath"]
    assert theirs == f"{repo}/.mlem/model/m.mlem"
    # Observed: AmbiguousObjectError naming .mlem/dataset/m.mlem, a file that does not exist.
    assert str(load_meta("prod", repo=repo).location).endswith("/.mlem/model/m.mlem")


# -- R7: rollback() now does one lookup per history entry, sequentially -------------------
def test_r7_rollback_reads_once_per_history_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlemremote._stores.memory import MemoryStore

    fs = fsspec.filesystem("memory")
    root = f"/review2-{tmp_path.name}/repo"
    r = f"memory://{root}"
    fs.pipe(f"{root}/.mlem/config.yaml", b"")
    model(1, "v1", repo=r)
    model(2, "v2", repo=r)
    link("v1", source_repo=r, target="latest", target_repo=r)
    n = 100
    for _ in range(n):  # a deploy job that re-points `latest` to the same model each run
        link("v2", source_repo=r, target="latest", target_repo=r)
    reads: collections.Counter[str] = collections.Counter()
    orig = MemoryStore._read_once

    def read_once(self: Any, loc: Any, limit: int) -> Any:
        reads[str(loc)] += 1
        return orig(self, loc, limit)

    monkeypatch.setattr(MemoryStore, "_read_once", read_once)
    rollback("latest", repo=r)
    assert load_meta("latest", repo=r).model_type == {"v": 1}
    model_reads = sum(c for k, c in reads.items() if "/.mlem/model/" in k)
    # Observed: 101 GETs of .mlem/model/v2.mlem, one after the other (history itself is
    # read 32 at a time); the previous version read none. Identical entries resolve alike.
    # Now one lookup per distinct target (plus the rollback's own walk and this load).
    assert model_reads <= 8, f"{model_reads} sequential model reads for {n} identical entries"


# -- R8: compare-and-swap through the `_visible` redirect: the wrong error ------------------
def test_r8_cas_when_an_alias_appears_at_the_path_is_not_alias_changed(tmp_path: Path) -> None:
    from mlemremote.core.errors import AliasChangedError

    repo = str(tmp_path / "repo")
    init(repo)
    model(1, "a", repo=repo)
    model(2, "b", repo=repo)
    link("a", source_repo=repo, target="prod", target_repo=repo)
    current = load_meta("prod", repo=repo, follow_links=False)  # .mlem/link/prod.mlem
    # Meanwhile MLEM (`external=True`) writes the alias at the path, which now takes the name.
    write(f"{repo}/prod.mlem", "link_type: model\nobject_type: link\npath: .mlem/model/a.mlem\n")
    # Observed: InvalidLinkError "expected= must be the link at .../prod.mlem as loaded",
    # a caller error, though the caller passed exactly what it loaded: the alias changed.
    with pytest.raises(AliasChangedError):
        link("b", source_repo=repo, target="prod", target_repo=repo, expected=current)
