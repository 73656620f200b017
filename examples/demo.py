"""The main job on a local folder, no services: `make demo`.

Makes a repo, registers two model versions, points the alias `latest` at the first,
moves it to the second, resolves it, and shows the files written at each step.
Pass a URI (`s3://bucket/demo`, `gs://...`, `az://...`) to run the same on a bucket.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import fsspec

from mlemremote import MlemModel, init, link, load_meta, resolve
from mlemremote.core.errors import ObjectExistsError


def show(uri: str) -> None:
    loc = resolve(uri)
    print(f"    {loc.uri}:")
    for line in loc.fs.cat_file(loc.fullpath).decode().splitlines():
        print(f"      | {line}")


def main(repo: str) -> None:
    print(f"1. init a repo at {repo}")
    init(repo)

    print("2. register two model versions (their metadata; artifacts stay where they are)")
    for version in (1, 2):
        model = MlemModel(
            model_type={"type": "sklearn", "version": version},
            requirements=[{"module": "sklearn", "package_name": "scikit-learn"}],
        )
        model.dump(f"models/rf-v{version}", repo=repo, external=True)
        print(f"    saved {model.loc.uri}")

    print("3. link the alias 'latest' to v1")
    alias = link("models/rf-v1", source_repo=repo, target="latest", target_repo=repo)
    show(alias.loc.uri)

    print("4. move the alias to v2 (only a link may be replaced; models never are)")
    alias = link("models/rf-v2", source_repo=repo, target="latest", target_repo=repo)
    show(alias.loc.uri)

    try:
        link("models/rf-v1", source_repo=repo, target="models/rf-v2", target_repo=repo,
             external=True)  # fmt: skip
    except ObjectExistsError as exc:
        print(f"    refused as it should be: {exc}")

    print("5. resolve it, as a teammate would")
    model = load_meta("latest", repo=repo)
    print(f"    load_meta('latest', repo=...) -> {type(model).__name__} at {model.loc.uri}")
    print(f"    model_type = {model.model_type}")
    raw = load_meta("latest", repo=repo, follow_links=False)
    print(f"    follow_links=False -> {type(raw).__name__}(path={raw.path!r})")

    print("6. the repo is relocatable: copy it and resolve the alias in the copy")
    src = resolve(repo)
    if src.is_local:
        copy = src.fullpath.rstrip("/") + "-copy"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(src.fullpath, copy)
    else:
        copy = src.fullpath.rstrip("/") + "-copy"
        src.fs.copy(src.fullpath, copy, recursive=True)
        copy = src.uri_of(copy)
    moved = load_meta("latest", repo=copy)
    print(f"    load_meta('latest', repo=<copy>) -> {moved.loc.uri}")


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "demo-repo"
    if "://" not in target:
        shutil.rmtree(target, ignore_errors=True)
        shutil.rmtree(target + "-copy", ignore_errors=True)
        target = str(Path(target).resolve())
    elif fsspec.core.url_to_fs(target)[0].exists(target):
        sys.exit(f"{target} exists; name a new folder")
    main(target)
