"""Runs inside the peer's environment (MLEM 0.2.0 as mlem==0.1.14, Python 3.9).

One JSON command per line on stdin: {"op": ..., "cwd": ... or null, "args": {...}};
one JSON answer per line on stdout: {"result": ...} or {"error": class, "message": ...}.
Every operation runs in `cwd` (MLEM resolves some paths against its working directory).

MLEM, numpy and scikit-learn are imported inside the operations: this file also has to
import without them (pytest --doctest-modules imports every module under tests/).
"""

import contextlib
import io
import json
import os
import sys

SAMPLE = [[0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [3.0, 1.0]]


def _sample():
    import numpy as np

    return np.array(SAMPLE)


def _where(obj):
    loc = obj.location
    if loc is None:
        return None
    return {"fullpath": loc.fullpath, "uri": loc.uri, "repo": loc.repo, "path": loc.path}


def _describe(obj):
    return {
        "object_type": obj.object_type,
        "location": _where(obj),
        "fields": obj.dict(),
    }


def save_model(path, repo=None, external=None, seed=0):
    """A small real sklearn model; `seed` makes different models predict differently."""
    import mlem.api
    import numpy as np
    from sklearn.linear_model import LinearRegression

    sample = _sample()
    target = sample @ np.array([1.0 + seed, -2.0]) + seed
    model = LinearRegression().fit(sample, target)
    meta = mlem.api.save(model, path, repo=repo, external=external, sample_data=sample)
    return _describe(meta)


def link(**kwargs):
    import mlem.api

    return _describe(mlem.api.link(**kwargs))


def load(path, repo=None, rev=None, follow_links=True):
    from mlem.core.metadata import load_meta

    return _describe(load_meta(path, repo=repo, rev=rev, follow_links=follow_links))


def predict(path, repo=None, rev=None):
    import mlem.api

    model = mlem.api.load(path, repo=repo, rev=rev)
    return [round(float(x), 6) for x in model.predict(_sample())]


def link_yaml(path, repo=None, rev=None, link_type="model"):
    """The bytes MLEM writes for such a link (its own model and dumper), without
    resolving anything: for links MLEM writes to places the tests cannot reach (GitHub)."""
    import yaml
    from mlem.core.objects import MlemLink

    return yaml.safe_dump(MlemLink(path=path, repo=repo, rev=rev, link_type=link_type).dict())


def init(path):
    import mlem.api

    mlem.api.init(path)
    return None


def ls(repo):
    import mlem.api

    found = mlem.api.ls(repo, type_filter=None)
    return {
        kind.object_type: sorted(_where(o)["fullpath"] for o in objects)
        for kind, objects in found.items()
    }


def predict_rows(path, rows, repo=None):
    """Load the model at `path` with MLEM (its artifacts included) and predict `rows`."""
    import mlem.api
    import numpy as np

    model = mlem.api.load(path, repo=repo)
    return [float(x) for x in model.predict(np.array(rows))]


def artifacts(path, repo=None):
    """The artifacts entries MLEM wrote for the object at `path`."""
    from mlem.core.metadata import load_meta

    meta = load_meta(path, repo=repo)
    return {name: art.dict() for name, art in (meta.artifacts or {}).items()}


OPS = {
    f.__name__: f
    for f in (save_model, link, load, predict, link_yaml, init, ls, predict_rows, artifacts)
}


def main():
    import mlem.api  # noqa: F401  (loaded once, before the first command)

    home = os.getcwd()
    for line in sys.stdin:
        cmd = json.loads(line)
        os.chdir(cmd.get("cwd") or home)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # MLEM's emoji messages
                result = OPS[cmd["op"]](**cmd["args"])
            answer = {"result": result}
        except Exception as exc:  # every failure is an answer: the tests compare them
            answer = {"error": type(exc).__name__, "message": str(exc)}
        print(json.dumps(answer, default=str), flush=True)


if __name__ == "__main__":
    main()
