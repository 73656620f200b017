"""Issue 13, part 3: every move records who made it and, when given, why.

Through the API on every backend, with versions where the backend keeps them (there the
link's own comment lines carry the author; a removal's come from the log); through the
CLI on local disk; and the setting's checks. That the real MLEM 0.2.0 still loads such
links, and reaches the same model: tests/test_mlem_interop.py (every link written there
carries an author; one, a hostile message).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import Backend

from mlemremote import _history
from mlemremote._cli import main
from mlemremote.api import (
    configure,
    configured,
    history,
    init,
    link,
    load_meta,
    rollback,
    unlink,
)
from mlemremote.core.errors import InvalidArgumentError, SettingsError
from mlemremote.core.objects import MlemModel


def repo_with_two_models(b: Backend) -> str:
    """A repo holding models v1 and v2, written directly (one PUT each)."""
    b.write(b.uri("repo", ".mlem", "config.yaml"), "")
    for name in ("v1", "v2"):
        b.write(b.uri("repo", f"{name}.mlem"), f"object_type: model\nmodel_type: {{v: {name}}}\n")
    return b.uri("repo")


def test_moves_record_author_and_message(versioned_backend: Backend) -> None:
    b = versioned_backend
    so = {"storage_options": b.storage_options}
    repo = repo_with_two_models(b)
    with configured(author="alice@ci"):
        link("v1", source_repo=repo, target="latest", target_repo=repo, message="first", **so)
        link("v2", source_repo=repo, target="latest", target_repo=repo, **so)
        unlink("latest", repo=repo, message="retire\nfor now", **so)
        rollback("latest", repo=repo, message="bring it back", **so)
    link("v1", source_repo=repo, target="latest", target_repo=repo, **so)  # the default
    me = _history.default_author()
    assert "@" in me
    entries = history("latest", repo=repo, **so)
    assert [(e.removed, e.author, e.message) for e in entries] == [
        (False, me, None),
        (False, "alice@ci", "bring it back"),
        (True, "alice@ci", "retire\nfor now"),
        (False, "alice@ci", None),
        (False, "alice@ci", "first"),
    ]
    # The link itself stays MLEM's YAML: who and why are comments.
    written = b.read(b.uri("repo", ".mlem", "link", "latest.mlem"))
    assert yaml.safe_load(written) == {
        "object_type": "link",
        "link_type": "model",
        "path": "v1.mlem",
    }
    assert f"# mlemremote author: {json.dumps(me)}\n".encode() in written


def test_an_author_is_never_taken_from_bytes_edited_or_copied_by_hand(
    versioned_backend: Backend,
) -> None:
    """A link's comment lines are sealed to its bytes and its name: a hand edit that
    keeps them (sed, an editor), or a copy to another alias (`aws s3 cp`), is a move
    nobody is recorded to have made, never one by the first link's author."""
    b = versioned_backend
    so = {"storage_options": b.storage_options}
    repo = repo_with_two_models(b)
    with configured(author="alice@ci"):
        link("v1", source_repo=repo, target="latest", target_repo=repo, message="first", **so)
    at = b.uri("repo", ".mlem", "link", "latest.mlem")
    data = b.read(at)
    b.write(at, data.replace(b"v1.mlem", b"v2.mlem"))  # by hand, the comments kept
    b.write(b.uri("repo", ".mlem", "link", "staging.mlem"), data)  # a copy
    edited = history("latest", repo=repo, **so)
    assert [(e.link.path if e.link else None, e.author, e.message) for e in edited] == [
        ("v2.mlem", None, None),
        ("v1.mlem", "alice@ci", "first"),
    ]
    (copied,) = history("staging", repo=repo, **so)
    assert copied.link is not None and copied.link.path == "v1.mlem"
    assert (copied.author, copied.message) == (None, None)


def test_an_old_version_copied_back_by_hand_names_no_author(versioned_backend: Backend) -> None:
    """(rev3) A version's bytes copied back over the alias (`aws s3 cp --version-id`, a
    restore by hand) keep a seal that matches (same name, same bytes): that copy is a
    move nobody is recorded to have made, never a second one by the first writer. Each
    write has its own id, so only the oldest version holding an id names its author."""
    b = versioned_backend
    so = {"storage_options": b.storage_options}
    repo = repo_with_two_models(b)
    at = b.uri("repo", ".mlem", "link", "latest.mlem")
    with configured(author="alice@ci"):
        link("v1", source_repo=repo, target="latest", target_repo=repo, message="first", **so)
    first = b.read(at)
    with configured(author="bob@ci"):
        link("v2", source_repo=repo, target="latest", target_repo=repo, message="second", **so)
    b.write(at, first)  # the old version restored by hand
    entries = history("latest", repo=repo, **so)
    assert [(e.link.path if e.link else None, e.author, e.message) for e in entries] == [
        ("v1.mlem", None, None),
        ("v2.mlem", "bob@ci", "second"),
        ("v1.mlem", "alice@ci", "first"),
    ]


def test_a_link_copied_to_the_same_name_in_another_repo_names_no_author(
    versioned_backend: Backend,
) -> None:
    """(rev3) `aws s3 cp s3://b/team-a/.mlem/link/prod.mlem s3://b/team-b/...`: the same
    path in its repo, so a seal over that path matched, and team-b's history showed a
    move by alice with her message, at the time of the copy. The seal binds the file's
    full path: a copy anywhere else names no author."""
    b = versioned_backend
    so = {"storage_options": b.storage_options}
    for team in ("a", "b"):
        b.write(b.uri(team, ".mlem", "config.yaml"), "")
        b.write(b.uri(team, "v1.mlem"), "object_type: model\nmodel_type: {v: v1}\n")
    repo_a, repo_b = b.uri("a"), b.uri("b")
    with configured(author="alice@ci"):
        link("v1", source_repo=repo_a, target="prod", target_repo=repo_a, message="first", **so)
    written = b.read(b.uri("a", ".mlem", "link", "prod.mlem"))
    b.write(b.uri("b", ".mlem", "link", "prod.mlem"), written)  # aws s3 cp
    (ours,) = history("prod", repo=repo_a, **so)
    assert (ours.author, ours.message) == ("alice@ci", "first")
    (copied,) = history("prod", repo=repo_b, **so)
    assert copied.link is not None and copied.link.path == "v1.mlem"
    assert (copied.author, copied.message) == (None, None)


def test_history_entries_without_an_author_still_read(tmp_path: Path) -> None:
    """Entries written before authors were recorded: shown with author None."""
    repo = str(tmp_path / "repo")
    init(repo)
    MlemModel().dump("v1", repo=repo, external=True)
    link("v1", source_repo=repo, target="latest", target_repo=repo, message="why")
    (entry,) = (tmp_path / "repo" / ".mlem" / "history" / "link" / "latest.mlem").iterdir()
    old = yaml.safe_load(entry.read_text())
    del old["author"], old["message"]
    entry.write_text(yaml.safe_dump(old))
    (only,) = history("latest", repo=repo)
    assert only.recorded and only.author is None and only.message is None


def test_author_and_message_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for bad in ("eve\x1b[2J", "a\nb", "x" * 201, "https://eve:hunter2@host", "\u202eevil",
                "AKIAIOSFODNN7EXAMPLE@ci"):  # fmt: skip
        with pytest.raises(SettingsError):
            configure(author=bad)
    assert _history.author_now() == _history.default_author()
    repo = str(tmp_path / "repo")
    init(repo)
    MlemModel().dump("v1", repo=repo, external=True)
    # (~/.aws/credentials' form and token shapes were stored in the history for good.)
    aws = "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    github = "ghp_" + "a1B2" * 9
    for message in ("\x1b]0;pwned\x07", "password=hunter2", "a" * 2001, 7, aws, github):
        with pytest.raises(InvalidArgumentError):
            link("v1", source_repo=repo, target="l", target_repo=repo, message=message)  # type: ignore[arg-type]
    assert not (tmp_path / "repo" / ".mlem" / "link" / "l.mlem").exists()  # nothing written
    # A message that makes the link larger than every read accepts (escaped: 12 bytes an
    # emoji) was written, and the alias could no longer be loaded.
    link("v1", source_repo=repo, target="l", target_repo=repo)
    with configured(max_metafile_bytes=16384), pytest.raises(InvalidArgumentError):
        link("v1", source_repo=repo, target="l", target_repo=repo, message="\U0001f600" * 2000)
    assert load_meta("l", repo=repo).object_type == "model"
    # The environment names the author too (as the CLI's processes see it); a bad one is
    # ignored, with a warning, and only it.
    from mlemremote import _settings

    monkeypatch.setenv("MLEMREMOTE_AUTHOR", "ci-bot@runner")
    assert _settings._from_env().author == "ci-bot@runner"
    monkeypatch.setenv("MLEMREMOTE_AUTHOR", "https://eve:hunter2@host")
    monkeypatch.setenv("MLEMREMOTE_RETRY_ATTEMPTS", "3")
    with caplog.at_level("WARNING", logger="mlemremote"):
        from_env = _settings._from_env()
    assert (from_env.author, from_env.retry_attempts) == ("", 3)
    assert "MLEMREMOTE_AUTHOR is ignored" in caplog.text and "hunter2" not in caplog.text


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The command line, in this process (its wiring; test_cli runs it as a process)."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def test_cli_message_and_history_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = str(tmp_path / "repo")
    init(repo)
    for name in ("v1", "v2"):
        MlemModel().dump(name, repo=repo, external=True)
    steps = [
        ("link", "v1", "latest", "--sr", repo, "--tr", repo, "-m", "first"),
        ("link", "v2", "latest", "--sr", repo, "--tr", repo, "--message", "two\nlines"),
        ("unlink", "latest", "-r", repo, "-m", "retire"),
        ("rollback", "latest", "-r", repo, "-m", "back again"),
    ]
    with configured(author="bob@ci"):
        for step in steps:
            code, _, err = cli(capsys, *step)
            assert code == 0, err
        code, _, err = cli(
            capsys, "link", "v1", "latest", "--sr", repo, "--tr", repo, "-m", "\x1b[31m"
        )
        assert code == 2 and "message" in err

    code, out, _ = cli(capsys, "history", "latest", "-r", repo, "--json")
    assert [(r["author"], r["message"]) for r in json.loads(out)] == [
        ("bob@ci", "back again"),
        ("bob@ci", "retire"),
        ("bob@ci", "two\nlines"),
        ("bob@ci", "first"),
    ]
    # An entry another tool wrote (or planted) with terminal escapes and a bidi override.
    folder = tmp_path / "repo" / ".mlem" / "history" / "link" / "latest.mlem"
    oldest = sorted(folder.iterdir())[0]
    planted = yaml.safe_load(oldest.read_text())
    planted["author"] = "eve\x1b[2J\u202e@x"
    oldest.write_text(yaml.safe_dump(planted))
    code, out, _ = cli(capsys, "history", "latest", "-r", repo)
    assert "\x1b" not in out and "\u202e" not in out
    assert "eve\\x1b[2J\\u202e@x" in out
    table = out.splitlines()
    assert "AUTHOR" in table[0] and len(table) == 5  # one line per entry, whatever it says
    assert "bob@ci" in table[1] and '"back again"' in table[1]
    assert '"two\\nlines"' in table[3]
