"""Local disk: a link never replaces a model, whoever writes the model.

Model writers (`MlemModel.dump`, and a foreign tool's temp file + `os.replace`) race link
movers (`link()` with and without `expected=`) on one alias, round after round, in
separate processes. After each round the alias must hold a model: a link there means a
model that was written was overwritten (lost). No temporary file may be left behind.

The exchange protocol of `mlemremote._stores.local` is also driven step by step, with a
"foreign write" injected between its steps.
"""

from __future__ import annotations

import json
import os
import random
import select
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import REPORT

from mlemremote._stores import local
from mlemremote._stores.base import WriteConflict
from mlemremote.api import link, load_meta
from mlemremote.core.errors import NotAFileError, StorageError
from mlemremote.core.objects import MlemLink, MlemModel

ROUNDS = 60
MOVES = 30  # per mover and round, at most (a mover stops at its first refusal)
ROLES = ["mover-plain", "mover-plain", "mover-cas", "writer-dump", "writer-foreign"]
WORKER = str(Path(__file__).with_name("race_worker.py"))
ANSWER_SECONDS = 120  # a generous bound on one round's answer: only a hang reaches it


def _answer(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], ANSWER_SECONDS)
    assert ready, "a race worker did not answer"
    line = proc.stdout.readline()
    assert line, f"a race worker died: {proc.stderr.read() if proc.stderr else ''}"
    return line.strip()


def _reset_alias(folder: Path) -> None:
    alias = folder / "a.mlem"
    if alias.exists() or alias.is_symlink():
        alias.unlink()
    link(str(folder / "m1"), target=str(folder / "a"))


@pytest.mark.exclusive  # five racing processes: alone, the races are theirs
def test_models_survive_concurrent_link_moves(tmp_path: Path) -> None:
    folder = tmp_path / "races"
    folder.mkdir()
    for name in ("m1", "m2"):
        MlemModel(model_type={"name": name}).dump(str(folder / name))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                WORKER,
                json.dumps({"role": role, "folder": str(folder), "moves": MOVES}),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for role in ROLES
    ]
    rng = random.Random(20260522)
    totals: Counter[str] = Counter()
    lost = 0
    leftovers: list[str] = []
    try:
        for proc in procs:
            assert _answer(proc) == "ready"
        for round_no in range(ROUNDS):
            _reset_alias(folder)
            for proc, role in zip(procs, ROLES, strict=True):
                assert proc.stdin is not None
                # Writers land somewhere among the moves (a few moves' time in).
                delay = rng.uniform(0.0, 0.08) if role.startswith("writer") else 0.0
                proc.stdin.write(f"go {round_no} {delay:.4f}\n")
                proc.stdin.flush()
            answers = [json.loads(_answer(proc)) for proc in procs]
            written = {a["wrote"] for a in answers if "wrote" in a}
            for answer in answers:
                totals.update({k: v for k, v in answer.items() if isinstance(v, int)})
            totals["model writes"] += len(written)
            final = load_meta(str(folder / "a.mlem"), follow_links=False)
            if written and not isinstance(final, MlemModel):
                lost += 1  # a model was written, and a link is there now
            elif written:
                assert isinstance(final, MlemModel)
                assert (final.model_type or {}).get("name") in written
            leftovers += [n for n in os.listdir(folder) if n.startswith((".", "foreign-"))]
    finally:
        for proc in procs:
            if proc.poll() is None and proc.stdin is not None:
                proc.stdin.write("quit\n")
                proc.stdin.close()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    REPORT["local races"].append(
        f"{ROUNDS} rounds, {len(ROLES) - 2} link movers (2 plain, 1 with expected=) and 2 "
        f"model writers (dump, foreign os.replace): {totals['model writes']} model writes, "
        f"{totals['attempted']} link moves attempted, {totals['moved']} succeeded, "
        f"{totals['refused']} refused (a model was there), {totals['conflicts']} "
        f"compare-and-swap conflicts; lost models: {lost}; temp files left: {len(leftovers)}"
    )
    assert lost == 0, f"{lost} of {ROUNDS} rounds lost a model to a link"
    assert leftovers == []


# -- the exchange protocol, step by step -----------------------------------------------
LINK_V1 = b"object_type: link\nlink_type: model\npath: ./m1.mlem\n# v1\n"
LINK_V2 = b"object_type: link\nlink_type: model\npath: ./m2.mlem\n# v2\n"
MODEL = b"object_type: model\nmodel_type:\n  name: foreign\n"
MODEL_2 = b"object_type: model\nmodel_type:\n  name: foreign-2\n"
LIMIT = 1 << 20

needs_exchange = pytest.mark.skipif(
    not local.exchange_supported(), reason="no atomic exchange on this OS"
)


def _foreign_write(path: Path, data: bytes) -> None:
    tmp = path.with_name("foreign-tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _token(path: Path) -> str:
    return local.token_of(str(path), LIMIT) or ""


def _hidden(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith("."))


@needs_exchange
def test_exchange_compare_and_swap_succeeds(tmp_path: Path) -> None:
    alias = tmp_path / "a.mlem"
    alias.write_bytes(LINK_V1)
    steps: list[str] = []
    token = local.compare_and_swap(
        str(alias), LINK_V2, _token(alias), limit=LIMIT, where="a", between=steps.append
    )
    assert alias.read_bytes() == LINK_V2
    assert token == _token(alias)
    assert steps == ["locked", "swapped"]
    assert _hidden(tmp_path) == []


@needs_exchange
def test_exchange_finds_a_model_and_swaps_it_back(tmp_path: Path) -> None:
    alias = tmp_path / "a.mlem"
    alias.write_bytes(LINK_V1)
    expect = _token(alias)
    inode = alias.stat().st_ino

    def model_lands(step: str) -> None:
        # Between the read and the swap, the model lands (the token no longer holds).
        if step == "locked":
            _foreign_write(alias, MODEL)

    with pytest.raises(WriteConflict):
        local.compare_and_swap(
            str(alias), LINK_V2, expect, limit=LIMIT, where="a", between=model_lands
        )
    assert alias.read_bytes() == MODEL
    assert alias.stat().st_ino != inode
    assert _hidden(tmp_path) == []


@needs_exchange
def test_exchange_keeps_a_model_written_between_the_two_swaps(tmp_path: Path) -> None:
    alias = tmp_path / "a.mlem"
    alias.write_bytes(LINK_V1)
    expect = _token(alias)
    seen: list[str] = []

    def races(step: str) -> None:
        seen.append(step)
        if step == "locked":
            _foreign_write(alias, MODEL)  # what the exchange will find: not the link read
        elif step == "swapped":
            assert alias.read_bytes() == LINK_V2  # our file is at the target for an instant
            _foreign_write(alias, MODEL_2)  # a newer foreign model replaces it

    with pytest.raises(WriteConflict):
        local.compare_and_swap(str(alias), LINK_V2, expect, limit=LIMIT, where="a", between=races)
    # The newest foreign model is at the target; the older one it superseded is gone,
    # as a plain os.replace would have left things; our link is nowhere.
    assert alias.read_bytes() == MODEL_2
    assert _hidden(tmp_path) == []
    assert seen[:3] == ["locked", "swapped", "swapped back"]
    assert "put back" in seen


@needs_exchange
def test_exchange_keeps_the_newest_of_several_foreign_writes(tmp_path: Path) -> None:
    alias = tmp_path / "a.mlem"
    alias.write_bytes(LINK_V1)
    expect = _token(alias)
    writes = iter([MODEL, MODEL_2, MODEL + b"# 3\n", MODEL + b"# 4\n"])
    last: list[bytes] = []

    def keeps_writing(step: str) -> None:
        data = next(writes, None)
        if data is not None:
            _foreign_write(alias, data)
            last.append(data)

    with pytest.raises(WriteConflict):
        local.compare_and_swap(
            str(alias), LINK_V2, expect, limit=LIMIT, where="a", between=keeps_writing
        )
    assert alias.read_bytes() == last[-1]
    assert _hidden(tmp_path) == []


@needs_exchange
def test_exchange_target_removed_is_a_conflict(tmp_path: Path) -> None:
    alias = tmp_path / "a.mlem"
    alias.write_bytes(LINK_V1)
    expect = _token(alias)

    def removed(step: str) -> None:
        if step == "locked":
            alias.unlink()

    with pytest.raises(WriteConflict):
        local.compare_and_swap(str(alias), LINK_V2, expect, limit=LIMIT, where="a", between=removed)
    assert not alias.exists()
    assert _hidden(tmp_path) == []


@needs_exchange
def test_exchange_target_removed_between_the_swaps_is_put_back(tmp_path: Path) -> None:
    alias = tmp_path / "a.mlem"
    alias.write_bytes(LINK_V1)
    expect = _token(alias)

    def races(step: str) -> None:
        if step == "locked":
            _foreign_write(alias, MODEL)
        elif step == "swapped":
            alias.unlink()  # our file is removed: the model it displaced is not lost

    with pytest.raises(WriteConflict):
        local.compare_and_swap(str(alias), LINK_V2, expect, limit=LIMIT, where="a", between=races)
    assert alias.read_bytes() == MODEL
    assert _hidden(tmp_path) == []


@needs_exchange
def test_exchange_gives_up_after_its_bound_and_deletes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "_MAX_EXCHANGES", 2)
    alias = tmp_path / "a.mlem"
    alias.write_bytes(LINK_V1)
    expect = _token(alias)
    written: list[bytes] = []

    def never_stops(step: str) -> None:
        data = MODEL + f"# {len(written)}\n".encode()
        _foreign_write(alias, data)
        written.append(data)

    with pytest.raises(StorageError, match="nothing was deleted"):
        local.compare_and_swap(
            str(alias), LINK_V2, expect, limit=LIMIT, where="a", between=never_stops
        )
    # The newest write is at the target; the one before it is kept aside, not deleted.
    assert alias.read_bytes() == written[-1]
    (kept,) = _hidden(tmp_path)
    assert (tmp_path / kept).read_bytes() == written[-2]


def test_fallback_without_exchange_warns_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(local, "_exchange", local._no_exchange)
    monkeypatch.setattr(local, "_warned", set())
    alias = tmp_path / "a.mlem"
    alias.write_bytes(LINK_V1)
    with caplog.at_level("WARNING", logger="mlemremote"):
        local.compare_and_swap(str(alias), LINK_V2, _token(alias), limit=LIMIT, where="a")
        local.compare_and_swap(str(alias), LINK_V1, _token(alias), limit=LIMIT, where="a")
        with pytest.raises(WriteConflict):
            local.compare_and_swap(str(alias), LINK_V2, "stale", limit=LIMIT, where="a")
    assert alias.read_bytes() == LINK_V1
    warnings = [r for r in caplog.records if r.name == "mlemremote"]
    assert len(warnings) == 1 and "exchange" in warnings[0].getMessage()
    assert _hidden(tmp_path) == []


@pytest.mark.parametrize("kind", ["directory", "fifo", "broken-symlink", "symlink-to-device"])
def test_compare_and_swap_refuses_what_is_not_a_file(tmp_path: Path, kind: str) -> None:
    alias = tmp_path / "a.mlem"
    if kind == "directory":
        alias.mkdir()
    elif kind == "fifo":
        os.mkfifo(alias)
    elif kind == "broken-symlink":
        alias.symlink_to(tmp_path / "nowhere.mlem")
    else:
        alias.symlink_to("/dev/zero")
    before = os.lstat(alias)
    with pytest.raises(NotAFileError):
        local.compare_and_swap(str(alias), LINK_V2, "any-token", limit=LIMIT, where="a")
    after = os.lstat(alias)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert _hidden(tmp_path) == []


def test_a_link_over_a_symlinked_link_replaces_the_symlink_only(tmp_path: Path) -> None:
    real = tmp_path / "real.mlem"
    MlemModel().dump(str(tmp_path / "m1"))
    MlemModel().dump(str(tmp_path / "m2"))
    real.write_bytes(b"object_type: link\nlink_type: model\npath: ./m1.mlem\n")
    (tmp_path / "a.mlem").symlink_to("real.mlem")
    link(str(tmp_path / "m2"), target=str(tmp_path / "a"))
    assert not (tmp_path / "a.mlem").is_symlink()
    loaded: Any = load_meta(str(tmp_path / "a"), follow_links=False)
    assert isinstance(loaded, MlemLink) and loaded.path == f"file://{tmp_path}/m2.mlem"
    assert real.read_bytes() == b"object_type: link\nlink_type: model\npath: ./m1.mlem\n"
