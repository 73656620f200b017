"""Issue 13, part 1: fetch artifacts. `pull` and `mlemremote get` copy an object's
artifacts into a new local folder, `open_artifact` streams one; on every backend.

- Real models saved by MLEM 0.2.0 (`tests/data/mlem-0.2.0-artifacts`, scikit-learn, made
  by `make_mlem_artifacts.py`) come through byte for byte, through aliases.
- A corrupted, a truncated and a longer artifact raise `ArtifactIntegrityError`, and
  leave nothing: no destination, no temporary folder.
- Hostile artifact entries (climbing out, absolute paths, other buckets, hosts,
  schemes, secrets, malformed fields) are refused before anything is downloaded.
- On local disk: symlinks out of the repo (also swapped in at the last moment), FIFOs and
  folders are refused, without blocking.
- Pinned links (git revisions, S3 VersionIds, GCS generations) read the artifact the
  pinned metafile names; a remote git repository serves the blobs it fetched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPORT, VERSIONED, Backend, git
from test_cli import flags

from mlemremote import _artifacts
from mlemremote.api import init, link, open_artifact, pull
from mlemremote.core.errors import (
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    DestinationExistsError,
    InvalidArgumentError,
    InvalidArtifactError,
    InvalidLinkError,
    MlemError,
    NotAFileError,
    WrongMetaType,
)
from mlemremote.core.objects import MlemData, MlemModel

FIXTURE = Path(__file__).resolve().parent / "data" / "mlem-0.2.0-artifacts"
SCRIPT = str(Path(sys.executable).with_name("mlemremote"))
# (alias in the fixture repo, the metafile it leads to, its one artifact)
REAL = [
    ("latest", "models/clf.mlem", "models/clf"),
    ("prod", ".mlem/model/forest.mlem", ".mlem/model/forest"),
    ("data/sample", "data/sample.mlem", "data/sample"),
]


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def upload_fixture(backend: Backend) -> str:
    """The MLEM-saved repo, copied as it is onto the backend."""
    repo = backend.uri("repo")
    for path in sorted((FIXTURE / "repo").rglob("*")):
        if path.is_file():
            backend.write(
                f"{repo}/{path.relative_to(FIXTURE / 'repo').as_posix()}", path.read_bytes()
            )
    return repo


def entry(uri: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"uri": uri, "size": len(data), "hash": md5(data), **extra}


def model_with(
    backend: Backend, metafile: str, files: dict[str, bytes], entries: dict[str, Any] | None = None
) -> str:
    """A model at `metafile` (a URI without `.mlem`) whose artifacts are `files`, written
    beside it (paths relative to its folder); `entries` replaces the artifacts."""
    folder = metafile.rsplit("/", 1)[0]
    for rel, data in files.items():
        backend.write(f"{folder}/{rel}", data)
    artifacts = (
        entries if entries is not None else {rel: entry(rel, data) for rel, data in files.items()}
    )
    MlemModel(artifacts=artifacts, model_type={"type": "test"}).dump(
        metafile, external=True, storage_options=backend.storage_options
    )
    return metafile


def leftovers(folder: Path) -> list[str]:
    """What is in `folder` (the local backend's own `root` aside)."""
    return sorted(p.name for p in folder.iterdir() if p.name != "root") if folder.exists() else []


# -- real MLEM models, byte for byte -----------------------------------------------------
def test_real_mlem_models_come_through_byte_for_byte(backend: Backend, tmp_path: Path) -> None:
    repo = upload_fixture(backend)
    out = tmp_path / "out"
    for alias, metafile, artifact in REAL:
        original = (FIXTURE / "repo" / artifact).read_bytes()
        dest = out / alias.replace("/", "-")
        pulled = pull(alias, str(dest), repo=repo, storage_options=backend.storage_options)
        name = artifact.rsplit("/", 1)[-1]
        assert sorted(os.listdir(dest)) == [name, name + ".mlem"]
        assert (dest / name).read_bytes() == original, alias
        key = next(iter(yaml.safe_load((FIXTURE / "repo" / metafile).read_text())["artifacts"]))
        assert pulled.files == {key: str(dest / name)}
        assert pulled.size == len(original) and pulled.source.endswith(metafile)
        # The copy of the metafile names the file beside it; nothing else changed.
        theirs = yaml.safe_load((FIXTURE / "repo" / metafile).read_text())
        ours = yaml.safe_load((dest / (name + ".mlem")).read_text())
        assert {k: v for k, v in ours.items() if k != "artifacts"} == {
            k: v for k, v in theirs.items() if k != "artifacts"
        }
        ((key, art),) = ours["artifacts"].items()
        assert art == {"uri": name, "size": len(original), "hash": md5(original)}
        # ... and it loads, and its artifact pulls again from there.
        again = pull(str(dest / name), str(out / (alias.replace("/", "-") + "-again")))
        assert Path(again.files[key]).read_bytes() == original
        with open_artifact(alias, repo=repo, storage_options=backend.storage_options) as f:
            assert f.read() == original
    assert leftovers(out) == sorted(["latest", "prod", "data-sample"] + [
        n + "-again" for n in ("latest", "prod", "data-sample")])  # fmt: skip


def test_many_artifacts_in_folders_concurrently(backend: Backend, tmp_path: Path) -> None:
    files = {f"m/part-{i}/w{i}.bin": os.urandom(1000 * i + 17) for i in range(12)}
    files["m/big.bin"] = os.urandom(3 << 20)  # several chunks
    files["m/empty"] = b""
    meta = model_with(backend, backend.uri("models", "m"), files)
    pulled = pull(
        meta, str(tmp_path / "dest"), concurrency=3, storage_options=backend.storage_options
    )
    for rel, data in files.items():
        assert (tmp_path / "dest" / rel).read_bytes() == data, rel
        assert pulled.files[rel] == str(tmp_path / "dest" / rel)
    assert pulled.size == sum(map(len, files.values()))
    assert leftovers(tmp_path) == ["dest"]


def test_an_object_without_artifacts_pulls_its_metafile(backend: Backend, tmp_path: Path) -> None:
    MlemModel(model_type={"x": 1}).dump(backend.uri("m"), storage_options=backend.storage_options)
    pulled = pull(backend.uri("m"), str(tmp_path / "d"), storage_options=backend.storage_options)
    assert pulled.files == {} and os.listdir(tmp_path / "d") == ["m.mlem"]
    with pytest.raises(InvalidArgumentError, match="0 artifacts"):
        open_artifact(backend.uri("m"), storage_options=backend.storage_options)


# -- integrity ---------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["corrupted", "truncated", "longer", "missing"])
def test_a_damaged_artifact_leaves_nothing(backend: Backend, tmp_path: Path, damage: str) -> None:
    good = os.urandom(2 << 20)
    files = {"ok.bin": os.urandom(5000), "model.bin": good}
    meta = model_with(backend, backend.uri("models", "m"), files)
    where = backend.uri("models", "model.bin")
    if damage == "corrupted":
        backend.write(where, good[:1000] + bytes([good[1000] ^ 1]) + good[1001:])
    elif damage == "truncated":
        backend.write(where, good[: len(good) // 2])
    elif damage == "longer":
        backend.write(where, good + b"more")
    else:
        backend.fs.rm(backend.fspath(where))
    expected = ArtifactNotFoundError if damage == "missing" else ArtifactIntegrityError
    dest = tmp_path / "out" / "dest"
    (tmp_path / "out").mkdir()
    with pytest.raises(expected) as caught:
        pull(meta, str(dest), storage_options=backend.storage_options)
    assert "model.bin" in str(caught.value)
    assert leftovers(tmp_path / "out") == []  # no dest, no temporary folder
    REPORT["artifacts"].append(
        f"{backend.name:>13}: a {damage} artifact: {type(caught.value).__name__}, "
        "no destination, no temporary folder"
    )
    so = backend.storage_options
    # Streamed: the error comes, never a quiet end.
    with pytest.raises(expected), open_artifact(meta, "model.bin", storage_options=so) as f:
        while f.read(65536):
            pass


def test_a_damaged_artifact_never_replaces_dest(backend: Backend, tmp_path: Path) -> None:
    data = os.urandom(10000)
    meta = model_with(backend, backend.uri("m"), {"w": data})
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "old").write_bytes(b"old")
    backend.write(backend.uri("w"), data[:-1] + b"X")
    with pytest.raises(ArtifactIntegrityError):
        pull(meta, str(dest), overwrite=True, storage_options=backend.storage_options)
    assert leftovers(dest) == ["old"] and leftovers(tmp_path) == ["dest"]


def test_open_artifact_checks_the_whole_file(backend: Backend) -> None:
    data = os.urandom(3 << 20)
    meta = model_with(backend, backend.uri("m"), {"a": data, "b": b"bee"})
    so = backend.storage_options
    with open_artifact(meta, "a", storage_options=so) as f:
        assert f.name == "a" and f.artifact.size == len(data)
        assert f.read(10) == data[:10]
        assert f.read() == data[10:]
        assert f.read() == b""
    with pytest.raises(InvalidArgumentError, match="2 artifacts"):
        open_artifact(meta, storage_options=so)
    with pytest.raises(InvalidArgumentError, match="no artifact"):
        open_artifact(meta, "c", storage_options=so)
    backend.write(backend.uri("a"), data[:-1] + bytes([data[-1] ^ 1]))
    # Leaving the block without reading the rest still checks it...
    with (
        pytest.raises(ArtifactIntegrityError, match="hash"),
        open_artifact(meta, "a", storage_options=so) as f,
    ):
        f.read(100)
    # ... but an error inside the block is what is raised (the connection is dropped).
    with pytest.raises(KeyError), open_artifact(meta, "a", storage_options=so) as f:
        f.read(100)
        raise KeyError("mine")


# -- where an artifact may be ------------------------------------------------------------
HOSTILE_URIS = [
    "../../etc/passwd",
    "../../../../../../../../etc/passwd",
    "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "..\\..\\..\\etc\\passwd",
    "/etc/passwd",
    "C:\\Windows\\win.ini",
    "",
    "a\x00b",
    "a\nb",
    "x" * 2000,
]
HOSTILE_FSSPEC = [
    "file:///etc/passwd",
    "s3://some-other-bucket/x",
    "gs://some-other-bucket/x",
    "az://some-other-container/x",
    "http://169.254.169.254/latest/meta-data/iam",
    "http://127.0.0.1:9/x",
    "https://example.com/model.pkl",
    "ftp://example.com/x",
    "github://org:repo@main/x",
    "s3://bucket/x?X-Amz-Signature=abc",
    "https://user:pw@example.com/x",
    "relative/for/mlems/working/dir",
]
HOSTILE_FIELDS: list[dict[str, Any]] = [
    {"uri": "w", "size": -1, "hash": "0" * 32},
    {"uri": "w", "size": True, "hash": "0" * 32},
    {"uri": "w", "size": "4", "hash": "0" * 32},
    {"uri": "w", "size": 4.0, "hash": "0" * 32},
    {"uri": "w", "size": 4, "hash": "abc"},
    {"uri": "w", "size": 4, "hash": 5},
    {"uri": "w", "size": 4},
    {"size": 4, "hash": "0" * 32},
    {"uri": 5, "size": 4, "hash": "0" * 32},
    {"uri": "w", "size": 4, "hash": "0" * 32, "type": "dvc"},
    {"uri": "s3://b/w", "size": 4, "hash": "0" * 32, "type": "local"},
]


def test_hostile_artifact_entries_are_refused(backend: Backend, tmp_path: Path) -> None:
    repo = backend.uri("repo")
    init(repo, storage_options=backend.storage_options)
    backend.write(backend.uri("repo", "models", "w"), b"data")
    cases: list[Any] = [entry(u, b"data") for u in HOSTILE_URIS]
    cases += [entry(u, b"data", type="fsspec") for u in HOSTILE_FSSPEC]
    cases += HOSTILE_FIELDS
    refused = 0
    for number, case in enumerate(cases):
        meta = backend.uri("repo", "models", f"m{number}")
        MlemModel.model_construct(object_type="model", artifacts={"w": case}).dump(
            meta, external=True, storage_options=backend.storage_options
        )
        dest = tmp_path / f"d{number}"
        with pytest.raises(InvalidLinkError):  # InvalidArtifactError, or the policy's own
            pull(meta, str(dest), storage_options=backend.storage_options)
        assert not dest.exists(), case
        with pytest.raises(InvalidLinkError):
            open_artifact(meta, storage_options=backend.storage_options)
        refused += 1
    for bad in (["w"], "w", {"w": {"uri": "w"}, "x": 5}):
        meta = backend.uri("repo", "models", "bad")
        backend.write(meta + ".mlem", yaml.safe_dump({"object_type": "model", "artifacts": bad}))
        with pytest.raises(MlemError):
            pull(meta, str(tmp_path / "bad"), storage_options=backend.storage_options)
        assert not (tmp_path / "bad").exists()
    assert leftovers(tmp_path) == []
    assert refused == len(cases)
    REPORT["artifacts"].append(
        f"{backend.name:>13}: {refused} hostile artifact entries (+3 malformed lists) refused "
        "before any download, by pull and open_artifact; nothing written"
    )


def test_artifacts_may_climb_inside_their_repo_only(backend: Backend, tmp_path: Path) -> None:
    repo = backend.uri("repo")
    init(repo, storage_options=backend.storage_options)
    data = b"shared weights"
    backend.write(backend.uri("repo", "shared", "w.bin"), data)
    backend.write(backend.uri("outside.bin"), data)
    so = backend.storage_options
    inside = model_with(
        backend, backend.uri("repo", "models", "m"), {}, {"w": entry("../shared/w.bin", data)}
    )
    pulled = pull(inside, str(tmp_path / "in"), storage_options=so)
    assert Path(pulled.files["w"]).read_bytes() == data  # placed by its name
    assert sorted(os.listdir(tmp_path / "in")) == ["m.mlem", "w"]
    out = model_with(
        backend, backend.uri("repo", "models", "o"), {}, {"w": entry("../../outside.bin", data)}
    )
    with pytest.raises(InvalidArtifactError, match="leaves the repo"):
        pull(out, str(tmp_path / "out"), storage_options=so)
    # Outside repos an artifact stays below its metafile's folder.
    plain = model_with(backend, backend.uri("plain", "m"), {}, {"w": entry("../outside.bin", data)})
    with pytest.raises(InvalidArtifactError, match="in no repo"):
        pull(plain, str(tmp_path / "plain"), storage_options=so)
    # Two artifacts in one place, or one inside another's file, are refused.
    backend.write(backend.uri("plain", "a"), data)
    same = model_with(
        backend, backend.uri("plain", "s"), {}, {"x": entry("a", data), "y": entry("./a", data)}
    )
    with pytest.raises(InvalidArtifactError, match="same place"):
        pull(same, str(tmp_path / "same"), storage_options=so)
    assert leftovers(tmp_path) == ["in"]


@pytest.mark.parametrize("backend", ["s3-moto", "gcs", "azure"], indirect=True)
def test_another_bucket_needs_external_artifacts(
    backend: Backend, other_backend: Callable[[str], Backend], tmp_path: Path
) -> None:
    other = other_backend(backend.name)
    data = os.urandom(4096)
    other.write(other.uri("weights.bin"), data)
    meta = model_with(
        backend, backend.uri("m"), {}, {"w": entry(other.uri("weights.bin"), data, type="fsspec")}
    )
    with pytest.raises(InvalidArtifactError, match="another filesystem or bucket"):
        pull(meta, str(tmp_path / "a"), storage_options=backend.storage_options)
    pulled = pull(
        meta, str(tmp_path / "b"), external_artifacts=True, storage_options=backend.storage_options
    )
    assert Path(pulled.files["w"]).read_bytes() == data


# -- local disk: files that are not files ------------------------------------------------
@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_symlinks_out_of_the_repo_fifos_and_folders(backend: Backend, tmp_path: Path) -> None:
    repo = backend.uri("repo")
    init(repo)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"the secret")
    folder = Path(repo) / "models"
    folder.mkdir()
    (folder / "out").symlink_to(secret)  # size and hash match: only the symlink is wrong
    (folder / "w").write_bytes(b"the secret")
    (folder / "in").symlink_to(folder / "w")
    os.mkfifo(folder / "fifo")
    (folder / "dir").mkdir()
    entries = {name: entry(name, b"the secret") for name in ("out", "in", "fifo", "dir")}
    for name, art in entries.items():
        MlemModel(artifacts={name: art}).dump(str(folder / f"m-{name}"), external=True)
    assert Path(pull(str(folder / "m-in"), str(tmp_path / "in")).files["in"]).read_bytes() == (
        b"the secret"
    )
    with pytest.raises(InvalidArtifactError, match="symlink"):
        pull(str(folder / "m-out"), str(tmp_path / "out"))
    for name in ("fifo", "dir"):
        with pytest.raises(NotAFileError):
            pull(str(folder / f"m-{name}"), str(tmp_path / name))
    assert leftovers(tmp_path) == ["in", "secret.txt"]


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_a_symlink_swapped_in_at_the_last_moment_is_refused(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks are made on the descriptor that is read: a file replaced by a symlink
    out of the repo after every check on its name still is not read."""
    from mlemremote._stores import local

    secret = tmp_path / "secret"
    secret.write_bytes(b"x" * 10)
    meta = model_with(backend, backend.uri("m"), {"w": b"x" * 10})
    real_open = local.open_confined

    def swapping(path: str, where: str, within: str | None) -> Any:
        if path.endswith("/w"):
            os.unlink(path)
            os.symlink(secret, path)
        return real_open(path, where, within)

    monkeypatch.setattr(local, "open_confined", swapping)
    with pytest.raises(InvalidArtifactError, match="symlink"):
        pull(meta, str(tmp_path / "d"))
    assert not (tmp_path / "d").exists()


# -- the destination ---------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_dest_is_created_whole_or_refused(backend: Backend, tmp_path: Path) -> None:
    data = os.urandom(1000)
    meta = model_with(backend, backend.uri("m"), {"w": data})
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "old").write_bytes(b"old")
    with pytest.raises(DestinationExistsError):
        pull(meta, str(dest))
    assert leftovers(dest) == ["old"]
    pulled = pull(meta, str(dest), overwrite=True)
    assert (
        sorted(os.listdir(dest)) == ["m.mlem", "w"] and Path(pulled.files["w"]).read_bytes() == data
    )
    afile = tmp_path / "afile"
    afile.write_bytes(b"keep")
    link_to_dir = tmp_path / "alink"
    link_to_dir.symlink_to(dest)
    for target in (afile, link_to_dir):
        with pytest.raises(DestinationExistsError):
            pull(meta, str(target), overwrite=True)
    assert afile.read_bytes() == b"keep" and link_to_dir.is_symlink()
    nested = pull(meta, str(tmp_path / "a" / "b" / "c"))  # parents are made, as mkdir -p
    assert Path(nested.files["w"]).read_bytes() == data
    for bad in ("s3://bucket/x", "", 5, "/"):
        with pytest.raises(InvalidArgumentError):
            pull(meta, bad)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_an_interrupted_pull_leaves_nothing(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {f"w{i}": os.urandom(2 << 20) for i in range(4)}
    meta = model_with(backend, backend.uri("m"), files)
    calls = {"n": 0}
    real_wait = _artifacts.wait

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return real_wait(*args, **kwargs)

    monkeypatch.setattr(_artifacts, "wait", interrupted)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(KeyboardInterrupt):
        pull(meta, str(out / "dest"), concurrency=2)
    assert leftovers(out) == []


def test_only_models_and_datasets_have_artifacts(backend: Backend, tmp_path: Path) -> None:
    from mlemremote.core.objects import MlemEnv

    MlemEnv().dump(backend.uri("env"), storage_options=backend.storage_options)
    with pytest.raises(WrongMetaType):
        pull(backend.uri("env"), str(tmp_path / "d"), storage_options=backend.storage_options)
    data = b"1,2,3"
    backend.write(backend.uri("ds"), data)
    MlemData(artifacts={"data": entry("ds", data)}).dump(
        backend.uri("ds"), storage_options=backend.storage_options
    )
    with open_artifact(backend.uri("ds"), storage_options=backend.storage_options) as f:
        assert f.read() == data


# -- versions ----------------------------------------------------------------------------
def test_pinned_links_pull_the_pinned_artifacts(versioned_backend: Backend, tmp_path: Path) -> None:
    backend = versioned_backend
    so = backend.storage_options
    v1, v2 = os.urandom(5000), os.urandom(6000)
    meta = model_with(backend, backend.uri("models", "m"), {"w": v1})
    if backend.name == "local":
        git(backend.root, "add", "-A")
        git(backend.root, "commit", "-q", "-m", "v1")
    if backend.name not in VERSIONED:  # memory, Azure: no versions, the current files
        pull(meta, str(tmp_path / "now"), storage_options=so)
        return
    frozen = link(meta, target=backend.uri("aliases", "frozen"), pin=True, storage_options=so)
    model_with(backend, backend.uri("models", "m"), {"w": v2})  # the model is saved again
    if backend.name == "local":
        git(backend.root, "commit", "-q", "-am", "v2")
    pulled = pull(backend.uri("aliases", "frozen"), str(tmp_path / "frozen"), storage_options=so)
    assert Path(pulled.files["w"]).read_bytes() == v1
    assert Path(pull(meta, str(tmp_path / "now"), storage_options=so).files["w"]).read_bytes() == v2
    again = pull(meta, str(tmp_path / "rev"), rev=frozen.rev, storage_options=so)
    assert Path(again.files["w"]).read_bytes() == v1
    with open_artifact(backend.uri("aliases", "frozen"), storage_options=so) as f:
        assert f.read() == v1


def test_remote_git_repository(git_world: Any, tmp_path: Path) -> None:
    from gitserver import commit, init_bare

    weights = os.urandom(300_000)
    big = os.urandom(5 << 20)  # over what a fetch of a commit takes
    bare = init_bare(git_world.root, "org/with-artifacts.git")
    files: dict[str, str | bytes | None] = {
        ".mlem/config.yaml": "{}\n",
        "models/rf": weights,
        "models/rf.mlem": yaml.safe_dump(
            {"object_type": "model", "artifacts": {"data.pkl": entry("rf", weights)}}
        ),
        "models/big": big,
        "models/big.mlem": yaml.safe_dump(
            {"object_type": "model", "artifacts": {"data.pkl": entry("big", big)}}
        ),
        "models/link": b"rf",
        "models/link.mlem": yaml.safe_dump(
            {"object_type": "model", "artifacts": {"x": entry("link", b"rf")}}
        ),
    }
    first = commit(bare, files, "models")
    url = git_world.url("org/with-artifacts.git")
    pulled = pull("models/rf", str(tmp_path / "rf"), repo=url, rev="main")
    assert Path(pulled.files["data.pkl"]).read_bytes() == weights
    commit(bare, {"models/rf": os.urandom(10)}, "artifact changed")
    at_first = pull("models/rf", str(tmp_path / "at-first"), repo=url, rev=first)
    assert Path(at_first.files["data.pkl"]).read_bytes() == weights
    with pytest.raises(ArtifactIntegrityError):  # the metafile was not saved again
        pull("models/rf", str(tmp_path / "main"), repo=url, rev="main")
    with pytest.raises(MlemError, match="left out"):
        pull("models/big", str(tmp_path / "big"), repo=url, rev=first)
    assert not (tmp_path / "main").exists() and not (tmp_path / "big").exists()


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_local_git_symlinks_are_not_files(backend: Backend, tmp_path: Path) -> None:
    root = Path(backend.root)
    root.mkdir()
    git(str(root), "init", "-q", "-b", "main")
    (root / "secret").write_bytes(b"s")
    (root / "w").symlink_to(root / "secret")
    MlemModel(artifacts={"w": entry("w", b"s")}).dump(str(root / "m"))
    git(str(root), "add", "-A")
    git(str(root), "commit", "-q", "-m", "one")
    with pytest.raises(NotAFileError, match="symlink"):
        pull(str(root / "m"), str(tmp_path / "d"), rev="main")


# -- the command line ----------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["local", "s3-moto"], indirect=True)
def test_cli_get(backend: Backend, tmp_path: Path) -> None:
    repo = upload_fixture(backend)
    dest = tmp_path / "model"
    done = subprocess.run(
        [SCRIPT, "get", "latest", str(dest), "-r", repo, *flags(backend)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (dest / "clf").read_bytes() == (FIXTURE / "repo" / "models" / "clf").read_bytes()
    assert "1 artifact" in done.stdout and str(dest) in done.stdout
    assert done.stderr == ""  # no progress bar off a terminal
    again = subprocess.run(
        [SCRIPT, "get", "latest", str(dest), "-r", repo, *flags(backend)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert again.stderr.startswith("error: ") and "exists" in again.stderr
    forced = subprocess.run(
        [SCRIPT, "get", "prod", str(dest), "-r", repo, "--force", "--json", *flags(backend)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    shown = yaml.safe_load(forced.stdout)
    assert shown["files"] == {"data": str(dest / "forest")} and sorted(os.listdir(dest)) == [
        "forest", "forest.mlem"]  # fmt: skip
    backend.write(f"{repo}/models/clf", b"\x00" * 740)
    bad = subprocess.run(
        [SCRIPT, "get", "latest", str(tmp_path / "bad"), "-r", repo, *flags(backend)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "hash" in bad.stderr
    assert not (tmp_path / "bad").exists()
    assert shutil.which(SCRIPT)


# -- faults: a proxy in front of each cloud ------------------------------------------------
def _once(name: str) -> Callable[[str, str], bool]:
    """A fault rule's match: the first GET of `name` only (a resumed read may differ in
    its query, e.g. GCS's ifGenerationMatch, and would count as another request)."""
    seen = {"n": 0}

    def match(method: str, path: str) -> bool:
        if method != "GET" or name not in path or seen["n"]:
            return False
        seen["n"] += 1
        return True

    return match


def _artifact_gets(proxy: Any, name: str) -> int:
    return sum(n for key, n in proxy.requests.items() if key.startswith("GET") and name in key)


def test_a_cut_body_resumes_where_it_stopped(proxied: tuple[Backend, Any], tmp_path: Path) -> None:
    """One GET per artifact; a connection cut mid-body (then, a server that ignores the
    Range of the resumed read) costs one more, and the file comes through whole."""
    backend, proxy = proxied
    so = backend.storage_options
    data = os.urandom(3 << 20)
    meta = model_with(backend, backend.uri("m"), {"w.bin": data, "x.bin": b"small"})
    pulled = pull(meta, str(tmp_path / "plain"), storage_options=so)
    assert _artifact_gets(proxy, "w.bin") == 1 and _artifact_gets(proxy, "x.bin") == 1
    assert Path(pulled.files["w.bin"]).read_bytes() == data
    for faults, gets in ((["cut"], 2), (["cut", "whole-again"], 2), (["503", "cut"], 3)):
        proxy.requests.clear()
        proxy.clear()
        for fault in faults:
            proxy.fail(fault, 1, _once("w.bin"))
        pulled = pull(meta, str(tmp_path / "-".join(faults)), storage_options=so)
        assert Path(pulled.files["w.bin"]).read_bytes() == data, faults
        assert _artifact_gets(proxy, "w.bin") == gets, faults


@pytest.mark.parametrize("fault", ["huge-body", "huge-body-chunked", "huge-body-lying"])
def test_a_server_that_lies_about_sizes_is_cut_off(
    proxied: tuple[Backend, Any], tmp_path: Path, fault: str
) -> None:
    backend, proxy = proxied
    data = os.urandom(100_000)
    meta = model_with(backend, backend.uri("m"), {"w.bin": data})
    proxy.fail(fault, 10, lambda method, path: method == "GET" and "w.bin" in path)
    with pytest.raises(ArtifactIntegrityError):
        pull(meta, str(tmp_path / "d"), storage_options=backend.storage_options)
    assert leftovers(tmp_path) == []
    transfers = proxy.transfers_of(lambda path: "w.bin" in path)
    assert transfers and proxy.wait_ended(transfers)
    assert all(t.sent <= len(data) + (8 << 20) for t in transfers), [t.sent for t in transfers]


def test_a_trickling_artifact_is_cut_off_at_its_budget(
    proxied: tuple[Backend, Any], tmp_path: Path
) -> None:
    from mlemremote.api import configured
    from mlemremote.core.errors import TimeBudgetError

    backend, proxy = proxied
    meta = model_with(backend, backend.uri("m"), {"w.bin": os.urandom(64)})
    proxy.trickle_interval = 0.3
    proxy.fail("trickle", 10, lambda method, path: method == "GET" and "w.bin" in path)
    budget = configured(retry_max_seconds=1.5, min_transfer_rate=1 << 20)
    with budget, pytest.raises(TimeBudgetError):
        pull(meta, str(tmp_path / "d"), storage_options=backend.storage_options)
    assert leftovers(tmp_path) == []


# -- what a hostile review asked ---------------------------------------------------------
@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_overwrite_never_replaces_home_or_the_working_folder(
    backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    meta = model_with(backend, backend.uri("m"), {"w": b"w"})
    work = tmp_path / "work" / "deeper"
    work.mkdir(parents=True)
    (work / "mine").write_bytes(b"mine")
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    for dest in (".", "..", str(tmp_path / "work"), "~", str(tmp_path / "home")):
        with pytest.raises(DestinationExistsError):
            pull(meta, dest, overwrite=True)
    assert (work / "mine").read_bytes() == b"mine"


def test_declared_sizes_are_checked_against_free_space(backend: Backend, tmp_path: Path) -> None:
    from mlemremote.core.errors import InsufficientSpaceError

    meta = model_with(
        backend, backend.uri("m"), {}, {"w": {"uri": "w", "size": 1 << 60, "hash": "0" * 32}}
    )
    with pytest.raises(InsufficientSpaceError):
        pull(meta, str(tmp_path / "d"), storage_options=backend.storage_options)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_devices_are_never_opened(backend: Backend, tmp_path: Path) -> None:
    repo = backend.uri("repo")
    init(repo)
    (Path(repo) / "zero").symlink_to("/dev/zero")
    MlemModel(artifacts={"z": entry("zero", b"\0" * 10)}).dump(f"{repo}/m", external=True)
    with pytest.raises((NotAFileError, InvalidArtifactError)):
        pull(f"{repo}/m", str(tmp_path / "d"))
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("backend", ["s3-moto", "s3-seaweedfs"], indirect=True)
def test_a_multipart_etag_is_not_taken_for_an_md5(backend: Backend, tmp_path: Path) -> None:
    """An object uploaded in parts has an ETag that is no MD5 (`<md5 of md5s>-<parts>`):
    its bytes are hashed all the same, and a pinned metafile that names it by MD5 does not
    find a "matching" version through the ETag."""
    data = os.urandom(11 << 20)
    path = backend.fspath(backend.uri("w.bin"))
    with backend.fs.open(path, "wb", block_size=5 << 20) as f:  # three parts
        for start in range(0, len(data), 1 << 20):
            f.write(data[start : start + (1 << 20)])
    assert "-" in backend.fs.info(path)["ETag"]
    meta = model_with(backend, backend.uri("m"), {}, {"w": entry("w.bin", data)})
    pulled = pull(meta, str(tmp_path / "d"), storage_options=backend.storage_options)
    assert Path(pulled.files["w"]).read_bytes() == data


def test_one_failure_stops_the_other_downloads(
    proxied: tuple[Backend, Any], tmp_path: Path
) -> None:
    backend, proxy = proxied
    files = {"slow.bin": os.urandom(200), "gone.bin": b"gone"}
    meta = model_with(backend, backend.uri("m"), files)
    backend.fs.rm(backend.fspath(backend.uri("gone.bin")))
    proxy.trickle_interval = 0.5  # 200 bytes: 100 s
    proxy.fail("trickle", 10, lambda method, path: method == "GET" and "slow.bin" in path)
    started = time.monotonic()
    with pytest.raises(ArtifactNotFoundError):
        pull(meta, str(tmp_path / "d"), storage_options=backend.storage_options)
    assert time.monotonic() - started < 15
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_cli_get_shows_progress_on_a_terminal(backend: Backend, tmp_path: Path) -> None:
    import pty

    meta = model_with(backend, backend.uri("m"), {"w.bin": os.urandom(3 << 20)})
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [SCRIPT, "get", meta, str(tmp_path / "d")],
            stdout=subprocess.PIPE, stderr=follower, text=True, timeout=120,
        )  # fmt: skip
        os.close(follower)
        follower = -1
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # (the terminal is gone once it is read out)
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert done.returncode == 0
    assert b"pulling [" in shown and b"1/1 files" in shown and b"100%" in shown


def test_a_stopped_pull_makes_no_file_for_a_transfer_not_yet_begun(tmp_path: Path) -> None:
    """A transfer the pool starts after the pull was stopped (another file failed, or
    Ctrl-C) makes nothing in the temporary folder: it may be being removed."""
    import threading

    from mlemremote.api import load_meta

    (tmp_path / "w.bin").write_bytes(b"w")
    meta = str(tmp_path / "m")
    MlemModel(
        artifacts={"w": {"uri": "w.bin", "size": 1, "hash": hashlib.md5(b"w").hexdigest()}}
    ).dump(meta)
    (art,) = _artifacts.artifacts_of(load_meta(meta), external=False)
    stop = threading.Event()
    stop.set()
    folder = tmp_path / "tmp"
    folder.mkdir()
    with pytest.raises(_artifacts._Stopped):
        _artifacts._download_one(
            _artifacts.Transfer(art, stop), str(folder), _artifacts._Progress(1, 1, enabled=False)
        )
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_cli_get_prints_one_line_whatever_dest_is_named(backend: Backend, tmp_path: Path) -> None:
    meta = model_with(backend, backend.uri("m"), {"w.bin": b"w"})
    dest = tmp_path / "a\nb\x1b[2Jc"
    done = subprocess.run(
        [SCRIPT, "get", meta, str(dest)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and "\x1b" not in done.stdout, done.stdout
    assert (dest / "w.bin").read_bytes() == b"w"
