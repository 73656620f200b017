"""One process of the local-disk race test (tests/test_local_races.py).

Usage: python tests/race_worker.py '<json>' with keys role, folder, seed. Roles:

- `mover-plain`, `mover-cas`: move the alias `a` between models `m1` and `m2` with
  `link()` (without / with `expected=`), up to `moves` times a round, stopping at the
  first refusal (a model is there: `ObjectExistsError`);
- `writer-dump`: write a model onto `a.mlem` with `MlemModel(...).dump()`;
- `writer-foreign`: write a model YAML to a temporary file and `os.replace` it onto
  `a.mlem`, as a tool that knows nothing of mlemremote would.

It prints "ready", then for each line "go <round> <delay>" on stdin does one round's work
(a writer first sleeps `delay` seconds, so that it lands among the moves) and prints one
JSON line of counts; "quit" ends it.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import Any

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

from mlemremote.api import link, load_meta
from mlemremote.core.errors import AliasChangedError, ObjectExistsError
from mlemremote.core.objects import MlemLink, MlemModel


def move(folder: str, role: str, moves: int) -> dict[str, Any]:
    counts = {"attempted": 0, "moved": 0, "refused": 0, "conflicts": 0}
    alias = os.path.join(folder, "a")
    for i in range(moves):
        source = os.path.join(folder, f"m{i % 2 + 1}")
        counts["attempted"] += 1
        try:
            if role == "mover-cas":
                current = load_meta(alias, follow_links=False)
                if not isinstance(current, MlemLink):
                    raise ObjectExistsError("a model is at the alias")  # what link() says
                link(source, target=alias, expected=current)
            else:
                link(source, target=alias)
        except ObjectExistsError:
            counts["refused"] += 1
            break  # a model is at the alias: every later move is refused too
        except AliasChangedError:
            counts["conflicts"] += 1
            continue
        counts["moved"] += 1
    return counts


def write_model(folder: str, role: str, round_no: int, delay: float) -> dict[str, Any]:
    time.sleep(delay)
    name = f"{role}-{round_no}"
    target = os.path.join(folder, "a.mlem")
    if role == "writer-dump":
        MlemModel(model_type={"name": name}).dump(os.path.join(folder, "a"))
    else:
        fd, tmp = tempfile.mkstemp(prefix="foreign-", dir=folder)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"object_type: model\nmodel_type:\n  name: {name}\n")
        os.replace(tmp, target)
    return {"wrote": name}


def main() -> None:
    args = json.loads(sys.argv[1])
    role, folder, moves = args["role"], args["folder"], args.get("moves", 0)
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        round_no, delay = int(words[1]), float(words[2])
        if role.startswith("mover"):
            result = move(folder, role, moves)
        else:
            result = write_model(folder, role, round_no, delay)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
