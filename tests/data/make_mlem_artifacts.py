"""Save real scikit-learn models (and a dataset) with MLEM 0.2.0, artifacts included.

Run with the peer's Python (`benchmarks/.peer-venv/bin/python`, see tests/mlem_peer.py):
it writes `tests/data/mlem-0.2.0-artifacts/`, which the artifact tests copy onto every
backend and pull byte for byte. Unlike `make_mlem_fixtures.py`, the artifacts (the
pickled models, the saved array) are kept: they are what is under test.
"""

import json
import os
import shutil
import sys

import numpy
from mlem.api import init, link, save
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mlem-0.2.0-artifacts")


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    os.chdir(OUT)
    rng = numpy.random.RandomState(0)
    features = rng.rand(60, 4)
    labels = (features[:, 0] + features[:, 1] > 1).astype(int)
    init("repo")
    clf = LogisticRegression().fit(features, labels)
    forest = RandomForestClassifier(n_estimators=8, random_state=0).fit(features, labels)
    save(clf, "models/clf", repo="repo", sample_data=features, external=True)
    save(forest, "forest", repo="repo", sample_data=features)
    save(features[:5], "data/sample", repo="repo", external=True)
    link("models/clf", source_repo="repo", target="latest", target_repo="repo")
    link("forest", source_repo="repo", target="prod", target_repo="repo")
    expected = {"rows": features[:5].tolist(), "forest": forest.predict(features[:5]).tolist()}
    with open(os.path.join(OUT, "expected.json"), "w") as handle:
        json.dump(expected, handle, indent=1)
    for folder, _, files in sorted(os.walk(OUT)):
        for name in sorted(files):
            path = os.path.join(folder, name)
            print(f"{os.path.relpath(path, OUT)}: {os.path.getsize(path)} bytes")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
