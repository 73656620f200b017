"""What a hostile review of the MLEM-parity change (issue 10) found: each test is one
finding, and failed on the reviewed code.

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

from mlemremote.api import check, history, init, link, load_many, load_meta, rollback
from mlemremote.core.errors import (
    AmbiguousObjectError,
    InvalidLinkError,
    MlemError,
    ObjectExistsError,
)
from mlemremote.core.objects import MlemData, MlemModel

PEER_REASON = missing_reason()
needs_peer = pytest.mark.skipif(PEER_REASON is not None, reason=f"MLEM peer: {PEER_REASON}")
# In a parallel run the module runs on one worker: one MLEM peer process (a module fixture).
pytestmark = pytest.mark.xdist_group("review-parity")

# What the previous mlemremote (HEAD~2) wrote, byte for byte (checked by running it).
OLD_LINK = (
    "link_type: model\nobject_type: link\npath: {path}\n# mlemremote write 0123456789abcdef\n"
)


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


# -- F1: a write that lands behind an existing path: link()/dump() succeed, nothing moves ---
def test_f1_upgrade_moving_an_alias_written_by_the_previous_version_is_silently_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = str(tmp_path / "repo")
    init(repo)
    model(1, "a", repo=repo)
    model(2, "b", repo=repo)
    # The previous version wrote `link("a", source_repo=repo, target=f"{repo}/aliases/prod")`
    # at the path itself:
    write(f"{repo}/aliases/prod.mlem", OLD_LINK.format(path=".mlem/model/a.mlem"))
    assert load_meta(f"{repo}/aliases/prod").model_type == {"v": 1}
    caplog.set_level(logging.WARNING, logger="mlemremote")
    # After the upgrade the same deploy call writes .mlem/link/aliases/prod.mlem instead...
    link("b", source_repo=repo, target=f"{repo}/aliases/prod")
    link_warned = any("hides" in r.message or "hidden" in r.message for r in caplog.records)
    # ...and the alias keeps serving the old model (MLEM reads the same stale file).
    served = load_meta(f"{repo}/aliases/prod").model_type
    assert served == {"v": 2} or link_warned, (
        f"link() returned normally, no warning, and {repo}/aliases/prod still serves {served}"
    )


def test_f1b_dump_by_path_after_upgrade_is_hidden_by_the_old_metafile(tmp_path: Path) -> None:
    repo = str(tmp_path / "repo")
    init(repo)
    model(1, f"{repo}/models/rf", external=True)  # what the previous version's dump wrote
    # The same call after the upgrade would land in .mlem/model/, hidden: refused.
    with pytest.raises(ObjectExistsError, match="would hide"):
        model(2, f"{repo}/models/rf")
    assert load_meta(f"{repo}/models/rf").model_type == {"v": 1}
    model(2, f"{repo}/models/rf", external=True)  # what the message says to do
    assert load_meta(f"{repo}/models/rf").model_type == {"v": 2}


def test_f1c_alias_over_an_index_link_is_hidden_by_the_external_object(tmp_path: Path) -> None:
    repo = str(tmp_path / "repo")
    init(repo)
    model(1, "prod", repo=repo, external=True)  # also writes the index .mlem/link/prod.mlem
    model(2, "v2", repo=repo)
    index = Path(repo, ".mlem", "link", "prod.mlem").read_bytes()
    with pytest.raises(ObjectExistsError, match="would hide"):  # the alias would be hidden
        link("v2", source_repo=repo, target="prod", target_repo=repo)
    assert Path(repo, ".mlem", "link", "prod.mlem").read_bytes() == index
    assert load_meta("prod", repo=repo).model_type == {"v": 1}


# -- F2: folder-relative links that end up inside a repo: the tools read different files ----
@needs_peer
def test_f2_dot_slash_link_inside_a_repo_resolves_differently_in_mlem(
    tmp_path: Path, peer: Peer
) -> None:
    root = str(tmp_path / "proj")
    os.makedirs(f"{root}/aliases")
    peer("save_model", cwd=str(tmp_path), path=f"{root}/aliases/m", seed=1)
    peer("save_model", cwd=str(tmp_path), path=f"{root}/m", seed=2)
    # written outside repos: by the previous version by default, now with folder_relative=True
    written = link(f"{root}/aliases/m", target=f"{root}/aliases/prod", folder_relative=True)
    assert written.path == "./m.mlem"
    peer("init", cwd=str(tmp_path), path=root)  # the folder becomes a MLEM repo later
    theirs = peer("load", cwd=str(tmp_path), path=f"{root}/aliases/prod")["location"]["fullpath"]
    assert theirs == f"{root}/m.mlem"  # MLEM: relative to the repo root
    with pytest.raises(InvalidLinkError, match="relative to the repo root"):
        load_meta(f"{root}/aliases/prod")  # two readings: refused, never one of them
    statuses = {c.uri.rsplit("/", 1)[1]: c.status for c in check(root)}
    assert statuses == {"prod.mlem": "invalid"}


# -- F3: the same-repo name form names another object than the one linked ---------------------
@needs_peer
def test_f3_same_repo_link_names_a_different_model_than_its_source(
    tmp_path: Path, peer: Peer
) -> None:
    d, repo = str(tmp_path), str(tmp_path / "repo")
    peer("init", cwd=d, path=repo)
    peer("save_model", cwd=d, path="models/rf", repo=repo, seed=1)  # .mlem/model/models/rf
    peer("save_model", cwd=d, path="models/rf", repo=repo, external=True, seed=2)  # models/rf
    src = f"{repo}/.mlem/model/models/rf.mlem"
    written = link(src, target="prod", target_repo=repo)
    assert written.path == ".mlem/model/models/rf.mlem"  # exact: no other file can take it
    assert peer("load", cwd=d, path="prod", repo=repo)["location"]["fullpath"] == src
    assert str(load_meta("prod", repo=repo).location).endswith("/.mlem/model/models/rf.mlem")


# -- F6: the name form makes links that MLEM (or mlemremote itself) cannot read ---------------
def test_f6a_a_second_object_of_one_name_is_refused(tmp_path: Path) -> None:
    repo = str(tmp_path / "repo")
    init(repo)
    model(1, "rf", repo=repo)  # .mlem/model/rf.mlem
    with pytest.raises(ObjectExistsError, match="ambiguous"):  # its data under the same name
        MlemData().dump("rf", repo=repo)
    link(f"{repo}/.mlem/model/rf.mlem", target="prod", target_repo=repo)
    assert load_meta("prod", repo=repo).model_type == {"v": 1}


@needs_peer
def test_f6b_an_alias_named_like_its_model_is_refused(tmp_path: Path, peer: Peer) -> None:
    d, repo = str(tmp_path), str(tmp_path / "repo")
    peer("init", cwd=d, path=repo)
    peer("save_model", cwd=d, path="rf", repo=repo, seed=1)
    with pytest.raises(ObjectExistsError, match="ambiguous"):  # MLEM would then refuse `rf`
        link("rf", source_repo=repo, target="rf", target_repo=repo)
    assert peer("load", cwd=d, path="rf", repo=repo)["location"]["fullpath"].endswith(
        "/.mlem/model/rf.mlem"
    )
    peer("ls", cwd=d, repo=repo)


# -- F7: rollback() goes "back" to the target the alias already has -------------------------
def test_f7_rollback_is_a_no_op_when_history_mixes_spellings_of_one_target(
    tmp_path: Path,
) -> None:
    repo = str(tmp_path / "repo")
    init(repo)
    model(1, "v1", repo=repo)
    model(2, "v2", repo=repo)
    link("v1", source_repo=repo, target="latest", target_repo=repo)
    link("v2", source_repo=repo, target="latest", target_repo=repo, absolute=True)
    link("v2", source_repo=repo, target="latest", target_repo=repo)  # (or: an old-version entry)
    assert load_meta("latest", repo=repo).model_type == {"v": 2}
    back = rollback("latest", repo=repo)
    assert load_meta("latest", repo=repo).model_type == {"v": 1}, (
        f"rollback() returned {back.path!r} and still serves v2; history: "
        f"{[e.link.path for e in history('latest', repo=repo)]}"
    )


def test_f7b_rollback_when_mlem_spelled_the_same_target_by_name(tmp_path: Path) -> None:
    repo = str(tmp_path / "repo")
    init(repo)
    model(1, "v1", repo=repo)
    model(2, "v2", repo=repo)
    link("v1", source_repo=repo, target="latest", target_repo=repo)
    # MLEM moves it to v2 in its name form (`v2.mlem`, found in .mlem/model/) ...
    write(f"{repo}/.mlem/link/latest.mlem", "link_type: model\nobject_type: link\npath: v2.mlem\n")
    link("v2", source_repo=repo, target="latest", target_repo=repo)  # ... we write it exactly
    rollback("latest", repo=repo)
    assert load_meta("latest", repo=repo).model_type == {"v": 1}, "rollback() did not roll back"


# -- F4: no shadow warning when the name is given as a path -------------------------------
def test_f4_shadow_warning_only_when_repo_is_passed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = str(tmp_path / "repo")
    init(repo)
    model(2, "rf", repo=repo)  # .mlem/model/rf.mlem ...
    # ... hidden by <repo>/rf.mlem, as MLEM writes it (mlemremote refuses to hide it)
    write(f"{repo}/rf.mlem", MlemModel(model_type={"v": 1}).to_yaml())
    caplog.set_level(logging.WARNING, logger="mlemremote")
    assert load_meta("rf", repo=repo).model_type == {"v": 1}
    assert any("hides" in r.message for r in caplog.records)
    caplog.clear()
    # The same name as a path: the same file (the repo is not looked up when the path
    # hits, so no warning: documented; `check` reports the hidden file either way).
    assert load_meta(f"{repo}/rf").model_type == {"v": 1}
    assert {c.status for c in check(repo)} >= {"shadowed"}


# -- C1: request counts (memory store; one read = one GET on S3/GCS/Azure) --------------------
def test_c1_request_counts_regressed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlemremote._stores.memory import MemoryStore

    fs = fsspec.filesystem("memory")
    root = f"/review-{tmp_path.name}/repo"
    r = f"memory://{root}"
    fs.pipe(f"{root}/.mlem/config.yaml", b"")
    fs.pipe(f"{root}/.mlem/model/models/rf.mlem", b"object_type: model\n")
    mlem_link = b"link_type: model\nobject_type: link\npath: models/rf.mlem\n"  # MLEM's form
    for i in range(50):
        fs.pipe(f"{root}/.mlem/link/a{i}.mlem", mlem_link)
    calls: collections.Counter[str] = collections.Counter()
    orig = MemoryStore._read_once

    def read_once(self: Any, loc: Any, limit: int) -> Any:
        calls[str(loc)] += 1
        return orig(self, loc, limit)

    monkeypatch.setattr(MemoryStore, "_read_once", read_once)
    counts = {}
    load_meta("a0", repo=r)
    counts["load_meta(name, repo) -> MLEM-form link -> model"] = sum(calls.values())
    calls.clear()
    list(load_many([f"a{i}" for i in range(50)], repo=r))
    counts["load_many(50 names)"] = sum(calls.values())
    # The previous version: 3 and 53 reads (.mlem/link/ first, no ambiguity check). Now
    # MLEM's order, every place a name may name (MLEM checks the same seven, with more
    # requests each): a name is 7 reads (the path, then six type folders at once), and
    # the MLEM-form hop `models/rf.mlem` 7 more (shared by the 50 in load_many).
    assert counts == {
        "load_meta(name, repo) -> MLEM-form link -> model": 7 + 7,
        "load_many(50 names)": 50 * 7 + 7 + 1,
    }, counts


# -- F5 (pre-existing): a name in a repo that is the repo itself reads a file outside it ----
@needs_peer
def test_f5_name_dot_in_repo_reads_the_file_next_to_the_repo(tmp_path: Path, peer: Peer) -> None:
    repo = str(tmp_path / "repo")
    init(repo)
    write(str(tmp_path / "repo.mlem"), "object_type: model\nmodel_type: {v: outside}\n")
    with pytest.raises(PeerError):
        peer("load", cwd=str(tmp_path), path=".", repo=repo)  # MLEM: not found
    with pytest.raises(MlemError):  # mlemremote: loads <parent>/repo.mlem, outside the repo
        load_meta("models/..", repo=repo)


# -- F8: a type-folder hit that is the link itself is dropped: we serve, MLEM refuses -------
@needs_peer
def test_f8_cycle_filter_serves_what_mlem_calls_ambiguous(tmp_path: Path, peer: Peer) -> None:
    d, repo = str(tmp_path), str(tmp_path / "repo")
    peer("init", cwd=d, path=repo)
    peer("save_model", cwd=d, path="x", repo=repo, seed=1)
    write(f"{repo}/.mlem/link/x.mlem", "link_type: model\nobject_type: link\npath: x.mlem\n")
    alias = f"{repo}/.mlem/link/x.mlem"
    with pytest.raises(PeerError, match="MlemObjectNotFound"):
        peer("load", cwd=d, path=alias)
    with pytest.raises(MlemError):
        load_meta(alias)


# == The second review, after the fixes above ============================================
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
