"""Issue 12: what a new user reaches for on the command line (subprocess, local disk and
S3): --version, completion, help on every option, MLEM's short flags, the repo around the
current folder by default, `show` printing the object, `ls` naming aliases with their
final target, `link --json`, "1 link"."""

from __future__ import annotations

import contextlib
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
    written = json.loads(made.stdout)
    assert isinstance(written.pop("token"), str)  # for a later --expected
    assert written == {
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


def test_ls_marks_hidden_names_filters_types_and_shows_progress(tmp_path: Path) -> None:
    """ls says what check says of names that cannot reach their metafile; MLEM's `-t`,
    `+l/-l` and top-level `-v`/`-h`; a progress bar only on a terminal; unlink words
    its refusals as a removal and says when no history is kept."""
    import os
    import pty

    repo = tmp_path / "repo"
    init(str(repo))
    MlemModel().dump("rf", repo=str(repo))
    MlemModel().dump("gb", repo=str(repo))
    assert here(repo, "link", "rf", "latest").returncode == 0
    # `amb` is a model and a link (ambiguous); `gb.mlem` at the root hides .mlem/model/gb.
    (repo / ".mlem" / "link" / "amb.mlem").write_text(
        "object_type: link\nlink_type: model\npath: .mlem/model/rf.mlem\n"
    )
    (repo / ".mlem" / "model" / "amb.mlem").write_text("object_type: model\n")
    (repo / "gb.mlem").write_text("object_type: model\n")
    rows = {r["name"]: r for r in json.loads(here(repo, "-v", "ls", "+l", "--json").stdout)}
    assert rows[".mlem/link/amb.mlem"]["status"] == "ambiguous"
    assert rows[".mlem/model/gb.mlem"]["status"] == "shadowed"
    assert rows[".mlem/link/latest.mlem"]["status"] == "ok"
    table = here(repo, "ls").stdout.splitlines()
    assert any(line.split()[:3] == ["link", "amb", "!!"] and "ambiguous" in line for line in table)
    models = here(repo, "ls", "-t", "model").stdout.splitlines()  # aliases to models too
    assert models[-1] == "6 entries" and any(x.split()[:2] == ["link", "latest"] for x in models)
    assert here(repo, "ls", "--type", "dataset").stdout.splitlines() == ["0 entries"]
    whole = here(repo / ".mlem", "ls", "model").stdout  # a folder in the repo: the whole repo
    assert "link     latest -> rf" in whole and "6 entries" in whole
    verbose = here(repo, "-v", "show", "nothing")  # -v before the command, as `mlem -v`
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr
    bare = cli()
    assert bare.returncode == 0 and bare.stdout.startswith("Usage: mlemremote")
    reader = subprocess.Popen(
        [SCRIPT, "ls"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=repo
    )
    assert reader.stdout is not None and reader.stderr is not None
    reader.stdout.close()  # a reader that stops reading (`| head`)
    assert (reader.wait(timeout=60), reader.stderr.read()) == (141, b"")
    assert not [x for x in here(repo, "ls", "-l").stdout.splitlines() if x.startswith("link")]
    assert "Usage: mlemremote ls" in here(repo, "ls", "-h").stdout

    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [SCRIPT, "ls"], stdout=subprocess.PIPE, stderr=follower, cwd=str(repo), timeout=60
        )
        os.close(follower)
        drawn = b""
        with contextlib.suppress(OSError):
            while chunk := os.read(leader, 4096):
                drawn += chunk
    finally:
        os.close(leader)
    assert done.returncode == 0 and b"listing" in drawn
    assert "listing" not in here(repo, "ls").stderr  # not on a pipe

    ambiguous = here(repo, "unlink", "amb")
    assert ambiguous.returncode == 2 and "is ambiguous" in ambiguous.stderr
    assert "would" not in ambiguous.stderr and "()" not in ambiguous.stderr
    hidden = here(repo, "unlink", "gb")
    assert hidden.returncode == 2 and "not a link" in hidden.stderr
    model = here(repo, "unlink", "rf")  # a model's name, no alias of that name
    assert model.returncode == 2 and "not a link" in model.stderr and "ambig" not in model.stderr
    by_uri = here(repo, "unlink", (repo / ".mlem" / "link" / "amb.mlem").as_uri())
    assert by_uri.returncode == 0, by_uri.stderr
    assert (repo / ".mlem" / "model" / "amb.mlem").exists()

    outside = tmp_path / "plain"
    MlemModel().dump(str(outside / "m"))
    assert here(outside, "link", "m.mlem", "alias.mlem").stderr.startswith("note: ")
    gone = here(outside, "unlink", "alias.mlem")
    assert gone.returncode == 0 and "no history is kept" in gone.stderr
