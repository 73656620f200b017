"""Issue 13, part 1, with the real MLEM 0.2.0 (tests/mlem_peer.py): what `pull` copies is
what MLEM loads.

- The scikit-learn models of `tests/data/mlem-0.2.0-artifacts` (saved by MLEM on local
  disk: `local` artifacts, relative URIs), pulled through their aliases, predict in MLEM
  exactly what the original models predicted.
- MLEM saves a model on S3 (moto) itself: it writes an `fsspec` artifact, the object's
  full `s3://` URI. `pull` reads it there, and MLEM loads the pulled folder and predicts
  what it predicts from the bucket.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from conftest import make_backend
from mlem_peer import Peer, missing_reason, peer_env
from services import S3_KEY, S3_SECRET, Endpoints, s3_server_names

from mlemremote.api import open_artifact, pull

SKIP_REASON = missing_reason()
pytestmark = pytest.mark.skipif(SKIP_REASON is not None, reason=f"MLEM peer: {SKIP_REASON}")
FIXTURE = Path(__file__).resolve().parent / "data" / "mlem-0.2.0-artifacts"
S3_SERVER = "moto" if "moto" in s3_server_names() else s3_server_names()[0]


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    started = Peer(peer_env())
    try:
        yield started
    finally:
        started.close()


EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


def rows() -> list[list[float]]:
    return list(EXPECTED["rows"])  # rows of the sample the fixture's models were fit on


@pytest.mark.backends("local")
def test_pulled_mlem_models_predict_in_mlem(peer: Peer, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURE / "repo", repo)
    expected = [float(x) for x in EXPECTED["forest"]]
    forest = pull("prod", str(tmp_path / "forest"), repo=str(repo))
    assert peer("predict_rows", path=str(tmp_path / "forest" / "forest"), rows=rows()) == expected
    assert (
        peer("artifacts", path=forest.metafile)["data"]["hash"]
        == (peer("artifacts", path="forest", repo=str(repo))["data"]["hash"])
    )
    clf = pull("latest", str(tmp_path / "clf"), repo=str(repo))
    assert peer("predict_rows", path=clf.metafile, rows=rows()) == peer(
        "predict_rows", path="models/clf", repo=str(repo), rows=rows()
    )
    # The original folder can go: the pulled one stands on its own.
    shutil.rmtree(repo)
    assert peer("predict_rows", path=str(tmp_path / "forest" / "forest"), rows=rows()) == expected


@pytest.mark.backends("s3")
def test_a_model_mlem_saved_on_s3(endpoints: Endpoints, tmp_path: Path) -> None:
    bucket = make_backend(f"s3-{S3_SERVER}", endpoints, tmp_path)
    s3_peer = Peer(peer_env(endpoints.s3[S3_SERVER], S3_KEY, S3_SECRET))
    try:
        repo = bucket.uri("repo")
        s3_peer("init", path=repo)
        s3_peer("save_model", path="models/rf", repo=repo, external=True, seed=5)
        written = s3_peer("artifacts", path="models/rf", repo=repo)
        ((name, art),) = written.items()
        assert art["type"] == "fsspec" and art["uri"] == f"{repo}/models/rf"  # MLEM's form
        pulled = pull(
            "models/rf", str(tmp_path / "rf"), repo=repo, storage_options=bucket.storage_options
        )
        original = bucket.read(f"{repo}/models/rf")
        assert Path(pulled.files[name]).read_bytes() == original
        with open_artifact("models/rf", repo=repo, storage_options=bucket.storage_options) as f:
            assert f.read() == original
        sample = [[0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [3.0, 1.0]]
        from_s3 = s3_peer("predict_rows", path="models/rf", repo=repo, rows=sample)
        assert s3_peer("predict_rows", path=pulled.metafile, rows=sample) == from_s3
        # Copied to another bucket, the metafile still names the first one: refused.
        fs = fsspec.filesystem("s3", **bucket.storage_options)
        other = make_backend(f"s3-{S3_SERVER}", endpoints, tmp_path / "other")
        fs.copy(f"{bucket.fspath(repo)}/models/rf.mlem", f"{other.fspath(other.root)}/rf.mlem")
        from mlemremote.core.errors import InvalidArtifactError

        with pytest.raises(InvalidArtifactError, match="another filesystem or bucket"):
            pull(other.uri("rf"), str(tmp_path / "moved"), storage_options=bucket.storage_options)
        assert not os.path.exists(tmp_path / "moved")
    finally:
        s3_peer.close()
