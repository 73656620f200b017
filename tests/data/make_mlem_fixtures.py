"""Write metafiles with the real MLEM 0.2.0 (installed as mlem==0.1.14, same code).

Run with the peer's Python (`.venv-peer`, see ../shared/peer/): it writes
`tests/data/mlem-0.2.0/`, which the suite copies onto every backend and loads.
Only metafiles are kept; artifacts stay out of the repo.
"""

import os
import shutil
import sys

import numpy
from mlem.api import init, link, save

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mlem-0.2.0")


def predict(x):
    return x + 1


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    os.chdir(OUT)
    init("repo")
    save(predict, "models/rf", repo="repo", sample_data=1, external=True)
    save(predict, "rf-internal", repo="repo", sample_data=1)
    save(numpy.array([1.0, 2.0, 3.0]), "data/numbers", repo="repo", external=True)
    link("models/rf", source_repo="repo", target="latest", target_repo="repo")
    link("models/rf", source_repo="repo", target="latest-ext", target_repo="repo", external=True)
    link("rf-internal", source_repo="repo", target="internal", target_repo="repo")
    link("latest", source_repo="repo", target="chained", target_repo="repo", follow_links=False)
    link("data/numbers", source_repo="repo", target="numbers", target_repo="repo")
    for folder, _, files in os.walk(OUT):
        for name in files:
            if not name.endswith((".mlem", ".yaml")):
                os.remove(os.path.join(folder, name))
    for folder, _, files in sorted(os.walk(OUT)):
        for name in sorted(files):
            path = os.path.join(folder, name)
            print(f"--- {os.path.relpath(path, OUT)}")
            with open(path) as handle:
                sys.stdout.write(handle.read())


if __name__ == "__main__":
    main()
