"""Issue 5: the `mlemremote` command line, driven in a subprocess against every backend
that outlives a process (the in-process memory filesystem does not)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPORT, Backend

from mlemremote.api import init
from mlemremote.core.objects import MlemModel

CLI_BACKENDS = ["local", "s3-moto", "s3-seaweedfs", "gcs", "azure"]
SCRIPT = str(Path(sys.executable).with_name("mlemremote"))


def flags(backend: Backend) -> list[str]:
    out: list[str] = []

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                add(f"{prefix}.{key}" if prefix else key, inner)
        else:
            out.extend(["-o", f"{prefix}={value}"])

    add("", backend.storage_options or {})
    return out


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("backend", CLI_BACKENDS, indirect=True)
def test_cli_end_to_end(backend: Backend) -> None:
    o = flags(backend)
    repo = backend.uri("repo")
    done = cli("init", repo, *o)
    assert done.returncode == 0, done.stderr
    for name in ("v1", "v2"):
        MlemModel(model_type={"name": name}).dump(
            f"models/{name}", repo=repo, external=True, storage_options=backend.storage_options
        )
    done = cli("link", "models/v1", "latest", "--sr", repo, "--tr", repo, *o)
    assert done.returncode == 0, done.stderr
    assert backend.exists(backend.uri("repo", ".mlem", "link", "latest.mlem"))
    done = cli("link", "latest", "prod", "--sr", repo, "--tr", repo, "--no-follow-links", "-e", *o)
    assert done.returncode == 0, done.stderr

    shown = cli("show", "prod", "--repo", repo, *o)
    assert shown.returncode == 0, shown.stderr
    hops, content = shown.stdout.strip().split("\n\n", 1)
    lines = hops.splitlines()
    assert [line.split()[1] for line in lines] == ["link", "link", "model"]
    assert lines[-1].endswith("/repo/models/v1.mlem")
    assert yaml.safe_load(content) == {"model_type": {"name": "v1"}, "object_type": "model"}
    one = cli("show", "prod", "--repo", repo, "--no-follow", "--json", *o)
    assert [hop["object_type"] for hop in json.loads(one.stdout)] == ["link"]

    listed = json.loads(cli("ls", repo, "--json", *o).stdout)
    names = {row["name"]: row["object_type"] for row in listed}
    assert names == {
        ".mlem/link/latest.mlem": "link",
        "prod.mlem": "link",
        "models/v1.mlem": "model",
        "models/v2.mlem": "model",
        # (not MLEM's index links of the external models: `mlem ls` lists the models)
    }
    assert all(set(row) == set(listed[0]) for row in listed)  # the same keys in every row
    table = cli("ls", repo, *o).stdout.splitlines()
    assert "link     latest    -> models/v1" in table and "link     prod      -> models/v1" in table
    assert table[-1] == "4 entries"

    good = cli("check", repo, *o)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "4 links, 0 broken" in good.stdout  # latest, prod, and the two index links

    def put(name: str, text: str) -> None:
        backend.write(backend.uri("repo", ".mlem", "link", name), text)

    put("dangling.mlem", "object_type: link\nlink_type: model\npath: models/nope.mlem\n")
    put("loop-a.mlem", "object_type: link\nlink_type: model\npath: .mlem/link/loop-b.mlem\n")
    put("loop-b.mlem", "object_type: link\nlink_type: model\npath: .mlem/link/loop-a.mlem\n")
    put("wrong.mlem", "object_type: link\nlink_type: dataset\npath: models/v2.mlem\n")
    put("escape.mlem", "object_type: link\nlink_type: model\npath: ../../../x.mlem\n")
    bad = cli("check", repo, "--json", *o)
    assert bad.returncode == 1, bad.stderr
    status = {Path(r["uri"]).name: r["status"] for r in json.loads(bad.stdout)}
    assert status == {
        "latest.mlem": "ok",
        "prod.mlem": "ok",
        "v1.mlem": "ok",
        "v2.mlem": "ok",
        "dangling.mlem": "dangling",
        "loop-a.mlem": "cycle",
        "loop-b.mlem": "cycle",
        "wrong.mlem": "type-mismatch",
        "escape.mlem": "invalid",
    }
    plain = cli("check", repo, *o)
    assert plain.returncode == 1 and "9 links, 5 broken" in plain.stdout

    missing = cli("show", "nothing", "--repo", repo, *o)
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: ") and len(missing.stderr.strip().splitlines()) == 1
    assert "Traceback" not in missing.stderr
    verbose = cli("show", "nothing", "--repo", repo, "--verbose", *o)
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr


@pytest.mark.backends("local")
def test_external_links_are_listed_not_broken(tmp_path: Path) -> None:
    ours, theirs = str(tmp_path / "ours"), str(tmp_path / "theirs")
    init(ours)
    init(theirs)
    MlemModel().dump("rf", repo=theirs, external=True)
    assert cli("link", "rf", "rf", "--sr", theirs, "--tr", ours).returncode == 0
    done = cli("check", ours, "--json")
    assert done.returncode == 0
    assert [r["status"] for r in json.loads(done.stdout)] == ["external"]


@pytest.mark.backends("local")
def test_bad_storage_option_is_one_clear_line(tmp_path: Path) -> None:
    done = cli("init", str(tmp_path / "r"), "-o", "no-equals-sign")
    assert done.returncode == 2 and "KEY=VALUE" in done.stderr


@pytest.mark.backends("local")
def test_help_loads_no_cloud_sdk_and_is_quick() -> None:
    probe = (
        "import sys, time\nstart = time.perf_counter()\nfrom mlemremote._cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('LOADED', sorted(m for m in ('s3fs', 'gcsfs', 'adlfs', 'pydantic', 'fsspec')"
        " if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "LOADED []"
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        assert cli("--help").returncode == 0
        timings.append(time.perf_counter() - start)
    REPORT["command line"].append(
        f"mlemremote --help: {min(timings) * 1000:.0f} ms (best of 3), "
        "imports no cloud SDK, pydantic or fsspec"
    )


@pytest.mark.parametrize("backend", CLI_BACKENDS, indirect=True)
def test_cli_links_outside_repos_are_full_uris_unless_folder_relative(backend: Backend) -> None:
    o = flags(backend)
    MlemModel().dump(backend.uri("plain", "m"), storage_options=backend.storage_options)
    for name, extra in (("full", []), ("folder", ["--folder-relative"])):
        done = cli("link", backend.uri("plain", "m"), backend.uri("plain", name), *extra, *o)
        assert done.returncode == 0, done.stderr
    full = yaml.safe_load(backend.read(backend.uri("plain", "full.mlem")))["path"]
    assert "://" in full and full.endswith("/plain/m.mlem")
    assert yaml.safe_load(backend.read(backend.uri("plain", "folder.mlem")))["path"] == "./m.mlem"
