"""Cross-tool tests: the real MLEM 0.2.0 (mlem==0.1.14, in its own Python 3.9
environment, driven through tests/mlem_peer.py) and mlemremote read and write each other's
links, on local disk and on S3 (moto).

- MLEM saves real sklearn models (each with its own `seed`, so predictions tell them
  apart) and writes links; mlemremote must resolve each to the file MLEM resolves.
- mlemremote writes the same links; MLEM must find the same file and predict the same
  as when it loads the model directly.
- Each tool moves an alias the other wrote; `history()` and `rollback()` see MLEM's move.
- MLEM runs in a working directory holding decoys (`x.mlem`, `plain/m.mlem`, saved with
  other seeds): a link resolved against the working directory shows in predictions.
- The write-location matrix: every `link()` / `dump()` call form, run by both tools,
  compared file by file; README.md's parity table is generated from it
  (`MLEMREMOTE_UPDATE_PARITY_TABLE=1` rewrites it).

Without a Python 3.9 (or before `python tests/mlem_peer.py` built the environment) every
test here is skipped with `mlem_peer.missing_reason()`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import fsspec
import pytest
import yaml
from conftest import GitWorld, make_backend
from fsspec.spec import AbstractFileSystem
from mlem_peer import Peer, PeerError, missing_reason, peer_env
from services import S3_KEY, S3_SECRET, Endpoints, s3_server_names

from mlemremote.api import check, configured, history, link, load_meta, rollback
from mlemremote.core.errors import MlemError, MlemObjectNotFound
from mlemremote.core.objects import MlemObject

SKIP_REASON = missing_reason()
pytestmark = [
    pytest.mark.skipif(SKIP_REASON is not None, reason=f"MLEM peer: {SKIP_REASON}"),
    # In a parallel run the module runs on one worker: its MLEM worlds (module fixtures,
    # made by the real MLEM) are made once.
    pytest.mark.xdist_group("mlem-interop"),
]

README = Path(__file__).resolve().parent.parent / "README.md"
TABLE_START, TABLE_END = "<!-- parity-table:start -->", "<!-- parity-table:end -->"
UPDATE_TABLE = os.environ.get("MLEMREMOTE_UPDATE_PARITY_TABLE") == "1"
# Our comment lines: who made the move, why (issue 13), and the write id.
OUR_COMMENT = re.compile(rb"^# mlemremote (?:write|author:|message:) [^\n]*\n?", re.M)

# peer_ops.SAMPLE and the model save_model fits: y = x0 * (1 + seed) - 2 * x1 + seed.
SAMPLE = [(0.0, 1.0), (1.0, 0.0), (2.0, 2.0), (3.0, 1.0)]
# The models of a world, by role: (where MLEM saved the metafile, seed).
MODELS = {
    "rf": ("{repo}/.mlem/model/models/rf.mlem", 1),
    "rf2": ("{repo}/.mlem/model/models/rf2.mlem", 2),
    "m": ("{other}/.mlem/model/models/m.mlem", 3),
    "plain": ("{plain}/m.mlem", 4),
}
DECOY_SEEDS = {"x": 8, "plain/m": 9}  # in MLEM's working directory
# The S3 server the S3 world uses: moto, unless the servers are named otherwise.
S3_SERVER = "moto" if "moto" in s3_server_names() else s3_server_names()[0]


def predictions(seed: int) -> list[float]:
    return [round(x0 * (1 + seed) - 2 * x1 + seed, 6) for x0, x1 in SAMPLE]


@contextmanager
def chdir(folder: str) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


# -- the worlds: one tree of repos and models per backend, one MLEM process each ------------
@dataclass
class World:
    """`<root>/repo` and `<root>/other` (MLEM repos) and `<root>/plain` (no repo), with
    MODELS saved by MLEM; `decoys` is MLEM's (local) working directory."""

    backend: str  # "local" or "s3"
    root: str  # an absolute local path, or s3://bucket
    peer: Peer
    decoys: str
    storage_options: dict[str, Any] | None
    fs: AbstractFileSystem
    _direct: dict[str, list[float]] = field(default_factory=dict)
    template: dict[str, bytes] = field(default_factory=dict)  # the files MLEM made first

    @property
    def local(self) -> bool:
        return self.backend == "local"

    @property
    def repo(self) -> str:
        return f"{self.root}/repo"

    @property
    def other(self) -> str:
        return f"{self.root}/other"

    @property
    def plain(self) -> str:
        return f"{self.root}/plain"

    def fill(self, value: Any) -> Any:
        """`{repo}`, `{other}`, `{plain}`, `{root}` in strings (also inside dicts and lists)."""
        if isinstance(value, str):
            return value.format(repo=self.repo, other=self.other, plain=self.plain, root=self.root)
        if isinstance(value, dict):
            return {k: self.fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        return value

    def model(self, role: str) -> str:
        return str(self.fill(MODELS[role][0]))

    def show(self, path: str) -> str:
        """A path with the world's folders as placeholders: `<repo>/.mlem/link/al.mlem`."""
        for folder, name in ((self.repo, "<repo>"), (self.other, "<other>")):
            path = path.replace(folder + "/", name + "/")
        return path.replace(self.plain + "/", "<plain>/").replace(self.root, "<root>")

    # -- MLEM ---------------------------------------------------------------------------
    def mlem(self, op: str, cwd: str | None = None, **args: Any) -> Any:
        """One MLEM operation, run in `cwd` (default: the decoys' folder)."""
        return self.peer(op, cwd=cwd or self.decoys, **args)

    def mlem_resolves(self, path: str, repo: str | None = None, cwd: str | None = None) -> str:
        answer = self.mlem("load", cwd=cwd, path=path, repo=repo)
        return self.canon_mlem(answer["location"], cwd or self.decoys)

    def mlem_predicts(self, path: str, repo: str | None = None, cwd: str | None = None) -> Any:
        return self.mlem("predict", cwd=cwd, path=path, repo=repo)

    def direct(self, role: str) -> list[float]:
        """MLEM's predictions loading the model `role` directly by its metafile (cached)."""
        if role not in self._direct:
            self._direct[role] = self.mlem_predicts(self.model(role))
        return self._direct[role]

    def canon_mlem(self, where: dict[str, Any], cwd: str) -> str:
        """MLEM's location as a canonical path: s3://bucket/key, or an absolute local path
        (MLEM answers paths relative to its working directory for some links)."""
        uri = str(where["uri"])
        if "://" in uri and not uri.startswith("file://"):
            return uri
        path = str(where["fullpath"]).removeprefix("file://")
        return os.path.normpath(os.path.join(cwd, path))

    # -- mlemremote ---------------------------------------------------------------------
    def so(self) -> dict[str, Any] | None:
        return self.storage_options

    def load(self, path: str, repo: str | None = None, **kw: Any) -> MlemObject:
        return load_meta(path, repo, storage_options=self.storage_options, **kw)

    def resolves(self, path: str, repo: str | None = None) -> str:
        return self.canon(self.load(path, repo))

    @staticmethod
    def canon(obj: MlemObject) -> str:
        loc = obj.location
        assert loc is not None
        if loc.scheme == "file":
            return os.path.normpath(loc.fullpath)
        return loc.uri

    # -- files --------------------------------------------------------------------------
    def listing(self) -> set[str]:
        if self.local:
            return {os.path.join(d, n) for d, _, names in os.walk(self.root) for n in names}
        self.fs.invalidate_cache()
        return {f"s3://{p}" for p in self.fs.find(self.root)}

    def read(self, path: str) -> bytes:
        if self.local:
            return Path(path).read_bytes()
        self.fs.invalidate_cache()
        return bytes(self.fs.cat_file(path))

    def write(self, path: str, data: bytes) -> None:
        if self.local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            Path(path).write_bytes(data)
        else:
            self.fs.pipe_file(path, data)

    def exists(self, path: str) -> bool:
        if self.local:
            return os.path.exists(path)
        self.fs.invalidate_cache()
        return bool(self.fs.exists(path))

    def remove(self, paths: set[str]) -> None:
        if not paths:
            return
        if not self.local:
            self.fs.rm(sorted(paths))
            self.fs.invalidate_cache()
            return
        for path in paths:
            os.remove(path)
        for folder, subfolders, names in os.walk(self.root, topdown=False):
            if folder != self.root and not subfolders and not names:
                os.rmdir(folder)

    @contextmanager
    def new_files(self) -> Iterator[set[str]]:
        """The files that appear inside the block (filled in at its end)."""
        before = self.listing()
        found: set[str] = set()
        try:
            yield found
        finally:
            found.update(self.listing() - before)


def make_world(root: str, peer: Peer, decoys: str) -> World:
    """The local world: MLEM makes the repos and saves the models."""
    world = World("local", root, peer, decoys, None, fsspec.filesystem("file"))
    world.mlem("init", path=world.repo)
    world.mlem("init", path=world.other)
    world.mlem("save_model", path="models/rf", repo=world.repo, seed=1)
    world.mlem("save_model", path="models/rf2", repo=world.repo, seed=2)
    world.mlem("save_model", path="models/m", repo=world.other, seed=3)
    world.mlem("save_model", path=f"{world.plain}/m", seed=4)
    world.template = {os.path.relpath(p, root): world.read(p) for p in world.listing()}
    return world


@pytest.fixture(scope="module")
def local_peer() -> Iterator[Peer]:
    peer = Peer(peer_env())
    try:
        yield peer
    finally:
        peer.close()


@pytest.fixture(scope="module")
def decoys(local_peer: Peer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """MLEM's working directory: `x.mlem` and `plain/m.mlem`, models with other seeds."""
    folder = str(tmp_path_factory.mktemp("mlem-cwd"))
    for name, seed in DECOY_SEEDS.items():
        local_peer("save_model", cwd=folder, path=f"{folder}/{name}", seed=seed)
    return folder


@pytest.fixture(scope="module")
def local_world(local_peer: Peer, decoys: str, tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(str(tmp_path_factory.mktemp("interop")), local_peer, decoys)


@pytest.fixture(scope="module")
def s3_world(
    endpoints: Endpoints,
    local_world: World,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    """A fresh bucket holding a copy of the local world's repos and models as MLEM saved
    them (MLEM's own saves on S3 take seconds each on moto; the matrix has it save there)."""
    bucket = make_backend(f"s3-{S3_SERVER}", endpoints, tmp_path_factory.mktemp("s3"))
    world = World(
        "s3", bucket.root, local_world.peer, local_world.decoys, bucket.storage_options, bucket.fs
    )
    bucket.fs.pipe({f"{world.root}/{rel}": data for rel, data in local_world.template.items()})
    world.peer = Peer(peer_env(endpoints.s3[S3_SERVER], S3_KEY, S3_SECRET))
    try:
        yield world
    finally:
        world.peer.close()


# (conftest's summary counts tests per backend by this marker)
LABELS = {"local": "local", "s3": f"s3-{S3_SERVER}"}
WORLDS = [pytest.param(name, marks=pytest.mark.backends(LABELS[name]), id=name) for name in LABELS]


@pytest.fixture(params=WORLDS)
def world(request: pytest.FixtureRequest) -> World:
    value: World = request.getfixturevalue(f"{request.param}_world")
    return value


def test_models_predict_by_seed(world: World, decoys: str) -> None:
    """The models MLEM saved predict by their seed, and the decoys predict otherwise."""
    for role, (_, seed) in MODELS.items():
        assert world.exists(world.model(role)), role
        assert world.direct(role) == predictions(seed), role
    for name, seed in DECOY_SEEDS.items():
        assert world.mlem_predicts(f"{decoys}/{name}") == predictions(seed)


# -- MLEM writes, mlemremote reads ----------------------------------------------------------
# Each case: the links MLEM writes (in order), what is then loaded, and the model it must
# reach. "cwd": "plain" runs MLEM in <plain> on local disk (MLEM writes links between files
# outside repos relative to its working directory, so `m.mlem` there).
MLEM_WRITES: dict[str, dict[str, Any]] = {
    "name-in-repo": {
        "links": [
            dict(source="models/rf", source_repo="{repo}", target="a-name", target_repo="{repo}")
        ],
        "load": dict(path="a-name", repo="{repo}"),
        "model": "rf",
    },
    "path-in-repo": {
        "links": [dict(source="{repo}/models/rf", target="{repo}/a-path")],
        "load": dict(path="{repo}/a-path"),
        "model": "rf",
    },
    "external": {
        "links": [
            dict(
                source="models/rf",
                source_repo="{repo}",
                target="a-ext",
                target_repo="{repo}",
                external=True,
            )
        ],
        "load": dict(path="{repo}/a-ext"),
        "model": "rf",
    },
    "absolute": {
        "links": [
            dict(
                source="models/rf",
                source_repo="{repo}",
                target="a-abs",
                target_repo="{repo}",
                absolute=True,
            )
        ],
        "load": dict(path="a-abs", repo="{repo}"),
        "model": "rf",
    },
    "cross-repo": {
        "links": [
            dict(source="models/m", source_repo="{other}", target="a-cross", target_repo="{repo}")
        ],
        "load": dict(path="a-cross", repo="{repo}"),
        "model": "m",
    },
    "repo-to-plain": {
        "links": [dict(source="{repo}/models/rf", target="{plain}/a-fromrepo")],
        "load": dict(path="{plain}/a-fromrepo"),
        "model": "rf",
    },
    "outside-repos": {
        "links": [dict(source="{plain}/m", target="{plain}/a-plain")],
        "load": dict(path="{plain}/a-plain"),
        "model": "plain",
        "cwd": "plain",
    },
    "chain": {
        "links": [
            dict(source="models/rf", source_repo="{repo}", target="a-hop1", target_repo="{repo}"),
            dict(
                source="a-hop1",
                source_repo="{repo}",
                target="a-hop2",
                target_repo="{repo}",
                follow_links=False,
            ),
        ],
        "load": dict(path="a-hop2", repo="{repo}"),
        "model": "rf",
    },
}


def mlem_cwd(world: World, case: dict[str, Any]) -> str:
    return world.plain if case.get("cwd") == "plain" and world.local else world.decoys


@pytest.mark.parametrize("case", list(MLEM_WRITES))
def test_mlem_writes_mlemremote_resolves(world: World, case: str) -> None:
    spec = world.fill(MLEM_WRITES[case])
    cwd = mlem_cwd(world, spec)
    for args in spec["links"]:
        world.mlem("link", cwd=cwd, **args)
    expected = world.model(spec["model"])
    assert world.mlem_resolves(cwd=cwd, **spec["load"]) == expected
    with chdir(world.decoys):  # mlemremote never resolves against its working directory
        assert world.resolves(**spec["load"]) == expected


# -- mlemremote writes, MLEM reads ----------------------------------------------------------
def renamed(value: Any, prefix: str) -> Any:
    """MLEM_WRITES's cases with the link names `a-...` renamed `<prefix>-...`."""
    if isinstance(value, str):
        return re.sub(r"(^|/)a-", rf"\g<1>{prefix}-", value)
    if isinstance(value, dict):
        return {k: renamed(v, prefix) for k, v in value.items() if k != "cwd"}
    if isinstance(value, list):
        return [renamed(v, prefix) for v in value]
    return value


OURS_WRITES: dict[str, dict[str, Any]] = {
    **renamed(MLEM_WRITES, "b"),
    # `<plain>/x` next to the decoy `x.mlem` in MLEM's working directory: a link to it
    # resolved against the working directory predicts with the decoy's seed.
    "chain-outside-repos": {
        "links": [
            dict(source="{plain}/m", target="{plain}/x"),
            dict(source="{plain}/x", target="{plain}/b-chain", follow_links=False),
        ],
        "load": dict(path="{plain}/b-chain"),
        "model": "plain",
    },
}


S3_PREDICTS = {"cross-repo", "chain-outside-repos"}


@pytest.mark.parametrize("case", list(OURS_WRITES))
def test_mlemremote_writes_mlem_resolves(world: World, case: str) -> None:
    spec = world.fill(OURS_WRITES[case])
    for args in spec["links"]:
        link(**args, storage_options=world.so())
    expected = world.model(spec["model"])
    assert world.resolves(**spec["load"]) == expected
    assert world.mlem_resolves(**spec["load"]) == expected
    if world.local or case in S3_PREDICTS:  # (each costs ~0.5 s on moto)
        assert world.mlem_predicts(**spec["load"]) == world.direct(spec["model"])


@pytest.mark.backends("local")
def test_mlem_reads_links_with_author_and_message(local_world: World) -> None:
    """Issue 13: who moved an alias and why are comment lines in the link; MLEM reads the
    link as before, whatever the message says (YAML-looking text cannot become keys).
    (Every other link written in this file carries an author line too, on S3 as well.)"""
    world = local_world
    evil = 'ok"\npath: /etc/passwd\n# x\nobject_type: model\n---\n- [1'
    with configured(author="alice@ci"):
        link(
            "models/rf",
            source_repo=world.repo,
            target="c-audited",
            target_repo=world.repo,
            message=evil,
            storage_options=world.so(),
        )
    alias = f"{world.repo}/.mlem/link/c-audited.mlem"
    assert b"# mlemremote message: " in world.read(alias)
    assert world.mlem_resolves(alias) == world.resolves(alias) == world.model("rf")
    assert history(alias, storage_options=world.so())[0].message == evil


def test_outside_repos_links_are_absolute_uris(world: World) -> None:
    """Outside repos the link names its target with scheme and absolute path, which MLEM
    resolves to the same file from any working directory; `folder_relative=True` writes
    `./m.mlem` instead (read by mlemremote relative to the link's folder)."""
    link(f"{world.plain}/m", target=f"{world.plain}/b-uri", storage_options=world.so())
    written = yaml.safe_load(world.read(f"{world.plain}/b-uri.mlem"))
    target = world.model("plain")
    assert written["path"] == (f"file://{target}" if world.local else target)
    assert "repo" not in written
    for cwd in (world.decoys, os.path.dirname(world.decoys)):
        assert world.mlem_resolves(f"{world.plain}/b-uri", cwd=cwd) == target

    folder_relative: dict[str, Any] = {"folder_relative": True}
    so = world.so()
    link(
        f"{world.plain}/m", target=f"{world.plain}/b-folder", storage_options=so, **folder_relative
    )
    assert yaml.safe_load(world.read(f"{world.plain}/b-folder.mlem"))["path"] == "./m.mlem"
    with chdir(world.decoys):
        assert world.resolves(f"{world.plain}/b-folder") == target


@pytest.mark.backends("local")
def test_mlem_cwd_relative_link_names_places_tried(local_world: World) -> None:
    """MLEM run in <root> writes `path: plain/m.mlem` into <plain>: relative to its own
    working directory. mlemremote reads it relative to the link's folder, finds nothing
    there (not the decoy in its own working directory either), and says so."""
    world = local_world
    world.mlem("link", cwd=world.root, source="plain/m", target="plain/a-cwdrel")
    written = yaml.safe_load(world.read(f"{world.plain}/a-cwdrel.mlem"))
    assert written["path"] == "plain/m.mlem"
    assert world.mlem_resolves(f"{world.plain}/a-cwdrel", cwd=world.root) == world.model("plain")
    with chdir(world.decoys), pytest.raises(MlemObjectNotFound) as raised:
        world.load(f"{world.plain}/a-cwdrel")
    message = str(raised.value)
    assert f"{world.plain}/plain/m.mlem" in message
    assert "working directory" in message


# -- moves ----------------------------------------------------------------------------------
def test_mlem_moves_an_alias_mlemremote_wrote(world: World) -> None:
    so, repo = world.so(), world.repo
    link("models/rf", source_repo=repo, target="mv-ours", target_repo=repo, storage_options=so)
    world.mlem("link", source="models/rf2", source_repo=repo, target="mv-ours", target_repo=repo)
    assert world.resolves("mv-ours", repo) == world.model("rf2")
    if world.local:  # (MLEM reading its own move: ~0.5 s on moto)
        assert world.mlem_resolves("mv-ours", repo) == world.model("rf2")

    entries = history("mv-ours", repo=repo, storage_options=so)
    assert entries[0].link.path.endswith("models/rf2.mlem")
    assert entries[0].recorded is False  # MLEM's move: no log entry
    assert entries[1].link.path.endswith("models/rf.mlem")  # what mlemremote had written

    rollback("mv-ours", repo=repo, storage_options=so)
    assert world.resolves("mv-ours", repo) == world.model("rf")
    assert world.mlem_resolves("mv-ours", repo) == world.model("rf")
    if world.local:
        assert world.mlem_predicts("mv-ours", repo) == world.direct("rf")


def test_mlemremote_moves_an_alias_mlem_wrote(world: World) -> None:
    so, repo = world.so(), world.repo
    world.mlem("link", source="models/rf", source_repo=repo, target="mv-mlem", target_repo=repo)
    link("models/rf2", source_repo=repo, target="mv-mlem", target_repo=repo, storage_options=so)
    assert world.resolves("mv-mlem", repo) == world.model("rf2")
    assert world.mlem_resolves("mv-mlem", repo) == world.model("rf2")
    if world.local:
        assert world.mlem_predicts("mv-mlem", repo) == world.direct("rf2")

    entries = history("mv-mlem", repo=repo, storage_options=so)
    assert entries[0].link.path.endswith("models/rf2.mlem")
    assert entries[1].link.path.endswith("models/rf.mlem")  # what MLEM had written

    rollback("mv-mlem", repo=repo, storage_options=so)
    assert world.resolves("mv-mlem", repo) == world.model("rf")
    assert world.mlem_resolves("mv-mlem", repo) == world.model("rf")


# -- lookup: `<path>.mlem` first, then `.mlem/<type>/<path>.mlem` -----------------------------
def test_a_path_object_hides_a_type_folder_object(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """`<repo>/hid.mlem` (a model) and `<repo>/.mlem/link/hid.mlem` (a link to rf): both
    tools take the first for `hid`; mlemremote warns, and `check` says `shadowed`."""
    repo, so = world.repo, world.so()
    world.write(f"{repo}/hid.mlem", world.read(world.model("rf2")))
    world.mlem("link", source="models/rf", source_repo=repo, target="hid", target_repo=repo)
    hidden = f"{repo}/.mlem/link/hid.mlem"
    assert world.exists(hidden)

    assert world.mlem_resolves("hid", repo) == f"{repo}/hid.mlem"
    assert world.mlem_resolves(f"{repo}/hid") == f"{repo}/hid.mlem"
    with caplog.at_level(logging.WARNING, logger="mlemremote"):
        assert world.resolves("hid", repo) == f"{repo}/hid.mlem"
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("mlemremote")]
    assert any(".mlem/link/hid.mlem" in w for w in warnings), warnings
    assert world.resolves(f"{repo}/hid") == f"{repo}/hid.mlem"

    statuses = {r.uri: r.status for r in check(repo, storage_options=so)}
    found = [
        status for uri, status in statuses.items() if uri.endswith("/repo/.mlem/link/hid.mlem")
    ]
    assert found == ["shadowed"], statuses


def test_two_type_folder_hits_are_an_error(world: World) -> None:
    """`.mlem/model/amb.mlem` and `.mlem/link/amb.mlem`: MLEM refuses `amb`, so do we."""
    repo = world.repo
    world.write(f"{repo}/.mlem/model/amb.mlem", world.read(world.model("rf2")))
    world.mlem("link", source="models/rf", source_repo=repo, target="amb", target_repo=repo)
    with pytest.raises(PeerError) as mlem_error:
        world.mlem("load", path="amb", repo=repo)
    # (MLEM's "Ambiguous object" ValueError becomes this, with a generic message)
    assert mlem_error.value.kind == "MlemObjectNotFound"
    for folder in ("model", "link"):  # both are there: not an ordinary miss
        world.mlem("load", path=f"{repo}/.mlem/{folder}/amb.mlem", follow_links=False)
    with pytest.raises(MlemError) as ours:
        world.load("amb", repo)
    assert "amb" in str(ours.value)


# -- MLEM's links into GitHub -------------------------------------------------------------
@pytest.mark.parametrize(
    "github", ["https://github.com/org/models/", "https://github.com/org/models"]
)
def test_mlem_github_links_load_through_a_mirror(
    world: World, github: str, git_world: GitWorld, no_user_config: Path
) -> None:
    """The bytes MLEM writes for a link into a GitHub repo load, github.com served by the
    test git server through a remote's `insteadof` (Git's url.<base>.insteadOf)."""
    text = world.mlem("link_yaml", path=".mlem/model/rf.mlem", repo=github, rev="main")
    assert f"repo: {github}\n" in text and "rev: main\n" in text
    mirror = {"url": git_world.server.url + "/", "insteadof": "https://github.com/"}
    no_user_config.write_text(yaml.safe_dump({"remotes": {"mirror": mirror}}))
    expected = git_world.shas["c2"]
    for where in (f"{world.root}/gh/gh.mlem", f"{world.repo}/.mlem/link/gh.mlem"):
        world.write(where, text.encode())
        loaded = world.load(where)
        assert str(loaded.location) == "https://github.com/org/models/.mlem/model/rf.mlem@main"
        pinned = link(where, target=None, pin=True, storage_options=world.storage_options)
        assert pinned.rev == expected


# -- `mlem ls` on a repo written by each tool ----------------------------------------------
@pytest.mark.backends("local")
def test_mlem_ls_lists_the_same_aliases(local_world: World) -> None:
    """The same aliases written into a copy of the repo by each tool: `mlem ls` lists the
    same files (links in `.mlem/link/`; an external model's index link as the model)."""
    world = local_world
    listed = {}
    for tool in ("mlem", "ours"):
        repo = f"{world.root}/ls-{tool}"  # the repo and MLEM's models, without links
        os.makedirs(f"{repo}/.mlem")
        shutil.copy(f"{world.repo}/.mlem/config.yaml", f"{repo}/.mlem/config.yaml")
        shutil.copytree(f"{world.repo}/.mlem/model/models", f"{repo}/.mlem/model/models")
        calls: list[dict[str, Any]] = [
            dict(source="models/rf", source_repo=repo, target="latest", target_repo=repo),
            dict(source="models/rf2", source_repo=repo, target="team/prod", target_repo=repo),
            dict(source=f"{repo}/models/rf", target=f"{repo}/nested/al"),
            dict(
                source="models/rf", source_repo=repo, target="ext", target_repo=repo, external=True
            ),
            dict(
                source="models/rf", source_repo=repo, target="abs", target_repo=repo, absolute=True
            ),
        ]
        dump: dict[str, Any] = dict(path="models/extm", repo=repo, external=True)  # + index link
        if tool == "mlem":
            for args in calls:
                world.mlem("link", **args)
            world.mlem("save_model", seed=1, **dump)
        else:
            for args in calls:
                link(**args)
            world.load(world.model("rf")).dump(**dump)
        found = world.mlem("ls", repo=repo)
        listed[tool] = {
            kind: [p.replace(repo, "<repo>") for p in paths] for kind, paths in found.items()
        }
    ours, theirs = (
        {f"{kind}: {path}" for kind, paths in listed[tool].items() for path in paths}
        for tool in ("ours", "mlem")
    )
    assert ours == theirs, f"listed for MLEM's repo only: {sorted(theirs - ours)}; " + (
        f"for ours only: {sorted(ours - theirs)}"
    )
    assert "<repo>/.mlem/link/team/prod.mlem" in listed["mlem"]["model"]  # (by link_type)
    assert "<repo>/models/extm.mlem" in listed["mlem"]["model"]  # (the index link, followed)


# -- the write-location matrix ----------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """One call form: `link(src, ...)` (src = <repo>/models/rf) or `dump(...)` (MLEM:
    `mlem.api.save(model, ...)`), with the target given by name in `target_repo`/`repo`
    ("repo"), as a path inside a repo ("in") or outside repos ("out"), or relative to the
    working directory in <repo> ("rel-in") or <plain> ("rel-out")."""

    kind: str
    form: str
    external: bool | None
    absolute: bool = False

    @property
    def id(self) -> str:
        ext = {None: "", True: "-external", False: "-internal"}[self.external]
        return f"{self.kind}-{self.form}{ext}{'-absolute' if self.absolute else ''}"

    def cwd(self, world: World) -> str | None:
        return {"rel-in": world.repo, "rel-out": world.plain}.get(self.form)

    def args(self, world: World) -> dict[str, Any]:
        name = "sub/al" if self.kind == "link" else "models/nm"
        args: dict[str, Any] = {
            "repo": {"target": name, "target_repo": world.repo},
            "in": {"target": f"{world.repo}/{name}"},
            "out": {"target": f"{world.plain}/{name}"},
            "rel-in": {"target": name},
            "rel-out": {"target": name},
        }[self.form]
        if self.kind == "dump":
            args = {"path": args["target"], "repo": args.get("target_repo")}
        if self.external is not None:
            args["external"] = self.external
        if self.absolute:
            args["absolute"] = True
        return args

    def text(self, external: str, absolute: str) -> str:
        """The call as the table shows it, with these texts for the two flags."""
        name = "sub/al" if self.kind == "link" else "models/nm"
        target, repo = {
            "repo": (f'"{name}"', "<repo>"),
            "in": (f'"<repo>/{name}"', None),
            "out": (f'"<plain>/{name}"', None),
            "rel-in": (f'"{name}"', None),
            "rel-out": (f'"{name}"', None),
        }[self.form]
        if self.kind == "link":
            parts = ["src", f"target={target}"] + ([f'target_repo="{repo}"'] if repo else [])
        else:
            parts = [target] + ([f'repo="{repo}"'] if repo else [])
        call = f"`{self.kind}({', '.join(parts)}{external}{absolute})`"
        cwd = {"rel-in": "<repo>", "rel-out": "<plain>"}.get(self.form)
        return f"{call} in `{cwd}`" if cwd else call


EXTERNALS: list[bool | None] = [None, True, False]
LOCAL_CALLS = [
    Call("link", form, external, absolute)
    for form in ("repo", "in", "out", "rel-in", "rel-out")
    for external in EXTERNALS
    for absolute in (False, True)
] + [
    Call("dump", form, external)
    for form in ("repo", "in", "out", "rel-in")
    for external in EXTERNALS
]
# S3: no working directory, and MLEM takes ~0.4 s per call on moto: a sample (MLEM's rule
# is the same on every backend; test_writes_where_mlem_writes checks it against local disk).
S3_CALLS = [
    Call("link", "repo", None),
    Call("link", "repo", True),
    Call("link", "in", None),
    Call("link", "out", None),
    Call("dump", "in", None),
    Call("dump", "repo", True),
]


@dataclass
class Side:
    """What one tool's call wrote: the `.mlem` files (canonical path -> bytes), or its error."""

    files: dict[str, bytes]
    error: str | None = None

    def shown(self, world: World) -> str:
        if self.error is not None:
            return f"error: {self.error.split(':')[0]}"
        index_links_last = sorted(self.files, key=lambda p: ("/.mlem/link/" in p, p))
        return " + ".join(f"`{world.show(p)}`" for p in index_links_last) or "nothing"


@dataclass
class Outcome:
    call: Call
    mlem: Side
    ours: Side
    reads: dict[str, str] = field(default_factory=dict)  # "X reads Y's file" -> the file
    expected: dict[str, str] = field(default_factory=dict)


def run_call(world: World, call: Call, *, mlem_reads_ours: bool) -> Outcome:
    """Both tools make the same call, one after the other; what each wrote is read by
    the other (and by itself on local disk) and removed again."""
    source = f"{world.repo}/models/rf"
    cwd = call.cwd(world)
    args = call.args(world)
    sides: dict[str, Side] = {}
    outcome = Outcome(call, Side({}), Side({}))
    for tool in ("mlem", "ours"):
        with world.new_files() as new:
            try:
                if tool == "mlem" and call.kind == "link":
                    world.mlem("link", cwd=cwd, source=source, **args)
                elif tool == "mlem":
                    world.mlem("save_model", cwd=cwd, seed=1, **args)
                else:
                    with chdir(cwd or world.decoys):
                        if call.kind == "link":
                            link(source, **args, storage_options=world.so())
                        else:
                            model = world.load(world.model("rf"))
                            model.dump(**args, storage_options=world.so())
                error = None
            except Exception as exc:  # both tools' failures are outcomes, compared
                error = f"{type(exc).__name__}: {exc}"
        try:
            written = {p: world.read(p) for p in new if p.endswith(".mlem")}
            sides[tool] = Side(written, error)
            read_back(world, call, tool, written, outcome, mlem_reads_ours=mlem_reads_ours)
        finally:
            world.remove(new)
    outcome.mlem, outcome.ours = sides["mlem"], sides["ours"]
    return outcome


def read_back(
    world: World,
    call: Call,
    writer: str,
    written: dict[str, bytes],
    outcome: Outcome,
    *,
    mlem_reads_ours: bool,
) -> None:
    if call.kind == "link":
        if len(written) != 1:
            return
        (path,) = written
        load: dict[str, Any] = {"path": path}
        expected = world.model("rf")
    else:
        models = [p for p in written if "/.mlem/link/" not in p]
        if len(models) != 1:
            return
        expected = models[0]
        if call.form == "repo":
            load = {"path": "models/nm", "repo": world.repo}
        elif call.form in ("in", "rel-in"):
            load = {"path": f"{world.repo}/models/nm"}
        else:
            load = {"path": f"{world.plain}/models/nm"}
    readers = []
    if writer == "mlem" or world.local:
        readers.append("mlemremote")
    if (writer == "ours" and mlem_reads_ours) or (writer == "mlem" and world.local):
        readers.append("MLEM")
    for reader in readers:
        key = f"{reader} reads {'MLEM' if writer == 'mlem' else 'mlemremote'}'s file"
        try:
            if reader == "MLEM":
                got = world.mlem_resolves(**load)
            else:
                with chdir(world.decoys):
                    got = world.resolves(**load)
        except Exception as exc:
            got = f"error: {type(exc).__name__}: {exc}"
        outcome.reads[key] = got
        outcome.expected[key] = expected


def run_matrix(world: World, calls: list[Call]) -> dict[str, Outcome]:
    # On S3 MLEM reads our dumps (by name) only: test_mlemremote_writes_mlem_resolves
    # has it read our links there; MLEM takes ~0.5 s per read on moto.
    reads = world.local
    return {c.id: run_call(world, c, mlem_reads_ours=reads or c.kind == "dump") for c in calls}


@pytest.fixture(scope="module")
def local_matrix(local_world: World) -> dict[str, Outcome]:
    return run_matrix(local_world, LOCAL_CALLS)


@pytest.fixture(scope="module")
def s3_matrix(s3_world: World) -> dict[str, Outcome]:
    return run_matrix(s3_world, S3_CALLS)


MATRIX_CASES = [("local", c) for c in LOCAL_CALLS] + [("s3", c) for c in S3_CALLS]


def matrix_params(cases: list[tuple[str, Call]]) -> list[Any]:
    return [
        pytest.param(
            where, call, id=f"{where}-{call.id}", marks=pytest.mark.backends(LABELS[where])
        )
        for where, call in cases
    ]


def matrix_outcome(request: pytest.FixtureRequest, where: str, call: Call) -> tuple[World, Outcome]:
    world: World = request.getfixturevalue(f"{where}_world")
    matrix: dict[str, Outcome] = request.getfixturevalue(f"{where}_matrix")
    return world, matrix[call.id]


@pytest.mark.parametrize(("where", "call"), matrix_params(MATRIX_CASES))
def test_writes_where_mlem_writes(request: pytest.FixtureRequest, where: str, call: Call) -> None:
    world, outcome = matrix_outcome(request, where, call)
    assert outcome.mlem.error is None, outcome.mlem.error
    assert outcome.ours.error is None, outcome.ours.error
    shown = {
        tool: sorted(map(world.show, side.files))
        for tool, side in (("MLEM", outcome.mlem), ("mlemremote", outcome.ours))
    }
    assert shown["mlemremote"] == shown["MLEM"]
    if where == "s3":  # MLEM's rule does not depend on the backend
        local: dict[str, Outcome] = request.getfixturevalue("local_matrix")
        local_world: World = request.getfixturevalue("local_world")
        assert shown["MLEM"] == sorted(map(local_world.show, local[call.id].mlem.files))


@pytest.mark.parametrize(("where", "call"), matrix_params(MATRIX_CASES))
def test_written_files_resolve_alike(
    request: pytest.FixtureRequest, where: str, call: Call
) -> None:
    """What each tool wrote is read by the other (and by itself) to the same file."""
    world, outcome = matrix_outcome(request, where, call)
    assert outcome.reads, "nothing to read: see test_writes_where_mlem_writes"
    shown = {k: world.show(v) for k, v in outcome.reads.items()}
    assert shown == {k: world.show(v) for k, v in outcome.expected.items()}


REPO_FIELD_CASES = [
    (b, c)
    for b, c in MATRIX_CASES
    if c.kind == "link" and (c.absolute or c.form in ("out", "rel-out"))
]


@pytest.mark.parametrize(("where", "call"), matrix_params(REPO_FIELD_CASES))
def test_links_with_repo_are_byte_identical(
    request: pytest.FixtureRequest, where: str, call: Call
) -> None:
    """A link that names its repo (`repo: <uri>/`, as MLEM writes it, with the `/`) has
    MLEM's bytes exactly, apart from our `# mlemremote ...` comment lines (author, write id)."""
    _, outcome = matrix_outcome(request, where, call)
    (mlem_bytes,) = outcome.mlem.files.values()
    (our_bytes,) = outcome.ours.files.values()
    assert re.search(rb"^repo: .*/\n", mlem_bytes, re.M)
    assert OUR_COMMENT.sub(b"", our_bytes).decode() == mlem_bytes.decode()


# -- the table in README.md -------------------------------------------------------------------
def parity_table(world: World, matrix: dict[str, Outcome]) -> str:
    """One row per call form; `[, absolute=True]` and `[, external=False]` where that
    argument changes nothing (for both tools)."""

    def cells(call: Call) -> tuple[str, str]:
        row = matrix[call.id]
        return row.mlem.shown(world), row.ours.shown(world)

    rows: list[tuple[Call, str, tuple[str, str]]] = []  # (call, absolute text, cells)
    for call in LOCAL_CALLS:
        if call.absolute:
            continue
        twin = replace(call, absolute=True)
        if twin.id not in matrix:
            rows.append((call, "", cells(call)))
        elif cells(twin) == cells(call):
            rows.append((call, "[, absolute=True]", cells(call)))
        else:
            rows += [(call, "", cells(call)), (twin, ", absolute=True", cells(twin))]
    seen = {(c.kind, c.form, c.external, absolute): found for c, absolute, found in rows}
    lines = [
        '| call (`src` = `"<repo>/models/rf"`) | MLEM 0.2.0 writes | mlemremote writes |',
        "| --- | --- | --- |",
    ]
    for call, absolute, found in rows:
        internal = seen.get((call.kind, call.form, False, absolute))
        if call.external is False and seen.get((call.kind, call.form, None, absolute)) == found:
            continue  # shown as `[, external=False]` with the default
        external = {None: "", True: ", external=True", False: ", external=False"}[call.external]
        if call.external is None and internal == found:
            external = "[, external=False]"
        lines.append(f"| {call.text(external, absolute)} | {found[0]} | {found[1]} |")
    return "\n".join(lines)


def readme_table() -> tuple[str, str, str]:
    text = README.read_text()
    start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    return text[:start], text[start:end], text[end:]


@pytest.mark.backends("local")
def test_readme_parity_table(local_world: World, local_matrix: dict[str, Outcome]) -> None:
    """README.md's table between the parity-table markers is this run's; with
    MLEMREMOTE_UPDATE_PARITY_TABLE=1 the test writes it there instead."""
    table = parity_table(local_world, local_matrix)
    before, current, after = readme_table()
    if UPDATE_TABLE:
        README.write_text(f"{before}\n{table}\n{after}")
        return
    if current.strip() != table:
        old, new = current.strip().splitlines(), table.splitlines()
        pytest.fail(
            "README.md's parity table differs from this run (MLEMREMOTE_UPDATE_PARITY_TABLE=1"
            " rewrites it):\nREADME only:\n"
            + "\n".join(line for line in old if line not in new)
            + "\nthis run only:\n"
            + "\n".join(line for line in new if line not in old)
        )
