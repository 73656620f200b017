"""Issue 11: links into remote git repositories at a revision, against a real git server.

The server is `git http-backend` behind tests/gitserver.py on 127.0.0.1 (the `git_world`
fixture): `org/models.git` (tags v1 and v1-annotated on c1, main at c2, dev at c3) and
`private.git`, which needs a token. Each test has its own cache of fetched commits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import GIT_TOKEN, GitWorld
from gitserver import GitServer, commit, init_bare, mlem_link, mlem_model

from mlemremote import MlemLink, MlemModel, check, link, load_many, load_meta
from mlemremote.api import configured
from mlemremote.core.errors import (
    GitAuthError,
    GitRemoteError,
    GitRepoNotFoundError,
    GitTransferLimitError,
    GitUnreachableError,
    HostNotAllowedError,
    InvalidLinkError,
    MetafileTooLargeError,
    MlemError,
    ReadOnlyLocationError,
    RemoteConfigError,
    RemoteGitNotSupportedError,
    RevisionNotFound,
    SecretInURLError,
    TimeBudgetError,
)

pytestmark = pytest.mark.backends("git")

RF = ".mlem/model/rf.mlem"


def version_of(obj: Any) -> str:
    """Which fixture model this is ("rf/v1", ...), from its artifact hash."""
    import hashlib

    digest = obj.artifacts["data"]["hash"]
    for name in ("rf", "gb", "external", "secret", "m"):
        for extra in ("", "v1", "v2", "v3"):
            if hashlib.md5((name + extra).encode()).hexdigest() == digest:
                return f"{name}/{extra}" if extra else name
    return digest


def own_repo(world: GitWorld) -> tuple[Path, str]:
    """A fresh bare repo on the server, for a test that moves its branches."""
    name = f"own/{uuid.uuid4().hex[:8]}.git"
    repo = init_bare(world.root, name)
    commit(repo, {".mlem/config.yaml": "{}\n", RF: mlem_model("rf", "v1")}, "rf v1")
    return repo, world.url(name)


def user_config(path: Path, remotes: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump({"remotes": remotes}))


def serves(world: GitWorld, config: Path, **extra: Any) -> None:
    """A remote of the user's config for the test server: links may lead there."""
    user_config(config, {"git": {"url": world.server.url + "/", **extra}})


# -- revisions -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rev", "expected"),
    [
        ("v1", "rf/v1"),
        ("v1-annotated", "rf/v1"),
        ("main", "rf/v2"),
        ("refs/heads/main", "rf/v2"),
        ("dev", "rf/v2"),
        (None, "rf/v2"),  # the default branch
    ],
)
def test_reads_at_a_branch_a_tag_or_the_default_branch(
    git_world: GitWorld, rev: str | None, expected: str
) -> None:
    model = load_meta("rf", repo=git_world.url(), rev=rev)
    assert version_of(model) == expected
    assert git_world.url() in str(model.location)


def test_reads_at_a_commit_sha_and_an_abbreviated_tip(git_world: GitWorld) -> None:
    shas = git_world.shas
    assert version_of(load_meta(RF, repo=git_world.url(), rev=shas["c1"])) == "rf/v1"
    assert version_of(load_meta("gb", repo=git_world.url(), rev=shas["c3"][:10])) == "gb"
    # a repo URL without .git, and a path inside it as one URL
    assert version_of(load_meta("rf", repo=git_world.url("org/models"), rev="v1")) == "rf/v1"
    assert version_of(load_meta(f"{git_world.url()}/{RF}", rev="v1")) == "rf/v1"


def test_a_moving_branch_is_read_where_it_is_now(git_world: GitWorld) -> None:
    repo, url = own_repo(git_world)
    assert version_of(load_meta("rf", repo=url, rev="main")) == "rf/v1"
    commit(repo, {RF: mlem_model("rf", "v2")}, "rf v2")
    assert version_of(load_meta("rf", repo=url, rev="main")) == "rf/v2"
    assert version_of(load_meta("rf", repo=url)) == "rf/v2"


def test_cost_one_listing_per_call_and_none_for_a_cached_commit(
    git_world: GitWorld, fresh_cache: Path
) -> None:
    server = GitServer(git_world.root).start()  # its own, to stop it
    url = f"{server.url}/org/models.git"
    try:
        load_meta("rf", repo=url, rev="main")  # cold: list, then fetch c2 once
        cold = server.requests
        assert sum(1 for m, _ in cold if m == "POST") >= 1
        server.reset()
        load_meta("rf", repo=url, rev="main")  # warm: one ref listing
        assert server.requests == [("GET", "/org/models.git/info/refs?service=git-upload-pack")]
        server.reset()
        models = load_many(["rf", "latest", ".mlem/link/models/external"], url, rev="main")
        assert [version_of(m) for m in models] == ["rf/v2", "rf/v2", "external"]
        assert len(server.requests) == 1, server.requests  # one listing for the batch
        server.reset()
        sha = git_world.shas["c2"]
        load_meta("rf", repo=url, rev=sha)  # cached by the first call
        assert server.requests == []
    finally:
        server.stop()
    # The server is gone: a pinned read still works, from the cache, with no request.
    assert version_of(load_meta("rf", repo=url, rev=sha)) == "rf/v2"
    assert [p.name for p in fresh_cache.glob("git/*/*") if p.is_dir()] == [sha]
    with pytest.raises(GitUnreachableError, match="main"):  # a branch needs the server
        load_meta("rf", repo=url, rev="main")
    with pytest.raises(GitUnreachableError):  # a commit not cached yet too
        load_meta("rf", repo=url, rev=git_world.shas["c1"])


# -- links ------------------------------------------------------------------------------------
def test_link_writes_repo_and_rev_and_pin_records_the_commit(
    git_world: GitWorld, tmp_path: Path, no_user_config: Path
) -> None:
    serves(git_world, no_user_config)
    url = git_world.url()
    made = link(RF, source_repo=url, rev="main", target=str(tmp_path / "latest"))
    written = yaml.safe_load((tmp_path / "latest.mlem").read_text())
    assert written == {
        "link_type": "model",
        "object_type": "link",
        "path": RF,
        "repo": url + "/",
        "rev": "main",
    }
    assert isinstance(made, MlemLink)
    link("rf", source_repo=url, rev="main", target=str(tmp_path / "pinned"), pin=True)
    pinned = yaml.safe_load((tmp_path / "pinned.mlem").read_text())
    assert pinned["rev"] == git_world.shas["c2"]
    link("rf", source_repo=url, rev="v1-annotated", target=str(tmp_path / "tagpin"), pin=True)
    assert yaml.safe_load((tmp_path / "tagpin.mlem").read_text())["rev"] == git_world.shas["c1"]
    assert version_of(load_meta(str(tmp_path / "latest"))) == "rf/v2"
    assert version_of(load_meta(str(tmp_path / "tagpin"))) == "rf/v1"
    # and a link inside the repo (latest -> rf) followed at that revision
    assert version_of(load_meta("latest", repo=url, rev="main")) == "rf/v2"


def test_links_to_git_servers_follow_the_link_policy(git_world: GitWorld, tmp_path: Path) -> None:
    """A link someone else wrote may not make us contact any git server: the scheme and
    host policy of every link, unless a remote of the user's config names the server."""
    (tmp_path / "l.mlem").write_text(mlem_link(RF, repo=git_world.url() + "/", rev="main"))
    with pytest.raises(InvalidLinkError, match="not allowed"):
        load_meta(str(tmp_path / "l"))
    before = len(git_world.server.requests)
    with configured(link_schemes={"file", "http"}), pytest.raises(HostNotAllowedError):
        load_meta(str(tmp_path / "l"))
    assert len(git_world.server.requests) == before  # refused before any request
    with configured(link_schemes={"file", "http"}, allowed_hosts={"127.0.0.1"}):
        assert version_of(load_meta(str(tmp_path / "l"))) == "rf/v2"


def test_a_chain_from_a_bucket_into_git_and_back(
    git_world: GitWorld, other_backend: Any, no_user_config: Path
) -> None:
    bucket = other_backend("s3-moto")
    serves(git_world, no_user_config)
    MlemModel(artifacts={"data": {"hash": "b", "size": 1, "uri": "m"}}).dump(
        bucket.uri("models/m"), storage_options=bucket.storage_options
    )
    repo, url = own_repo(git_world)
    commit(repo, {".mlem/link/to-bucket.mlem": mlem_link(bucket.uri("models/m.mlem"))}, "out")
    bucket.fs.pipe_file(
        bucket.uri("entry.mlem"),
        mlem_link(".mlem/link/to-bucket.mlem", repo=url + "/", rev="main").encode(),
    )
    start = load_meta(bucket.uri("entry"), follow_links=False)
    from mlemremote import _links
    from mlemremote.core.objects import build

    chain = [str(o.location) for o in _links.walk_all(start, build)]
    assert chain == [
        bucket.uri("entry.mlem"),
        f"{url}/.mlem/link/to-bucket.mlem@main",
        bucket.uri("models/m.mlem"),
    ]
    assert load_meta(bucket.uri("entry")).artifacts["data"]["hash"] == "b"


@pytest.mark.parametrize(
    ("field", "rev", "expected"),
    [
        ("repo", "main", "rf/v2"),
        ("repo", None, "rf/v2"),
        ("repo", "v1", "rf/v1"),
        ("github", None, "rf/v1"),
        ("tree", None, "rf/v1"),
    ],
)
def test_mlem_github_links_load_through_a_rewrite(
    git_world: GitWorld,
    tmp_path: Path,
    no_user_config: Path,
    field: str,
    rev: str | None,
    expected: str,
) -> None:
    """MLEM writes `repo: https://github.com/org/repo/` (+ `rev:`); fsspec's github://
    and GitHub's /tree/<ref>/ URLs name the revision themselves. A remote of the user's
    config serves github.com from the test server, as Git's insteadOf does."""
    user_config(
        no_user_config,
        {"mirror": {"url": git_world.server.url + "/", "insteadof": "https://github.com/"}},
    )
    if field == "repo":
        text = mlem_link(RF, repo="https://github.com/org/models/", rev=rev)
    elif field == "github":
        text = mlem_link(f"github://org:models@v1/{RF}")
    else:
        text = mlem_link(f"https://github.com/org/models/tree/v1/{RF}")
    (tmp_path / "gh.mlem").write_text(text)
    git_world.server.reset()
    assert version_of(load_meta(str(tmp_path / "gh"))) == expected
    assert all(p.startswith("/org/models/") for _, p in git_world.server.requests)
    direct = load_meta("rf", repo="https://github.com/org/models", rev="v1")
    assert version_of(direct) == "rf/v1"
    assert str(direct.location) == f"https://github.com/org/models/{RF}@v1"


# -- credentials ----------------------------------------------------------------------------
def test_a_private_repo_takes_a_token_from_the_environment(
    git_world: GitWorld, tmp_path: Path, no_user_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = git_world.url("private.git")
    with pytest.raises(GitAuthError) as none_given:
        load_meta("secret", repo=url, rev="main")
    assert url in str(none_given.value) and "'main'" in str(none_given.value)
    user_config(no_user_config, {"p": {"url": url, "env": {"token": "MY_GIT_TOKEN"}}})
    monkeypatch.setenv("MY_GIT_TOKEN", "wrong")
    with pytest.raises(GitAuthError, match="refused"):
        load_meta("secret", repo=url, rev="main")
    monkeypatch.setenv("MY_GIT_TOKEN", GIT_TOKEN)
    assert version_of(load_meta("secret", repo=url, rev="main")) == "secret"
    link("secret", source_repo=url, rev="main", target=str(tmp_path / "s"))
    assert GIT_TOKEN not in (tmp_path / "s.mlem").read_text()
    assert version_of(load_meta(str(tmp_path / "s"))) == "secret"
    monkeypatch.setenv("MY_GIT_TOKEN", "wrong")
    with pytest.raises(GitAuthError) as refused:
        load_meta("secret", repo=url, rev="main")
    assert GIT_TOKEN not in str(refused.value) and "wrong" not in str(refused.value)


def test_git_credentials_and_rewrites_stay_out_of_shared_configs(
    git_world: GitWorld, no_user_config: Path
) -> None:
    from mlemremote._remotes import parse_remotes

    shared = {"remotes": {"m": {"url": "http://mirror/", "insteadof": "https://github.com/"}}}
    with pytest.raises(RemoteConfigError, match=r"insteadof.*user config"):
        parse_remotes(shared, "repo config", shared=True)
    user_config(no_user_config, {"g": {"url": git_world.server.url + "/", "options": {"x": 1}}})
    with pytest.raises(RemoteConfigError, match="takes only"):
        load_meta("rf", repo=git_world.url(), rev="v1")
    user_config(
        no_user_config,
        {"far": {"url": "http://10.1.2.3/", "env": {"token": "T"}}},
    )
    os.environ["T"] = "x"
    try:
        with pytest.raises(RemoteConfigError, match="only over https"):
            load_meta("rf", repo="http://10.1.2.3/org/models.git", rev="v1")
    finally:
        del os.environ["T"]
    with pytest.raises(SecretInURLError):
        load_meta("rf", repo=git_world.url().replace("http://", "http://u:pw@"), rev="v1")


# -- errors -------------------------------------------------------------------------------
def test_each_failure_is_a_typed_error_naming_the_repo_and_the_revision(
    git_world: GitWorld,
) -> None:
    url = git_world.url()
    with pytest.raises(RevisionNotFound) as unknown:
        load_meta("rf", repo=url, rev="no-such-branch")
    assert url in str(unknown.value) and "no-such-branch" in str(unknown.value)
    with pytest.raises(RevisionNotFound):  # a commit that is nowhere
        load_meta("rf", repo=url, rev="0" * 40)
    missing = git_world.url("org/nothing-here.git")
    with pytest.raises(GitRepoNotFoundError, match=r"nothing-here\.git.*'v1'"):
        load_meta("rf", repo=missing, rev="v1")
    closed = "http://127.0.0.1:9/org/models.git"
    with pytest.raises(GitUnreachableError, match=r"127\.0\.0\.1:9/org/models\.git.*'v1'"):
        load_meta("rf", repo=closed, rev="v1")
    git_world.server.hostile["broken.git"] = "status:500"
    with pytest.raises(GitRemoteError, match="HTTP 500"):
        load_meta("rf", repo=git_world.url("broken.git"), rev="v1")
    with pytest.raises(RemoteGitNotSupportedError):
        load_meta("rf", repo="ssh://git@127.0.0.1/org/models.git", rev="v1")
    with pytest.raises(ReadOnlyLocationError):
        link(f"{url}/{RF}", rev="v1", target="latest", target_repo=url)


def test_a_web_server_that_is_not_git_is_not_crawled(tmp_path: Path) -> None:
    import http.server
    import threading

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/models.git"
        with pytest.raises(GitRepoNotFoundError):
            load_meta("rf", repo=url, rev="main")
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- security ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/org/models.git",
        "http://0xA9FEA9FE/org/models.git",
        "http://metadata.google.internal/org/models.git",
        "http://[::ffff:169.254.169.254]/org/models.git",
    ],
)
def test_metadata_addresses_are_refused_before_connecting(url: str) -> None:
    with pytest.raises(HostNotAllowedError):
        load_meta("rf", repo=url, rev="main")


def test_redirects_stay_in_the_origin(git_world: GitWorld) -> None:
    git_world.server.hostile["moved.git"] = "redirect:http://169.254.169.254/x.git/info/refs"
    with pytest.raises(HostNotAllowedError):
        load_meta("rf", repo=git_world.url("moved.git"), rev="main")
    git_world.server.hostile["away.git"] = "redirect:http://127.0.0.2:9/x.git/info/refs"
    with pytest.raises(HostNotAllowedError, match="another origin"):
        load_meta("rf", repo=git_world.url("away.git"), rev="main")


@pytest.mark.parametrize(
    "escape",
    [
        mlem_link("../../outside.mlem"),
        mlem_link("/etc/passwd"),
        mlem_link("file:///etc/passwd"),
        mlem_link(RF, rev="v1"),  # another revision of its own repo
        mlem_link(RF, repo="../other"),
    ],
)
def test_a_link_in_a_git_repo_stays_in_that_repo_at_that_revision(
    git_world: GitWorld, escape: str
) -> None:
    repo, url = own_repo(git_world)
    commit(repo, {".mlem/link/escape.mlem": escape}, "escape")
    with pytest.raises(InvalidLinkError):
        load_meta("escape", repo=url, rev="main")


def test_metafiles_in_git_obey_the_size_cap(git_world: GitWorld) -> None:
    repo, url = own_repo(git_world)
    big = "object_type: model\n" + "#" * 200_000 + "\n"
    commit(repo, {".mlem/model/big.mlem": big}, "big")
    with configured(max_metafile_bytes=64 * 1024), pytest.raises(MetafileTooLargeError):
        load_meta("big", repo=url, rev="main")


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("endless-pack", GitTransferLimitError),
        ("many-refs", GitTransferLimitError),
        ("trickle", TimeBudgetError),
    ],
)
def test_a_hostile_server_is_bounded_in_bytes_and_time(
    git_world: GitWorld, mode: str, error: type[MlemError]
) -> None:
    name = f"hostile/{mode}.git"
    git_world.server.hostile[name] = mode
    sha = "1" * 40 if mode == "endless-pack" else "main"
    started = time.monotonic()
    with configured(git_max_transfer_bytes=2 << 20, retry_max_seconds=2), pytest.raises(error):
        load_meta("rf", repo=git_world.url(name), rev=sha)
    assert time.monotonic() - started < 30  # (a bound, not a measurement)
    deadline = time.monotonic() + 10
    while git_world.server.active_requests and time.monotonic() < deadline:
        time.sleep(0.05)  # the server sees the hang-up at its next write
    assert git_world.server.active_requests == 0


# -- cache ----------------------------------------------------------------------------
WORKER = textwrap.dedent(
    """
    import sys
    from mlemremote import load_meta
    model = load_meta("rf", repo=sys.argv[1], rev=sys.argv[2])
    print(model.artifacts["data"]["hash"])
    """
)


@pytest.mark.exclusive  # a race between processes: alone, the race is theirs
def test_concurrent_processes_fill_the_cache_once(git_world: GitWorld, fresh_cache: Path) -> None:
    sha = git_world.shas["c2"]
    env = {**os.environ, "MLEMREMOTE_CACHE_DIR": str(fresh_cache)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, git_world.url(), sha],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [w.communicate(timeout=120) for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    assert len({out for out, _ in outputs}) == 1
    entries = [p.name for p in fresh_cache.glob("git/*/*")]
    assert sorted(entries) == [sha, "url"]  # one copy, no temporary folders left


def test_the_cache_is_bounded_least_recently_used_first(
    git_world: GitWorld, fresh_cache: Path
) -> None:
    url, shas = git_world.url(), git_world.shas
    load_meta("rf", repo=url, rev=shas["c1"])
    (entry,) = fresh_cache.glob(f"git/*/{shas['c1']}")
    os.utime(entry, (time.time() - 3600, time.time() - 3600))  # used an hour ago
    with configured(git_cache_max_bytes=1):
        load_meta("rf", repo=url, rev=shas["c2"])
    assert not entry.exists()
    assert list(fresh_cache.glob(f"git/*/{shas['c2']}"))


# -- check, ls, show ------------------------------------------------------------------
def test_check_and_the_cli_read_a_remote_repo_at_a_revision(git_world: GitWorld) -> None:
    url = git_world.url()
    results = check(url, rev="main")
    assert {Path(r.uri.split("@")[0]).name: r.status for r in results} == {
        "latest.mlem": "ok",
        "external.mlem": "ok",
    }
    cli = [sys.executable, "-m", "mlemremote._cli"]
    shown = subprocess.run(
        [*cli, "show", "latest", "--repo", url, "--rev", "main", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    hops = json.loads(shown.stdout)
    assert [h["object_type"] for h in hops] == ["link", "model"]
    assert hops[1]["uri"] == f"{url}/{RF}@main"
    listed = subprocess.run(
        [*cli, "ls", url, "--rev", "v1", "--json"], capture_output=True, text=True, check=True
    )
    assert [r["name"] for r in json.loads(listed.stdout)] == [RF]
    checked = subprocess.run([*cli, "check", url, "--rev", "main"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


# -- git repositories on local disk ------------------------------------------------------
def test_a_bare_repo_on_disk_is_read_in_place(git_world: GitWorld, tmp_path: Path) -> None:
    bare = git_world.root / "org" / "models.git"
    for repo in (f"file://{bare}", str(bare)):
        assert version_of(load_meta("rf", repo=repo, rev="v1")) == "rf/v1"
        assert version_of(load_meta("rf", repo=repo)) == "rf/v2"  # its default branch
    link("rf", source_repo=f"file://{bare}", rev="main", target=str(tmp_path / "a"), pin=True)
    written = yaml.safe_load((tmp_path / "a.mlem").read_text())
    assert written["repo"] == f"file://{bare}/" and written["rev"] == git_world.shas["c2"]
    assert version_of(load_meta(str(tmp_path / "a"))) == "rf/v2"


def test_pin_with_a_branch_of_a_work_tree_records_its_commit(tmp_path: Path) -> None:
    from conftest import git

    from mlemremote import init

    work = tmp_path / "wt"
    work.mkdir()
    git(str(work), "init", "-q", "-b", "main")
    init(str(work))
    MlemModel(artifacts={"data": {"hash": "w", "size": 1, "uri": "w"}}).dump("rf", repo=str(work))
    git(str(work), "add", "-A")
    git(str(work), "commit", "-qm", "rf")
    sha = git(str(work), "rev-parse", "HEAD")
    made = link("rf", source_repo=str(work), rev="main", target=str(tmp_path / "p"), pin=True)
    assert made.rev == sha


def test_large_blobs_are_not_fetched_where_the_server_filters(git_world: GitWorld) -> None:
    """A repo that also holds model weights: the fetch asks the server to leave out blobs
    over the metafile cap (git http-backend with uploadpack.allowFilter does)."""
    repo, url = own_repo(git_world)
    commit(repo, {"weights.bin": os.urandom(5 << 20)}, "weights")
    with configured(git_max_transfer_bytes=2 << 20):  # (filtered: blobs over 4 MiB)
        assert version_of(load_meta("rf", repo=url, rev="main")) == "rf/v1"
