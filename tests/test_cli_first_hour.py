"""Issue 12: what a new user reaches for on the command line (subprocess, local disk and
S3): --version, completion, help on every option, MLEM's short flags, the repo around the
current folder by default, `show` printing the object, `ls` naming aliases with their
final target, `link --json`, "1 link"."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import Backend
from test_cli import SCRIPT, cli, flags

from mlemremote import MlemModel, init

pytestmark = pytest.mark.backends("local")


def here(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, *args], capture_output=True, text=True, timeout=120, cwd=str(folder)
    )


def test_version_and_completion_are_offered() -> None:
    from mlemremote import __version__

    version = cli("--version")
    assert (version.returncode, version.stdout.strip()) == (0, f"mlemremote {__version__}")
    helped = cli("--help").stdout
    assert "--install-completion" in helped and "--show-completion" in helped


def test_every_option_and_argument_has_help() -> None:
    import typer.main

    from mlemremote._cli import app

    group = typer.main.get_command(app)
    missing = [
        f"{name} {param.name}"
        for name, command in group.commands.items()  # type: ignore[attr-defined]
        for param in command.params
        if not getattr(param, "help", None) and param.name != "help"
    ]
    assert missing == []


def test_mlem_link_lines_carry_over(tmp_path: Path) -> None:
    """`mlem link` spellings: --sr/--tr, -e, --nf (--no-follow-links), --abs (--absolute)."""
    repo = tmp_path / "repo"
    init(str(repo))
    MlemModel().dump("rf", repo=str(repo))
    done = here(tmp_path, "link", "rf", "latest", "--sr", "repo", "--tr", "repo", "--abs")
    assert done.returncode == 0, done.stderr
    written = yaml.safe_load((repo / ".mlem" / "link" / "latest.mlem").read_text())
    assert written["repo"] == f"file://{repo}/"
    done = here(tmp_path, "link", "latest", "alias", "--sr", "repo", "--tr", "repo", "--nf", "-e")
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load((repo / "alias.mlem").read_text())["path"] == ".mlem/link/latest.mlem"


def test_ls_check_and_init_default_to_the_repo_around_the_current_folder(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    assert here(repo, "init").returncode == 0
    assert (repo / ".mlem" / "config.yaml").exists()
    MlemModel().dump("models/rf", repo=str(repo), external=True)
    sub = repo / "models"
    done = here(sub, "link", "models/rf", "latest", "--sr", str(repo), "--tr", str(repo))
    assert done.returncode == 0, done.stderr
    listed = here(sub, "ls")
    assert listed.returncode == 0, listed.stderr
    assert "link     latest    -> models/rf" in listed.stdout.splitlines()
    checked = here(sub, "check")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines()[-1] == "2 links, 0 broken"  # latest, rf's index link
    (repo / ".mlem" / "link" / "models" / "rf.mlem").unlink()
    assert here(sub, "check").stdout.splitlines()[-1] == "1 link, 0 broken"
    outside = here(tmp_path, "ls")
    assert outside.returncode == 2 and outside.stderr.count("\n") == 1
    assert "no repo" in outside.stderr


@pytest.mark.backends("s3-moto")
@pytest.mark.parametrize("backend", ["s3-moto"], indirect=True)
def test_show_prints_the_object_and_link_json_what_was_written(backend: Backend) -> None:
    o = flags(backend)
    repo = backend.uri("repo")
    init(repo, storage_options=backend.storage_options)
    MlemModel(model_type={"v": 1}).dump("rf", repo=repo, storage_options=backend.storage_options)
    made = cli("link", "rf", "latest", "--sr", repo, "--tr", repo, "--json", *o)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout) == {
        "uri": backend.uri("repo", ".mlem", "link", "latest.mlem"),
        "link_type": "model",
        "object_type": "link",
        "path": ".mlem/model/rf.mlem",
    }
    shown = cli("show", "latest", "-r", repo, "--json", *o)
    hops = json.loads(shown.stdout)
    assert hops[-1]["content"] == {"model_type": {"v": 1}, "object_type": "model"}
    text = cli("show", "latest", "-r", repo, *o).stdout
    assert yaml.safe_load(text.split("\n\n", 1)[1]) == {
        "model_type": {"v": 1},
        "object_type": "model",
    }


def test_ls_and_check_refuse_a_file_and_show_revisions(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    init(str(repo))
    MlemModel().dump("rf", repo=str(repo))
    for command in ("ls", "check"):
        done = here(tmp_path, command, str(repo / ".mlem" / "config.yaml"))
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert "is a file, not a folder or prefix" in done.stderr
    from conftest import git

    git(str(repo), "init", "-q", "-b", "main")
    git(str(repo), "add", "-A")
    git(str(repo), "commit", "-qm", "rf")
    made = here(tmp_path, "link", "rf", "pinned", "--sr", "repo", "--tr", "repo", "--pin")
    assert made.returncode == 0, made.stderr
    sha = git(str(repo), "rev-parse", "HEAD")
    assert made.stdout.strip().endswith(f"@ {sha}")
    listed = here(repo, "list").stdout  # (MLEM's name for ls)
    assert f"rf.mlem@{sha}" in listed and "-> rf\n" not in listed
