"""Runs inside the peer's virtual environment (MLEM 0.2.0 as mlem==0.1.14, Python 3.9).

Reads one JSON command per line on stdin, answers one JSON line on stdout:
{"op": "load", "path": ..., "repo": ...} -> {"seconds": t}
{"op": "link", "source": ..., "source_repo": ..., "target": ..., "target_repo": ...}
{"op": "load_all", "paths": [...]} -> {"seconds": t} (sequentially, one by one)
The S3 endpoint and keys come from fsspec's own configuration (FSSPEC_CONFIG_DIR).
"""

import json
import sys
import time

from mlem.api import link, load_meta


def main():
    for line in sys.stdin:
        cmd = json.loads(line)
        start = time.perf_counter()
        if cmd["op"] == "load":
            load_meta(cmd["path"], repo=cmd.get("repo"))
        elif cmd["op"] == "link":
            link(
                cmd["source"],
                source_repo=cmd.get("source_repo"),
                target=cmd["target"],
                target_repo=cmd.get("target_repo"),
            )
        elif cmd["op"] == "load_all":
            for path in cmd["paths"]:
                load_meta(path)
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


if __name__ == "__main__":
    main()
