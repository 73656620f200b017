"""Second hostile review of remote git (after 0a967c2): attacks on the fixes and what the
first review missed. Every test here failed on 0a967c2 (fixed since); each docstring says
what went wrong.

Servers: tests/gitserver.py (`git_world`, real `git http-backend`) and `Crafted` from
test_review_git.py (sends any refs and any pack).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
import yaml
from conftest import GIT_TOKEN, GitWorld
from gitserver import mlem_link
from test_review_git import Crafted, _entry, _obj_sha, load_from_crafted, raw_server

from mlemremote import check, load_meta
from mlemremote.api import configured
from mlemremote.core.errors import (
    GitRemoteError,
    HostNotAllowedError,
    InvalidLinkError,
    MlemError,
    RevisionNotFound,
)

pytestmark = pytest.mark.backends("git")


def _varint(n: int) -> bytes:
    out = []
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _ofs(distance: int) -> bytes:
    enc = [distance & 0x7F]
    distance >>= 7
    while distance:
        distance -= 1
        enc.insert(0, 0x80 | (distance & 0x7F))
        distance >>= 7
    return bytes(enc)


def _commit_of(tree: bytes) -> bytes:
    return (
        f"tree {_obj_sha(b'tree', tree)}\nauthor a <a@a> 1700000000 +0000\n"
        "committer a <a@a> 1700000000 +0000\n\nx\n"
    ).encode()


def _pack(objects: list[bytes]) -> bytes:
    pack = b"PACK" + struct.pack(">II", 2, len(objects)) + b"".join(objects)
    return pack + hashlib.sha1(pack).digest()


def padded_delta_bomb(result: int) -> tuple[bytes, str]:
    """commit -> tree -> a 64 KiB blob, plus an OFS_DELTA on that blob whose *source size*
    varint is padded with 30 `0x80` bytes (valid: dulwich's apply_delta reads it as
    65536), so its *result size* starts at byte 34 of the delta, past the 32 bytes
    `check_pack` looks at. The delta is `result // 65536` one-byte "copy 64 KiB" ops."""
    base = bytes(65536)
    src = bytearray(_varint(len(base)))
    src[-1] |= 0x80
    src += b"\x80" * 29 + b"\x00"
    delta = bytes(src) + _varint(result) + b"\x80" * (result // 65536)
    tree = b"100644 base.mlem\0" + bytes.fromhex(_obj_sha(b"blob", base))
    body = _commit_of(tree)
    head = [_entry(1, len(body), zlib.compress(body)), _entry(2, len(tree), zlib.compress(tree))]
    blob = _entry(3, len(base), zlib.compress(base, 9))
    at = 12 + sum(map(len, head))
    here = at + len(blob)
    bomb = _entry(6, len(delta), b"") + _ofs(here - at) + zlib.compress(delta, 9)
    return _pack([*head, blob, bomb]), _obj_sha(b"commit", body)


# -- 1. check_pack: a delta's result size hidden past the first 32 inflated bytes ---------------
def test_a_delta_cannot_hide_its_result_size_from_check_pack() -> None:
    """check_pack reads a delta's result size from the first 32 inflated bytes only; a
    source-size varint padded with 0x80 bytes (dulwich accepts it) pushes the result
    size out of view: `_varint` returns 0 and nothing is counted. dulwich then builds
    the declared result in memory. Observed: a 327-byte pack -> 4.1 GB RSS and 42 s
    (retry_max_seconds=2) for result=2 GiB; here 512 MiB -> ~1.1 GB RSS."""
    pack, sha = padded_delta_bomb(512 << 20)
    assert len(pack) < 1000
    peak_mb, seconds = load_from_crafted(pack, sha, "base")
    assert peak_mb < 300, f"max RSS {peak_mb} MB for a {len(pack)}-byte pack"
    assert seconds < 6, f"{seconds} s with a 2 s budget"


# -- 2. no deadline (and no object count bound) while dulwich indexes ---------------------------
def test_indexing_a_pack_of_many_small_objects_keeps_the_time_budget() -> None:
    """Every object passes check_pack, but dulwich's indexing (add_thin_pack: a Python
    loop per object, SHA-1 and index entry each) runs after the transfer with no
    deadline. Observed: 300,000 tiny blobs (4.4 MB on the wire, 1/15 of
    git_max_transfer_bytes) -> 22 s and 200 MB RSS with retry_max_seconds=5; a pack at
    the 64 MB cap (~4.4M objects) takes minutes and GBs."""
    parts = []
    for i in range(150_000):
        data = b"%d" % i
        parts.append(_entry(3, len(data), zlib.compress(data, 1)))
    body = _commit_of(b"")
    pack = _pack(
        [_entry(1, len(body), zlib.compress(body)), _entry(2, 0, zlib.compress(b"")), *parts]
    )
    sha = _obj_sha(b"commit", body)
    _, seconds = load_from_crafted(pack, sha, "x")
    assert seconds < 5, f"{seconds} s with a 2 s budget"


# -- 3. dot segments: a link leaves the prefix the user named (with the user's token) -----------
@pytest.mark.parametrize("form", ["dots", "encoded-dots", "github-scheme"])
def test_dot_segments_cannot_leave_a_rewritten_prefix(
    git_world: GitWorld,
    tmp_path: Path,
    no_user_config: Path,
    monkeypatch: pytest.MonkeyPatch,
    form: str,
) -> None:
    """`url: http://<server>/mirror/`, `insteadof: https://github.com/`, a token: the user
    named /mirror/ on that server. A link written by someone else with
    `repo: https://github.com/x/../../private.git` passes `_under`/`user_names`
    (string prefixes), is rewritten to `.../mirror/x/../../private.git`, matches the
    remote (string prefix again) so gets the token, and yarl normalizes it to
    `/private.git`: the private repo, outside /mirror/, is read with the user's token.
    `%2e%2e` is normalized by yarl the same way; github://..:x@main/... too."""
    monkeypatch.setenv("MIRROR_TOKEN", GIT_TOKEN)
    no_user_config.write_text(
        yaml.safe_dump(
            {
                "remotes": {
                    "m": {
                        "url": git_world.server.url + "/mirror/",
                        "insteadof": "https://github.com/",
                        "env": {"token": "MIRROR_TOKEN"},
                    }
                }
            }
        )
    )
    repo = {
        "dots": "https://github.com/x/../../private.git",
        "encoded-dots": "https://github.com/x/%2e%2e/%2e%2e/private.git",
        "github-scheme": "github://..:private.git@main/",
    }[form]
    (tmp_path / "l.mlem").write_text(mlem_link(".mlem/model/secret.mlem", repo=repo, rev="main"))
    git_world.server.reset()
    loaded = None
    with contextlib.suppress(MlemError):
        loaded = load_meta(str(tmp_path / "l"))
    outside = [p for _, p in git_world.server.requests if not p.startswith("/mirror/")]
    assert outside == [], f"requests outside /mirror/: {outside}; loaded {loaded}"


def test_dot_segments_cannot_leave_a_user_remote_url(
    git_world: GitWorld, tmp_path: Path, no_user_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without any rewrite: a remote `url: http://<server>/team/` makes a link to
    `http://<server>/team/../private.git` count as "named by the user" (no
    allowed_hosts needed from a local link) and carry the team token to /private.git."""
    monkeypatch.setenv("TEAM_TOKEN", GIT_TOKEN)
    no_user_config.write_text(
        yaml.safe_dump(
            {
                "remotes": {
                    "t": {"url": git_world.server.url + "/team/", "env": {"token": "TEAM_TOKEN"}}
                }
            }
        )
    )
    url = git_world.server.url + "/team/../private.git"
    (tmp_path / "l.mlem").write_text(mlem_link(".mlem/model/secret.mlem", repo=url, rev="main"))
    git_world.server.reset()
    loaded = None
    with contextlib.suppress(InvalidLinkError, HostNotAllowedError):
        loaded = load_meta(str(tmp_path / "l"))
    assert git_world.server.requests == [], f"loaded {loaded}"


# -- 4. an incomplete fetch is cached for good ---------------------------------------------------
def test_a_pack_without_the_commits_trees_is_not_cached(fresh_cache: Path) -> None:
    """fetch_commit checks only that the commit object arrived. A pack whose root tree
    names a subtree that is not in it is renamed into the cache as a complete entry:
    every later read of that commit (no request: it is cached) fails, with foreign
    errors: load_meta -> StorageError(GitError 'object not found'), check ->
    UnexpectedError('unexpected KeyError in check: 2222...')."""
    tree = b"40000 .mlem\0" + bytes.fromhex("2" * 40)
    body = _commit_of(tree)
    pack = _pack(
        [_entry(1, len(body), zlib.compress(body)), _entry(2, len(tree), zlib.compress(tree))]
    )
    sha = _obj_sha(b"commit", body)
    with Crafted([(sha, "refs/heads/main"), (sha, "HEAD")], pack) as server:
        url = server.url + "/partial.git"
        with pytest.raises(GitRemoteError):
            check(url, rev="main")
    assert not list(fresh_cache.glob(f"git/*/{sha}")), "an incomplete commit was cached"


# -- 5. a full SHA that is not a commit ----------------------------------------------------------
@pytest.mark.parametrize("kind", ["annotated tag", "tree"])
def test_a_full_sha_that_is_not_a_commit(git_world: GitWorld, kind: str) -> None:
    """rev=<40 hex> is taken as a commit and fetched as such; the server sends what it
    names (any reachable object). For an annotated tag's own id (`git rev-parse v1`,
    which git accepts as a revision) or a tree's: StorageError(AttributeError:
    '_pygit2.Tag' object has no attribute 'tree'), cached under that id. A tag should
    load its commit; a tree/blob should be RevisionNotFound naming the repository."""
    repo = git_world.shas["repo"]
    spec = {"annotated tag": "refs/tags/v1-annotated", "tree": f"{git_world.shas['c1']}^{{tree}}"}
    sha = subprocess.run(
        ["git", "--git-dir", str(repo), "rev-parse", spec[kind]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if kind == "annotated tag":
        assert load_meta("rf", repo=git_world.url(), rev=sha).object_type == "model"
    else:
        with pytest.raises(RevisionNotFound, match=r"org/models\.git"):
            load_meta("rf", repo=git_world.url(), rev=sha)


# -- 6. crash leftovers: never removed, never counted --------------------------------------------
def test_temporary_folders_of_crashed_fetches_are_cleaned(
    git_world: GitWorld, fresh_cache: Path
) -> None:
    """A process killed during a fetch leaves `<cache>/git/<key>/.tmp-*` (the pack dulwich
    wrote: up to git_max_transfer_bytes each). `_evict` skips every name starting with
    '.', so they are neither counted against git_cache_max_bytes nor ever removed
    (nor are `.trash-*` folders whose removal failed)."""
    stale = fresh_cache / "git" / ("0" * 24) / ".tmp-deadbeef0000-1-abcd"
    (stale / "objects" / "pack").mkdir(parents=True)
    (stale / "objects" / "pack" / "tmp_pack_x").write_bytes(os.urandom(2 << 20))
    os.utime(stale, (1, 1))
    with configured(git_cache_max_bytes=1 << 20):
        load_meta("rf", repo=git_world.url(), rev="main")
    assert not stale.exists(), "a crashed fetch's temporary folder stays in the cache forever"


# -- 7. server text in messages ------------------------------------------------------------------
def test_a_servers_error_text_reaches_messages_without_control_characters() -> None:
    """`ERR <text>` (and sideband channel 3) from the server is put into the MlemError
    as is: terminal escapes (ESC[2J, OSC 8 links, ...) reach the CLI's stderr, which
    `_one_line` does not strip. The rest of the library refuses control characters in
    anything that ends up in messages (`_printable`)."""
    body = b"001e# service=git-upload-pack\n0000" + b"%04x" % (len(b"ERR \x1b[2Jgone\n") + 4)
    body += b"ERR \x1b[2Jgone\n"
    listener = raw_server(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-advertisement"
        b"\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/err.git"
        with pytest.raises(MlemError) as caught:
            load_meta("rf", repo=url, rev="main")
    finally:
        listener.close()
    assert "\x1b" not in str(caught.value), repr(str(caught.value))
