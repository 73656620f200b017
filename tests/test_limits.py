"""Hardening: the metafile size cap holds while the bytes stream in, and the call's time
budget (`retry_max_seconds`) bounds slow bodies, on every backend.

The object stores are reached through `faultproxy.FaultProxy`, which streams every GET
body in small writes over a small socket buffer and records how many bytes it sent before
the client stopped reading and closed the connection. Its body faults make a server that
ignores Range, sends a 1 GiB body with or without Content-Length (or with a Content-Range
that lies), or trickles a byte every 0.5 s. The SDKs' own retries (gcsfs: ~30 s of
backoff on 5xx) end with the budget, and their own request timeouts are retried within
it, not taken for its end. Local disk, memory and git revisions are checked in a child
process whose peak memory is measured around the read.

Figures (bytes sent before the client stopped, times) go to `REPORT["size cap"]`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REPORT, Backend
from faultproxy import FaultProxy, Transfer

from mlemremote.api import configured, init, load_many, load_meta
from mlemremote.core.errors import (
    DeserializationError,
    MetafileTooLargeError,
    StorageError,
    TimeBudgetError,
)
from mlemremote.core.objects import MlemModel

CAP = 4096
# What may be sent past the cap before the client has stopped and closed the connection:
# the stores ask for at most 64 KiB at a time (Azure's SDK hands out blocks of up to
# 256 KiB), aiohttp reads ahead into its own buffer until it pauses the socket, and the
# sockets hold some more (the proxy's send buffer is set to 32 KiB, doubled by Linux).
# One MiB is generous for all of it; the whole body is 1 GiB.
SLACK = 1 << 20
BIG = 8 << 20  # an over-cap metafile that really is that big
SIZE_REPORT = REPORT["size cap"]


def model_bytes(size: int = 0) -> bytes:
    """A valid model metafile, padded to `size` bytes if that is more."""
    head = b"object_type: model\nmodel_type:\n  name: m\n"
    return head + (b"# " + b"x" * (size - len(head) - 3) + b"\n" if size > len(head) + 3 else b"")


def on(name: str) -> tuple[str, str]:
    """How a path shows in a request: plain (S3, Azure) or quoted (GCS's JSON API)."""
    return name, name.replace("/", "%2F")


def gets_of(proxy: FaultProxy, name: str) -> int:
    return sum(n for k, n in proxy.requests.items() if k.startswith("GET") and _has(k, name))


def _has(path: str, name: str) -> bool:
    return any(form in path for form in on(name))


def warm_up(b: Backend) -> None:
    """One call through the library's own client before a budget is timed: creating an
    SDK client (botocore's takes seconds on a loaded machine) is not what a budget test
    measures, and once it ate a 2 s budget before the GET was even sent (CI, stop 18)."""
    b.write(b.uri("warm.mlem"), model_bytes(0))
    assert isinstance(load_meta(b.uri("warm"), storage_options=b.storage_options), MlemModel)


def transfers(proxy: FaultProxy, name: str) -> list[Transfer]:
    found = proxy.transfers_of(lambda path: _has(path, name))
    assert found, f"no GET of {name} went through the proxy"
    assert proxy.wait_ended(found), "the client kept the connection open: the body still flows"
    return found


def assert_truthful(error: BaseException, *sizes: int) -> None:
    """The cap error says the size the server told, or only that it is over the cap."""
    text = str(error)
    told = [f"is {size} bytes" for size in sizes]
    assert any(t in text for t in [*told, f"has more than {CAP} bytes"]), text
    assert f"is {CAP + 1} bytes" not in text, text  # the bytes read are not the size


def record(b: Backend, case: str, sent: list[Transfer], took: float | None = None) -> None:
    most = max(t.written for t in sent)
    timing = f", {took:.1f} s" if took is not None else ""
    SIZE_REPORT.append(
        f"{b.name:>13} {case}: at most {most} bytes sent per request "
        f"(cap {CAP}, {len(sent)} request(s)){timing}"
    )


def test_over_cap_metafile_is_refused_while_streaming(proxied: tuple[Backend, FaultProxy]) -> None:
    """A real 8 MiB metafile against a 4 KiB cap: refused after cap + one buffer, in one
    request, saying how big it is."""
    b, proxy = proxied
    so = {"storage_options": b.storage_options}
    b.write(b.uri("big.mlem"), model_bytes(BIG))
    proxy.requests.clear()
    with configured(max_metafile_bytes=CAP), pytest.raises(MetafileTooLargeError) as info:
        load_meta(b.uri("big"), **so)
    assert "big.mlem" in str(info.value)
    assert_truthful(info.value, BIG)
    assert gets_of(proxy, "big.mlem") == 1
    sent = transfers(proxy, "big.mlem")
    assert all(t.written <= CAP + SLACK for t in sent), sent
    record(b, "8 MiB metafile", sent)


@pytest.mark.parametrize(
    "fault", ["huge-body", "huge-body-chunked", "huge-body-lying", "ignore-range"]
)
def test_server_that_sends_too_much_is_cut_off(
    proxied: tuple[Backend, FaultProxy], fault: str
) -> None:
    """Whatever the server says (a 1 GiB Content-Length, none, a Content-Range claiming a
    small size) and whatever Range it ignores, reading stops at cap + one buffer."""
    b, proxy = proxied
    so = {"storage_options": b.storage_options}
    size = BIG if fault == "ignore-range" else 0  # else a small metafile, a huge body
    b.write(b.uri("m.mlem"), model_bytes(size))
    proxy.requests.clear()
    proxy.fail(fault, per_request=1000, match=lambda m, p: m == "GET" and _has(p, "m.mlem"))
    start = time.monotonic()
    with configured(max_metafile_bytes=CAP), pytest.raises(MetafileTooLargeError) as info:
        load_meta(b.uri("m"), **so)
    took = time.monotonic() - start
    assert "m.mlem" in str(info.value)
    assert_truthful(info.value, proxy.huge_bytes, BIG)
    if fault == "huge-body-lying":  # it claimed a small size: only "more than" is true
        assert f"has more than {CAP} bytes" in str(info.value)
    assert gets_of(proxy, "m.mlem") == 1  # a cap error is not retried
    sent = transfers(proxy, "m.mlem")
    assert all(t.written <= CAP + SLACK and not t.complete for t in sent), sent
    assert took < 15
    record(b, fault, sent, took)


def test_load_many_reports_each_path(proxied: tuple[Backend, FaultProxy]) -> None:
    """load_many: an over-cap metafile, an endless body and a trickling body each get
    their own error; the other paths load."""
    b, proxy = proxied
    so = b.storage_options
    names = ["ok0", "big", "endless", "ok1", "slow"]
    for name in names:
        b.write(b.uri(f"{name}.mlem"), model_bytes(BIG if name == "big" else 0))
    warm_up(b)
    proxy.fail("huge-body-chunked", per_request=1000, match=lambda m, p: _has(p, "endless.mlem"))
    proxy.fail("trickle", per_request=1000, match=lambda m, p: _has(p, "slow.mlem"))
    start = time.monotonic()
    with configured(max_metafile_bytes=CAP, retry_max_seconds=4):
        results = load_many([b.uri(name) for name in names], storage_options=so)
    took = time.monotonic() - start
    by_name = dict(zip(names, results, strict=True))
    assert isinstance(by_name["ok0"], MlemModel) and isinstance(by_name["ok1"], MlemModel)
    for name in ("big", "endless"):
        assert isinstance(by_name[name], MetafileTooLargeError), by_name[name]
        assert f"{name}.mlem" in str(by_name[name])
    assert_truthful(by_name["big"], BIG)
    assert f"has more than {CAP} bytes" in str(by_name["endless"])
    assert isinstance(by_name["slow"], TimeBudgetError), by_name["slow"]
    assert "slow.mlem" in str(by_name["slow"])
    assert took < 15
    sent = transfers(proxy, "big.mlem") + transfers(proxy, "endless.mlem")
    assert all(t.written <= CAP + SLACK for t in sent), sent
    assert all(t.disconnected for t in transfers(proxy, "slow.mlem"))
    record(b, "load_many big+endless", sent, took)


def test_trickling_body_is_cut_by_the_time_budget(proxied: tuple[Backend, FaultProxy]) -> None:
    """A byte every 0.5 s (the body would take ~40 s): a 4 s budget ends the call with
    TimeBudgetError, and the connection is closed rather than left trickling."""
    b, proxy = proxied
    so = {"storage_options": b.storage_options}
    b.write(b.uri("slow.mlem"), model_bytes(80))
    warm_up(b)
    proxy.fail("trickle", per_request=1000, match=lambda m, p: _has(p, "slow.mlem"))
    start = time.monotonic()
    with configured(retry_max_seconds=4), pytest.raises(TimeBudgetError) as info:
        load_meta(b.uri("slow"), **so)
    took = time.monotonic() - start
    assert "slow.mlem" in str(info.value) and "retry_max_seconds=4" in str(info.value)
    assert took < 15, took
    sent = transfers(proxy, "slow.mlem")
    assert all(t.disconnected and not t.complete for t in sent), sent
    assert gets_of(proxy, "slow.mlem") == 1  # the budget is spent: no retry
    SIZE_REPORT.append(
        f"{b.name:>13} trickle (1 byte / 0.5 s, 80-byte body): TimeBudgetError after "
        f"{took:.1f} s against a 4 s budget, {sent[0].written} bytes had come"
    )


def test_sdk_retries_are_cut_by_the_time_budget(proxied: tuple[Backend, FaultProxy]) -> None:
    """Every write answers 503: gcsfs retries that itself with ~30 s of backoff; a 2 s
    budget ends the call anyway (elsewhere our own retries give up sooner)."""
    b, proxy = proxied
    proxy.fail("503", per_request=1000, match=lambda m, p: m in ("PUT", "POST"))
    start = time.monotonic()
    with configured(retry_max_seconds=2), pytest.raises(StorageError) as info:
        MlemModel().dump(b.uri("w"), storage_options=b.storage_options)
    took = time.monotonic() - start
    assert "w.mlem" in str(info.value)
    assert took < 15, took
    if b.name == "gcs":
        assert isinstance(info.value, TimeBudgetError), info.value
    SIZE_REPORT.append(
        f"{b.name:>13} writes answered 503 forever: {type(info.value).__name__} after "
        f"{took:.1f} s against a 2 s budget"
    )


@pytest.mark.exclusive  # a 1 s read timeout must fire on the stalled GET only: alone
def test_an_sdk_timeout_is_retried_not_taken_for_the_budget(
    proxied: tuple[Backend, FaultProxy],
) -> None:
    """A body that stalls past the SDK's own read timeout (1 s) is a transient fault:
    retried within the budget (20 s), not reported as the budget's end."""
    b, proxy = proxied
    assert b.storage_options is not None
    timeouts = {"s3": {"config_kwargs": {"read_timeout": 1}}, "gs": {"requests_timeout": 1}}
    options = {**b.storage_options, **timeouts.get(b.scheme, {"read_timeout": 1})}
    b.write(b.uri("stall.mlem"), model_bytes(80))
    proxy.trickle_interval = 5.0  # a first byte, then nothing for 5 s
    proxy.fail("trickle", per_request=1, match=lambda m, p: m == "GET" and _has(p, "stall.mlem"))
    start = time.monotonic()
    model = load_meta(b.uri("stall"), storage_options=options)
    took = time.monotonic() - start
    assert isinstance(model, MlemModel)
    assert gets_of(proxy, "stall.mlem") == 2  # the stalled one, then the retry
    assert took < 15, took
    stalled, retried = transfers(proxy, "stall.mlem")
    assert stalled.disconnected and retried.complete
    SIZE_REPORT.append(
        f"{b.name:>13} body stalled past the SDK's 1 s read timeout: retried, "
        f"loaded after {took:.1f} s"
    )


def test_small_and_empty_metafiles_still_read_in_one_request(
    proxied: tuple[Backend, FaultProxy],
) -> None:
    """Under the cap, a metafile is one GET, read whole. An empty file still reads (as
    an empty metafile, which is refused as such): one GET on S3; on GCS and Azure, whose
    range read of an empty object answers 416, a second GET without the range."""
    b, proxy = proxied
    so = {"storage_options": b.storage_options}
    repo = b.uri("repo")
    init(repo, **so)
    MlemModel(model_type={"name": "m"}).dump("m", repo=repo, **so)
    data = model_bytes(CAP)  # exactly the cap: not over it
    b.write(b.uri("edge.mlem"), data)
    b.write(b.uri("empty.mlem"), b"")
    proxy.requests.clear()
    with configured(max_metafile_bytes=CAP):
        assert isinstance(load_meta(b.uri("edge"), **so), MlemModel)
        assert load_meta("m", repo=repo, **so).model_type == {"name": "m"}
        with pytest.raises(DeserializationError, match=r"empty\.mlem"):
            load_meta(b.uri("empty"), **so)
    gets = {k: n for k, n in proxy.requests.items() if k.startswith("GET")}
    assert gets and all(n == 1 for k, n in gets.items() if "empty.mlem" not in k), gets
    assert gets_of(proxy, "empty.mlem") == (1 if b.scheme == "s3" else 2)
    edge = transfers(proxy, "edge.mlem")
    assert edge[0].complete and edge[0].written == len(data)


# -- local disk, memory, git revisions -------------------------------------------------
CHILD = textwrap.dedent(
    """
    import json, os, subprocess, sys
    sys.path.insert(0, {root!r})
    import fsspec
    from mlemremote.api import configured, load_meta
    from mlemremote.core.errors import MetafileTooLargeError, NotAFileError

    kind, folder, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    where = {{}}
    if kind == "local":  # sparse: 1 GiB that costs no disk, until read
        with open(os.path.join(folder, "big.mlem"), "wb") as handle:
            handle.truncate(size)
        where = {{"path": os.path.join(folder, "big")}}
    elif kind == "local-endless":  # a metafile that never ends
        os.symlink("/dev/zero", os.path.join(folder, "big.mlem"))
        where = {{"path": os.path.join(folder, "big")}}
    elif kind == "memory":
        fsspec.filesystem("memory").pipe_file("/limits/big.mlem", bytes(size))
        where = {{"path": "memory://limits/big"}}
    elif kind == "git":
        git = ["git", "-C", folder, "-c", "user.email=t@example.com", "-c", "user.name=t"]
        subprocess.run([*git, "init", "-q"], check=True)
        with open(os.path.join(folder, "big.mlem"), "wb") as handle:
            handle.truncate(size)
        subprocess.run([*git, "add", "big.mlem"], check=True)
        subprocess.run([*git, "commit", "-qm", "big"], check=True)
        os.remove(os.path.join(folder, "big.mlem"))
        where = {{"path": os.path.join(folder, "big"), "rev": "HEAD"}}

    def peak_mib():
        with open("/proc/self/status") as status:
            line = next(l for l in status if l.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024

    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # restart the peak from here
    before = peak_mib()
    try:
        with configured(max_metafile_bytes={cap}):
            load_meta(**where)
        error = None
    except (MetafileTooLargeError, NotAFileError) as exc:
        error = f"{{type(exc).__name__}}: {{exc}}"
    print(json.dumps({{"error": error, "peak_growth_mib": peak_mib() - before}}))
    """
)


@pytest.mark.exclusive  # a memory high-water mark: alone
@pytest.mark.parametrize("kind", ["local", "local-endless", "memory", "git"])
def test_disk_memory_and_git_refuse_without_reading_it_whole(kind: str, tmp_path: Path) -> None:
    """A 256 MiB metafile (a sparse file, an in-memory file, a git blob; or /dev/zero) is
    refused without being read whole: the peak memory of the read stays far below it."""
    size = 256 << 20
    root = str(Path(__file__).resolve().parent.parent)
    script = CHILD.format(root=root, cap=CAP)
    done = subprocess.run(
        [sys.executable, "-c", script, kind, str(tmp_path), str(size)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["error"] is not None and "big.mlem" in out["error"], out
    if kind == "local-endless":  # /dev/zero is a device, not a file: never read at all
        assert out["error"].startswith("NotAFileError"), out
    else:
        assert f"is {size} bytes" in out["error"], out
    assert out["peak_growth_mib"] < 32, out
    SIZE_REPORT.append(
        f"{kind:>13}: a {size >> 20} MiB metafile refused, peak memory "
        f"+{out['peak_growth_mib']:.1f} MiB during the read"
    )
