"""Issue 5: `load_many` resolves many links concurrently, one GET per metafile per hop,
errors collected per path."""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import Backend

from mlemremote import _bulk
from mlemremote.api import load_many
from mlemremote.core.errors import LinkCycleError, MlemObjectNotFound, WrongMetaType
from mlemremote.core.objects import MlemModel

LINKS = 40


def test_load_many_in_order_with_errors_per_path(backend: Backend, reads: list[str]) -> None:
    so = backend.storage_options
    MlemModel(model_type={"n": "rf"}).dump(backend.uri("models", "rf"), storage_options=so)
    for i in range(LINKS):
        backend.write(
            backend.uri("links", f"l{i}.mlem"),
            "object_type: link\nlink_type: model\npath: ../models/rf.mlem\n",
        )
    backend.write(
        backend.uri("links", "wrong.mlem"),
        "object_type: link\nlink_type: dataset\npath: ../models/rf.mlem\n",
    )
    backend.write(
        backend.uri("links", "self.mlem"),
        "object_type: link\nlink_type: model\npath: ./self.mlem\n",
    )
    paths = [backend.uri("links", f"l{i}") for i in range(LINKS)]
    paths[3] = backend.uri("links", "missing")
    paths[7] = backend.uri("links", "wrong")
    paths[9] = backend.uri("links", "self")
    reads.clear()
    results = load_many(paths, storage_options=so, concurrency=16)
    assert len(results) == LINKS
    assert isinstance(results[3], MlemObjectNotFound)
    assert isinstance(results[7], WrongMetaType)
    assert isinstance(results[9], LinkCycleError)
    good = [r for i, r in enumerate(results) if i not in (3, 7, 9)]
    assert all(isinstance(r, MlemModel) and r.model_type == {"n": "rf"} for r in good)
    # At most one GET per metafile: each link once, and the model they share once.
    assert len([r for r in reads if "/links/l" in r]) == LINKS - 3
    assert len([r for r in reads if r.endswith("/models/rf.mlem")]) == 1
    assert len({id(r) for r in good}) == len(good)  # each result is its own object


@pytest.mark.parametrize("concurrency", [1, 64])
def test_load_many_by_name_in_a_repo(backend: Backend, concurrency: int) -> None:
    from mlemremote.api import init, link

    so = backend.storage_options
    repo = backend.uri("repo")
    init(repo, storage_options=so)
    MlemModel().dump("rf", repo=repo, external=True, storage_options=so)
    for i in range(5):
        link("rf", source_repo=repo, target=f"alias{i}", target_repo=repo, storage_options=so)
    names = [f"alias{i}" for i in range(5)]
    results = load_many(names, repo=repo, storage_options=so, concurrency=concurrency)
    assert all(isinstance(r, MlemModel) for r in results)


def test_check_says_how_each_link_ends_reading_each_metafile_once(
    backend: Backend, reads: list[str]
) -> None:
    from mlemremote.api import check, init, link

    so = backend.storage_options
    repo = backend.uri("repo")
    init(repo, storage_options=so)
    MlemModel().dump("rf", repo=repo, storage_options=so)
    MlemModel().dump(backend.uri("outside", "m"), storage_options=so)
    for i in range(10):
        link("rf", source_repo=repo, target=f"a{i}", target_repo=repo, storage_options=so)
    link(backend.uri("outside", "m"), target="out", target_repo=repo, storage_options=so)
    broken = {
        "dangling": "path: nowhere.mlem",
        "loop": "path: .mlem/link/loop.mlem",
        "wrong": "link_type: dataset\npath: .mlem/model/rf.mlem",
    }
    for name, body in broken.items():
        if "link_type" not in body:
            body = "link_type: model\n" + body
        uri = backend.uri("repo", ".mlem", "link", f"{name}.mlem")
        backend.write(uri, f"object_type: link\n{body}\n")
    reads.clear()
    results = check(repo, storage_options=so)
    status = {r.uri.rsplit("/", 1)[-1]: r.status for r in results}
    assert status == {
        **{f"a{i}.mlem": "ok" for i in range(10)},
        "out.mlem": "external",
        "dangling.mlem": "dangling",
        "loop.mlem": "cycle",
        "wrong.mlem": "type-mismatch",
    }
    assert {r.uri.rsplit("/", 1)[-1] for r in results if r.broken} == {
        "dangling.mlem",
        "loop.mlem",
        "wrong.mlem",
    }
    assert max(Counter(reads).values()) == 1  # every metafile (and probe) read once
    # The CLI's progress bar: one outcome per metafile (models too), so it ends full.
    found = _bulk.survey(repo, storage_options=so)
    assert len(list(found.outcomes)) == found.total == 15  # 14 links and the model
