"""Side-by-side benchmark: mlemremote against MLEM 0.2.0 on the same S3 servers.

`make bench` runs it. It creates the peer's virtual environment if missing (Python 3.9,
`mlem[s3]==0.1.14`, the same code as 0.2.0, with benchmarks/peer-constraints.txt: the
one tests/mlem_peer.py builds for the interop tests), starts
moto and SeaweedFS on 127.0.0.1, seeds one versioned bucket per server with the same
objects for both tools, and measures, alternating the two tools in one process tree:

- requests per operation, counted by a proxy in front of the server (the same counter for
  both tools, whatever their client library);
- median latency per operation, on a direct connection, and the ratio mlemremote/MLEM;
- resolving 1,000 links: MLEM one by one, mlemremote with `load_many`;
- start-up of `mlemremote --help` and `mlem --help`;
- reads from a remote git server, cold and warm (mlemremote only; beside `git` by hand);
- `pull` of a model's artifacts (10 files, 96 MiB) through an alias, against s3fs's own
  `get` of the same files: throughput ratio and requests (`python benchmarks/run.py pull`
  reruns only this table).
- `watch`: requests and body bytes of one idle poll per metafile of a 3-hop chain, on
  every backend (`python benchmarks/run.py watch` reruns only that table).

Results: benchmarks/results/results.json, results.md and chart.png.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from faultproxy import FaultProxy  # noqa: E402
from mlem_peer import ensure_peer, peer_env  # noqa: E402
from services import S3_KEY, S3_SECRET, running_services  # noqa: E402

from mlemremote.api import link, load_many, load_meta, pull  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
REPEATS = int(os.environ.get("BENCH_REPEATS", "15"))
BULK = int(os.environ.get("BENCH_LINKS", "1000"))
BULK_RUNS = int(os.environ.get("BENCH_BULK_RUNS", "7"))
MODEL = (ROOT / "tests" / "data" / "mlem-0.2.0" / "repo" / "models" / "rf.mlem").read_bytes()


def link_yaml(path: str) -> bytes:
    return f"link_type: model\nobject_type: link\npath: {path}\n".encode()


# -- the peer ---------------------------------------------------------------------------
class Peer:
    """A long-lived MLEM process (benchmarks/peer_worker.py, which answers with the time
    each operation took): no start-up cost inside the measurements. Its environment is
    tests/mlem_peer.py's: S3 options through fsspec's config folder, no analytics."""

    def __init__(self, python: Path, endpoint: str) -> None:
        self.env = peer_env(endpoint, S3_KEY, S3_SECRET)
        self.proc = subprocess.Popen(
            [str(python), str(ROOT / "benchmarks" / "peer_worker.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=self.env,
        )

    def __call__(self, **cmd: Any) -> float:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the MLEM worker failed on {cmd['op']}")
        return float(json.loads(line)["seconds"])

    def close(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()
        self.proc.wait(30)
        shutil.rmtree(self.env["FSSPEC_CONFIG_DIR"], ignore_errors=True)


# -- one server -----------------------------------------------------------------------------
def seed(url: str) -> tuple[str, list[str]]:
    import s3fs

    fs = s3fs.S3FileSystem(key=S3_KEY, secret=S3_SECRET, client_kwargs={"endpoint_url": url})
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    fs.make_bucket_versioned(bucket)
    repo = f"{bucket}/repo"
    files = {
        f"{repo}/.mlem/config.yaml": b"",
        f"{repo}/models/rf.mlem": MODEL,
        f"{repo}/latest.mlem": link_yaml("models/rf.mlem"),
        f"{repo}/.mlem/link/latest.mlem": link_yaml("models/rf.mlem"),
        f"{repo}/hop1.mlem": link_yaml("models/rf.mlem"),
        f"{repo}/hop2.mlem": link_yaml("hop1.mlem"),
        f"{repo}/hop3.mlem": link_yaml("hop2.mlem"),
        f"{repo}/.mlem/link/hop1.mlem": link_yaml("models/rf.mlem"),
        f"{repo}/.mlem/link/hop2.mlem": link_yaml(".mlem/link/hop1.mlem"),
        f"{repo}/.mlem/link/hop3.mlem": link_yaml(".mlem/link/hop2.mlem"),
        # Names found only in .mlem/link/ (the ones above are shadowed by the external
        # link files of the same name): to an external model, and, in MLEM's name form,
        # to a model saved the way MLEM saves by default, in .mlem/model/.
        f"{repo}/.mlem/link/prod.mlem": link_yaml("models/rf.mlem"),
        f"{repo}/.mlem/model/models/gb.mlem": MODEL,
        f"{repo}/.mlem/link/staging.mlem": link_yaml("models/gb.mlem"),
    }
    bulk = [f"s3://{repo}/bulk/l{i}.mlem" for i in range(BULK)]
    for path in bulk:
        files[path[5:]] = link_yaml("models/rf.mlem")
    fs.pipe(files)
    return f"s3://{repo}", bulk


def measure_server(name: str, url: str, peer_python: Path) -> dict[str, Any]:
    repo, bulk = seed(url)
    proxy = FaultProxy(url)
    proxy_url = proxy.start()
    direct = {"key": S3_KEY, "secret": S3_SECRET, "client_kwargs": {"endpoint_url": url}}
    counted = {**direct, "client_kwargs": {"endpoint_url": proxy_url}}
    counter = {"n": 0}

    ops: dict[str, tuple[Callable[[dict[str, Any]], Any], Callable[[Peer], float]]] = {
        # Links in .mlem/link/ (repo known from the path) ...
        "load_meta link -> model": (
            lambda so: load_meta(f"{repo}/.mlem/link/latest.mlem", storage_options=so),
            lambda peer: peer(op="load", path=f"{repo}/.mlem/link/latest.mlem"),
        ),
        "load_meta 3-hop chain": (
            lambda so: load_meta(f"{repo}/.mlem/link/hop3.mlem", storage_options=so),
            lambda peer: peer(op="load", path=f"{repo}/.mlem/link/hop3.mlem"),
        ),
        # ... and external link files at the repo root, named by path: their repo-relative
        # paths need the repo root, found with one probe of .mlem/config.yaml.
        "load_meta external link -> model": (
            lambda so: load_meta(f"{repo}/latest.mlem", storage_options=so),
            lambda peer: peer(op="load", path=f"{repo}/latest.mlem"),
        ),
        "load_meta external 3-hop chain": (
            lambda so: load_meta(f"{repo}/hop3.mlem", storage_options=so),
            lambda peer: peer(op="load", path=f"{repo}/hop3.mlem"),
        ),
        # A name in a repo: the path and the six type folders at once, then the hop.
        "load_meta repo link by name": (
            lambda so: load_meta("prod", repo=repo, storage_options=so),
            lambda peer: peer(op="load", path="prod", repo=repo),
        ),
        "load_meta by name -> model in .mlem/model/": (
            lambda so: load_meta("staging", repo=repo, storage_options=so),
            lambda peer: peer(op="load", path="staging", repo=repo),
        ),
        "link() to a new target": (
            lambda so: link(
                "models/rf",
                source_repo=repo,
                target=_new("ours", counter),
                target_repo=repo,
                storage_options=so,
            ),
            lambda peer: peer(
                op="link",
                source="models/rf",
                source_repo=repo,
                target=_new("mlem", counter),
                target_repo=repo,
            ),
        ),
    }
    result: dict[str, Any] = {"server": name, "operations": {}}
    peer_counted, peer_direct = Peer(peer_python, proxy_url), Peer(peer_python, url)
    try:
        for op, (ours, theirs) in ops.items():
            ours(counted)  # warm both (connections, imports), then count one call each
            theirs(peer_counted)
            proxy.requests.clear()
            ours(counted)
            ours_requests = dict(proxy.requests)
            proxy.requests.clear()
            theirs(peer_counted)
            mlem_requests = dict(proxy.requests)
            ours_times, mlem_times = [], []
            for _ in range(REPEATS):  # alternating the two tools
                start = time.perf_counter()
                ours(direct)
                ours_times.append(time.perf_counter() - start)
                mlem_times.append(theirs(peer_direct))
            ours_median, mlem_median = statistics.median(ours_times), statistics.median(mlem_times)
            result["operations"][op] = {
                "mlemremote_requests": sum(ours_requests.values()),
                "mlem_requests": sum(mlem_requests.values()),
                "mlemremote_puts": sum(n for k, n in ours_requests.items() if k.startswith("PUT")),
                "mlem_puts": sum(n for k, n in mlem_requests.items() if k.startswith("PUT")),
                "mlemremote_median_ms": round(ours_median * 1000, 2),
                "mlem_median_ms": round(mlem_median * 1000, 2),
                "latency_ratio": round(ours_median / mlem_median, 3),
                "mlemremote_request_log": sorted(ours_requests),
                "mlem_request_log": sorted(mlem_requests),
            }
            print(
                f"  {name}: {op}: {result['operations'][op]['mlemremote_requests']} vs "
                f"{result['operations'][op]['mlem_requests']} requests",
                flush=True,
            )
        # botocore keeps 10 connections per client by default: allow one per request.
        pooled = {**direct, "config_kwargs": {"max_pool_connections": 64}}
        # MLEM's one-by-one run takes minutes and so averages out this machine's noise;
        # load_many takes seconds, so it runs BULK_RUNS times, alternating with MLEM's
        # share, and reports the median (every run is in the JSON).
        mlem_bulk, ours_runs, floor_runs = 0.0, [], []
        share = -(-len(bulk) // BULK_RUNS)
        for i in range(BULK_RUNS):
            mlem_bulk += peer_direct(op="load_all", paths=bulk[i * share : (i + 1) * share])
            start = time.perf_counter()
            loaded = load_many(bulk, storage_options=pooled, concurrency=64)
            ours_runs.append(time.perf_counter() - start)
            assert all(type(obj).__name__ == "MlemModel" for obj in loaded)
            floor_runs.append(raw_gather_seconds(bulk, pooled))
        ours_bulk, floor = statistics.median(ours_runs), statistics.median(floor_runs)
        result["bulk"] = {
            "links": len(bulk),
            "mlem_sequential_s": round(mlem_bulk, 2),
            "mlemremote_load_many_s": round(ours_bulk, 2),
            "mlemremote_load_many_runs_s": [round(t, 2) for t in ours_runs],
            "speedup": round(mlem_bulk / ours_bulk, 1),
            "speedup_worst_run": round(mlem_bulk / max(ours_runs), 1),
            # For scale: the link GETs alone, all at once through s3fs's own cat_file.
            "s3fs_raw_gather_s": round(floor, 2),
            "s3fs_raw_gather_runs_s": [round(t, 2) for t in floor_runs],
            "s3fs_raw_gather_speedup": round(mlem_bulk / floor, 1),
        }
        print(f"  {name}: {len(bulk)} links: MLEM {mlem_bulk:.1f} s, load_many {ours_bulk:.2f} s")
    finally:
        peer_counted.close()
        peer_direct.close()
        proxy.stop()
    return result


def raw_gather_seconds(paths: list[str], options: dict[str, Any]) -> float:
    """One GET per link file, all gathered on s3fs's event loop: what the client library
    itself takes for the reads alone, without finding, parsing or following anything."""
    import asyncio

    import s3fs
    from fsspec.asyn import sync

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)

    async def gather() -> list[bytes]:
        found: list[bytes] = await asyncio.gather(
            *[fs._cat_file(p[5:], max_concurrency=1) for p in paths]
        )
        return found

    start = time.perf_counter()
    sync(fs.loop, gather)
    return time.perf_counter() - start


# -- pull: a model's artifacts, against s3fs's own get -----------------------------------------
PULL_RUNS = int(os.environ.get("BENCH_PULL_RUNS", "7"))
# A model's files: a large weights file, a mid-sized one and eight shards (96 MiB in all).
PULL_FILES = {"weights.bin": 64 << 20, "optimizer.bin": 24 << 20} | {
    f"shards/shard-{i}.bin": 1 << 20 for i in range(8)
}


def measure_pull(name: str, url: str) -> dict[str, Any]:
    """`pull` of an alias to a model whose 10 artifacts hold 96 MiB, beside s3fs's `get`
    of the same 10 files (a fresh filesystem each run, into a fresh folder), alternating
    the two; median seconds of `PULL_RUNS` runs each, on a direct connection, and the
    requests of one run of each counted by a proxy."""
    import hashlib
    import tempfile

    import s3fs

    from mlemremote import MlemModel

    direct = {"key": S3_KEY, "secret": S3_SECRET, "client_kwargs": {"endpoint_url": url}}
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **direct)
    bucket = f"bench-pull-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    artifacts = {}
    for rel, size in PULL_FILES.items():
        data = os.urandom(size)
        fs.pipe(f"{bucket}/models/m/{rel}", data)
        artifacts[rel] = {"uri": f"m/{rel}", "size": size, "hash": hashlib.md5(data).hexdigest()}
    model = f"s3://{bucket}/models/m"
    MlemModel(artifacts=artifacts).dump(model, storage_options=direct)
    link(model, target=f"s3://{bucket}/aliases/prod", storage_options=direct)
    alias = f"s3://{bucket}/aliases/prod"
    remote = [f"{bucket}/models/m/{rel}" for rel in PULL_FILES]
    work = Path(tempfile.mkdtemp(prefix="mlemremote-pull-bench-"))
    runs = iter(range(1_000_000))

    def ours(options: dict[str, Any]) -> None:
        pull(alias, str(work / f"ours-{next(runs)}"), storage_options=options, progress=False)

    def theirs(options: dict[str, Any]) -> None:
        folder = work / f"s3fs-{next(runs)}"
        local = [str(folder / rel) for rel in PULL_FILES]
        for path in local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        s3fs.S3FileSystem(skip_instance_cache=True, **options).get(remote, local)

    proxy = FaultProxy(url)
    counted = {**direct, "client_kwargs": {"endpoint_url": proxy.start()}}
    try:
        requests: dict[str, dict[str, int]] = {}
        for tool, run in (("mlemremote", ours), ("s3fs", theirs)):
            run(direct)  # warm: connections, imports
            proxy.requests.clear()
            run(counted)
            requests[tool] = dict(proxy.requests)
    finally:
        proxy.stop()
    ours_times, theirs_times = [], []
    try:
        for _ in range(PULL_RUNS):
            for run, times in ((ours, ours_times), (theirs, theirs_times)):
                start = time.perf_counter()
                run(direct)
                times.append(time.perf_counter() - start)
            for folder in work.iterdir():  # (the page cache, not the disk, fills up)
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        fs.rm(bucket, recursive=True)
    total = sum(PULL_FILES.values())
    ours_s, theirs_s = statistics.median(ours_times), statistics.median(theirs_times)
    row = {
        "files": len(PULL_FILES),
        "mib": total >> 20,
        "mlemremote_pull_s": round(ours_s, 3),
        "s3fs_get_s": round(theirs_s, 3),
        "mlemremote_mib_s": round(total / ours_s / (1 << 20), 1),
        "s3fs_mib_s": round(total / theirs_s / (1 << 20), 1),
        "throughput_ratio": round(theirs_s / ours_s, 3),
        "mlemremote_runs_s": [round(t, 3) for t in ours_times],
        "s3fs_runs_s": [round(t, 3) for t in theirs_times],
        "mlemremote_requests": sum(requests["mlemremote"].values()),
        "s3fs_requests": sum(requests["s3fs"].values()),
        "mlemremote_request_log": sorted(requests["mlemremote"]),
        "s3fs_request_log": sorted(requests["s3fs"]),
    }
    print(
        f"  {name}: pull {ours_s:.2f} s, s3fs get {theirs_s:.2f} s: ratio "
        f"{row['throughput_ratio']}; requests {row['mlemremote_requests']} vs "
        f"{row['s3fs_requests']}",
        flush=True,
    )
    return row


def _new(tool: str, counter: dict[str, int]) -> str:
    counter["n"] += 1
    return f"new-{tool}-{counter['n']}"


def startup(peer_python: Path) -> dict[str, float]:
    """Median start-up of each command (ms), beside a bare `python -c pass`."""
    import tempfile

    from mlemremote import MlemModel, init

    repo = Path(tempfile.mkdtemp(prefix="mlemremote-startup-")) / "repo"
    init(str(repo))
    MlemModel().dump("rf", repo=str(repo))
    link("rf", source_repo=str(repo), target="latest", target_repo=str(repo))
    ours = str(Path(sys.executable).with_name("mlemremote"))
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "mlemremote --help": [ours, "--help"],
        "mlemremote --version": [ours, "--version"],
        "mlemremote show latest (local repo)": [ours, "show", "latest", "-r", str(repo)],
        "mlem --help": [str(peer_python.with_name("mlem")), "--help"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(5):
        for name, argv in commands.items():
            start = time.perf_counter()
            subprocess.run(
                argv,
                capture_output=True,
                check=True,
                env={**os.environ, "MLEM_NO_ANALYTICS": "true"},
            )
            times[name].append(time.perf_counter() - start)
    shutil.rmtree(repo.parent, ignore_errors=True)
    return {name: round(statistics.median(t) * 1000, 1) for name, t in times.items()}


# -- remote git ------------------------------------------------------------------------------
def measure_git() -> dict[str, Any]:
    """Reads from a real git server (`git http-backend`, tests/gitserver.py), cold (empty
    cache) and warm, counted by the server; beside them, what a user would run by hand
    (`git ls-remote`, `git clone --depth 1`). MLEM is not in this table: its GitHub
    resolver speaks only to api.github.com."""
    import tempfile

    from gitserver import GitServer, models_repo

    work = Path(tempfile.mkdtemp(prefix="mlemremote-git-bench-"))
    shas = models_repo(work / "repos")
    server = GitServer(work / "repos").start()
    url = f"{server.url}/org/models.git"
    caches = iter(range(1_000_000))

    def fresh_cache() -> None:
        os.environ["MLEMREMOTE_CACHE_DIR"] = str(work / f"cache-{next(caches)}")

    def timed(prepare: Callable[[], None], run: Callable[[], Any]) -> dict[str, Any]:
        seconds, counts = [], []
        for _ in range(REPEATS):
            prepare()
            server.reset()
            start = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - start)
            counts.append(len(server.requests))
        return {
            "requests": max(counts),
            "median_ms": round(statistics.median(seconds) * 1000, 1),
        }

    def git_cli(*args: str) -> Callable[[], Any]:
        def run() -> None:
            target = work / f"clone-{uuid.uuid4().hex}"
            argv = [a.replace("TARGET", str(target)) for a in args]
            subprocess.run(["git", *argv], check=True, capture_output=True)
            if target.exists():
                (target / ".mlem" / "model" / "rf.mlem").read_bytes()
                shutil.rmtree(target)

        return run

    names = ["rf", "latest", ".mlem/link/models/external"] * 34
    warm = lambda: None  # noqa: E731
    try:
        fresh_cache()
        rows = {
            "by tag, cold cache": timed(fresh_cache, lambda: load_meta("rf", url, "v1")),
            "by commit, cold cache": timed(fresh_cache, lambda: load_meta("rf", url, shas["c1"])),
        }
        load_meta("rf", url, "main")
        rows["by branch, warm cache"] = timed(warm, lambda: load_meta("rf", url, "main"))
        rows["pinned commit, warm cache"] = timed(warm, lambda: load_meta("rf", url, shas["c2"]))
        rows[f"load_many {len(names)} names by branch, warm"] = timed(
            warm, lambda: load_many(names, url, rev="main")
        )
        rows["git ls-remote (by hand)"] = timed(warm, git_cli("ls-remote", url))
        rows["git clone --depth 1 + read (by hand)"] = timed(
            warm, git_cli("clone", "-q", "--depth", "1", "--branch", "v1", url, "TARGET")
        )
        server.stop()
        rows["pinned commit, server stopped"] = timed(
            warm, lambda: load_meta("rf", url, shas["c2"])
        )
    finally:
        server.stop()
        os.environ.pop("MLEMREMOTE_CACHE_DIR", None)
        shutil.rmtree(work, ignore_errors=True)
    return rows


# -- watch ---------------------------------------------------------------------------------
WATCH_POLLS = int(os.environ.get("BENCH_WATCH_POLLS", "20"))


def measure_watch() -> list[dict[str, Any]]:
    """Idle polls of a watch on a 3-hop chain (alias -> b -> c -> model: 4 metafiles), on
    every backend: requests and response body bytes per poll and metafile, counted on the
    wire by a proxy in front of each cloud (the same `FaultProxy` the tests use), and by
    the store calls on local disk (a `stat` each) and in memory; the median time of a
    poll; and the requests of the full verification poll (every 12th by default)."""
    import tempfile

    import fsspec

    from mlemremote import _watch
    from mlemremote._stores import local as local_store
    from mlemremote.api import watch

    rows: list[dict[str, Any]] = []
    chain = {
        "repo/.mlem/config.yaml": b"",
        "repo/v1.mlem": MODEL,
        "repo/.mlem/link/c.mlem": link_yaml("v1.mlem"),
        "repo/.mlem/link/b.mlem": link_yaml(".mlem/link/c.mlem"),
        "repo/.mlem/link/prod.mlem": link_yaml(".mlem/link/b.mlem"),
    }

    def run(name: str, root: str, options: dict[str, Any] | None, proxy: Any) -> None:
        fs = fsspec.filesystem(root.split("://")[0] if "://" in root else "file", **(options or {}))
        base = root.split("://", 1)[1] if "://" in root else root
        for rel, data in chain.items():
            if "://" not in root:
                os.makedirs(os.path.dirname(f"{base}/{rel}"), exist_ok=True)
            fs.pipe_file(f"{base}/{rel}", data)
        if "://" not in root:  # a file read this young is compared by its bytes, not stat
            time.sleep(local_store.RACY_SECONDS + 0.2)
        events = watch(f"{root}/repo/.mlem/link/prod", interval=1, verify_every=None,
                       storage_options=options)  # fmt: skip
        first = events.poll()
        assert first is not None and first.ok, first
        hops = len(first.chain)
        calls: list[int] = []  # bytes handed back by each conditional read (no proxy)
        original = _watch.store_for

        class Counted:
            def __init__(self, store: Any) -> None:
                self.store = store

            def read_if_changed(self, loc: Any, last: Any) -> Any:
                answer = self.store.read_if_changed(loc, last)
                calls.append(len(getattr(answer, "data", b"")))
                return answer

        _watch.store_for = lambda loc: Counted(original(loc))  # type: ignore[assignment]
        try:
            if proxy is not None:
                proxy.requests.clear()
                sent = len(proxy.transfers)
            times = []
            for _ in range(WATCH_POLLS):
                start = time.perf_counter()
                assert events.poll() is None
                times.append(time.perf_counter() - start)
        finally:
            _watch.store_for = original  # type: ignore[assignment]
        if proxy is not None:
            requests = sum(proxy.requests.values())
            body = sum(t.written for t in proxy.transfers[sent:])
            proxy.requests.clear()
        else:
            requests, body = len(calls), sum(calls)
        verify = watch(f"{root}/repo/.mlem/link/prod", interval=1, storage_options=options)
        verify.poll()
        full = sum(proxy.requests.values()) if proxy is not None else None
        rows.append(
            {
                "backend": name,
                "metafiles": hops,
                "polls": WATCH_POLLS,
                "requests_per_poll_per_metafile": round(requests / WATCH_POLLS / hops, 2),
                "body_bytes_per_poll_per_metafile": round(body / WATCH_POLLS / hops, 1),
                "median_ms_per_poll": round(statistics.median(times) * 1000, 2),
                "full_resolution_requests": full,
            }
        )
        print(f"  {rows[-1]}", flush=True)

    with tempfile.TemporaryDirectory(prefix="mlemremote-watch-bench-") as folder:
        run("local", folder, None, None)
    run("memory", f"memory://watch-bench-{uuid.uuid4().hex[:8]}", None, None)
    with running_services() as endpoints:
        clouds: list[tuple[str, str, str]] = [
            (f"s3-{name}", "s3", url) for name, url in endpoints.s3.items()
        ]
        clouds += [("gcs", "gs", endpoints.gcs), ("azure", "az", endpoints.azure)]
        for name, scheme, where in clouds:
            upstream = where
            if scheme == "az":
                part = next(p for p in where.split(";") if p.startswith("BlobEndpoint="))
                upstream = part.split("=", 1)[1].rsplit("/", 1)[0]

            bucket = f"watch-bench-{uuid.uuid4().hex[:8]}"
            fsspec.filesystem(scheme, **_options(scheme, where, upstream, upstream)).mkdir(
                bucket
            )  # directly
            proxy = FaultProxy(upstream)
            url = proxy.start()
            try:
                run(name, f"{scheme}://{bucket}", _options(scheme, where, upstream, url), proxy)
            finally:
                proxy.stop()
    return rows


def _options(scheme: str, where: str, upstream: str, url: str) -> dict[str, Any]:
    """Storage options reaching the emulator at `upstream` (found at `where`) by `url`."""
    if scheme == "s3":
        return {"key": S3_KEY, "secret": S3_SECRET, "client_kwargs": {"endpoint_url": url}}
    if scheme == "gs":
        return {"endpoint_url": url, "token": "anon", "project": "test"}
    return {"connection_string": where.replace(upstream, url)}


# -- reporting -----------------------------------------------------------------------------
def write_results(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "| server | operation | requests mlemremote | requests MLEM | median ms mlemremote "
        "| median ms MLEM | ratio |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for server in results["servers"]:
        for op, row in server["operations"].items():
            lines.append(
                f"| {server['server']} | {op} | {row['mlemremote_requests']} "
                f"({row['mlemremote_puts']} PUT) | {row['mlem_requests']} ({row['mlem_puts']} PUT)"
                f" | {row['mlemremote_median_ms']} | {row['mlem_median_ms']} "
                f"| {row['latency_ratio']} |"
            )
    lines += [
        "",
        "| server | links | MLEM one by one (s) | load_many, median (s) | speedup "
        "| speedup, slowest run | bare s3fs gather of the link GETs, median (s) | its speedup |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for server in results["servers"]:
        bulk = server["bulk"]
        lines.append(
            f"| {server['server']} | {bulk['links']} | {bulk['mlem_sequential_s']} "
            f"| {bulk['mlemremote_load_many_s']} | {bulk['speedup']}x "
            f"| {bulk['speedup_worst_run']}x "
            f"| {bulk['s3fs_raw_gather_s']} | {bulk['s3fs_raw_gather_speedup']}x |"
        )
    if "git" in results:
        lines += ["", "| remote git read | requests | median ms |", "| --- | --- | --- |"]
        lines += [
            f"| {op} | {row['requests']} | {row['median_ms']} |"
            for op, row in results["git"].items()
        ]
    if "pull" in results:
        lines += [
            "",
            "| server | files | MiB | mlemremote pull, median (s) | s3fs get, median (s) "
            "| throughput ratio (s3fs time / pull time) | requests mlemremote | requests s3fs |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {server} | {row['files']} | {row['mib']} | {row['mlemremote_pull_s']} "
            f"({row['mlemremote_mib_s']} MiB/s) | {row['s3fs_get_s']} ({row['s3fs_mib_s']} MiB/s) "
            f"| {row['throughput_ratio']} | {row['mlemremote_requests']} | {row['s3fs_requests']} |"
            for server, row in results["pull"].items()
        ]
    if "watch" in results:
        lines += [
            "",
            "| backend | metafiles | requests per idle poll, per metafile | body bytes per "
            "idle poll, per metafile | median ms per idle poll | requests of a full resolution |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {row['backend']} | {row['metafiles']} | {row['requests_per_poll_per_metafile']} "
            f"| {row['body_bytes_per_poll_per_metafile']} | {row['median_ms_per_poll']} "
            f"| {row['full_resolution_requests'] if row['full_resolution_requests'] else '-'} |"
            for row in results["watch"]
        ]
    bare = results["startup_ms"].get("python -c pass")
    lines += ["", "| command | median start-up (ms) | ratio to `python -c pass` |"]
    lines += ["| --- | --- | --- |"]
    lines += [
        f"| `{name}` | {ms} | {round(ms / bare, 1) if bare else ''} |"
        for name, ms in results["startup_ms"].items()
    ]
    (RESULTS / "results.md").write_text("\n".join(lines) + "\n")
    chart(results)


def chart(results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = results["servers"]
    ops = list(servers[0]["operations"])
    fig, axes = plt.subplots(1, len(servers), figsize=(6.5 * len(servers), 4.5), squeeze=False)
    for ax, server in zip(axes[0], servers, strict=True):
        xs = range(len(ops))
        ours = [server["operations"][op]["mlemremote_requests"] for op in ops]
        theirs = [server["operations"][op]["mlem_requests"] for op in ops]
        ax.bar([x - 0.2 for x in xs], theirs, 0.4, label="MLEM 0.2.0", color="#bbbbbb")
        ax.bar([x + 0.2 for x in xs], ours, 0.4, label="mlemremote", color="#2a7ab9")
        labels = [op.replace("load_meta ", "").replace("external ", "ext. ") for op in ops]
        ax.set_xticks(list(xs), labels, rotation=25, ha="right")
        ax.set_ylabel("requests per call")
        ax.set_title(f"S3 requests ({server['server']})")
        ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "chart.png", dpi=110)


def main() -> None:
    if sys.argv[1:] in (["git"], ["startup"], ["pull"], ["watch"]):  # one table, merged
        results = json.loads((RESULTS / "results.json").read_text())
        if sys.argv[1] == "git":
            results["git"] = measure_git()
        elif sys.argv[1] == "pull":
            with running_services(("s3",)) as endpoints:
                results["pull"] = {n: measure_pull(n, u) for n, u in endpoints.s3.items()}
        elif sys.argv[1] == "watch":
            results["watch"] = measure_watch()
        else:
            peer = ensure_peer()
            assert peer is not None
            results["startup_ms"] = startup(peer)
        write_results(results)
        print((RESULTS / "results.md").read_text())
        return
    peer_python = ensure_peer()  # (exits with the reason when there is no Python 3.9)
    assert peer_python is not None
    results: dict[str, Any] = {"repeats": REPEATS, "servers": []}
    with running_services(("s3",)) as endpoints:
        for name, url in endpoints.s3.items():
            print(f"measuring on {name} ...", flush=True)
            results["servers"].append(measure_server(name, url, peer_python))
        print("measuring pull ...", flush=True)
        results["pull"] = {n: measure_pull(n, u) for n, u in endpoints.s3.items()}
    print("measuring remote git ...", flush=True)
    results["git"] = measure_git()
    print("measuring watch ...", flush=True)
    results["watch"] = measure_watch()
    results["startup_ms"] = startup(peer_python)
    write_results(results)
    print((RESULTS / "results.md").read_text())


if __name__ == "__main__":
    main()
