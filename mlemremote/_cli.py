"""The `mlemremote` command line (typer). The library is imported inside each command, so
that `mlemremote --help` loads neither pydantic nor any cloud SDK."""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import sys
import threading  # (logging imports it: no start-up cost)
import traceback
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from mlemremote._bulk import CheckResult

app = typer.Typer(
    name="mlemremote",
    help="MLEM-compatible links to ML models on local disk, S3, GCS, Azure Blob and git.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help, as click prints it: rendering it with rich takes longer than all the rest
    # of a command's start-up (issue 12: --help as fast as the imports it needs).
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from mlemremote import __version__

        typer.echo(f"mlemremote {__version__}")
        raise typer.Exit(0)


@app.callback(context_settings={"help_option_names": ["-h", "--help"]})
def _main(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Show tracebacks and the SDKs' logs on errors (any command)."
        ),
    ] = False,
) -> None:
    """MLEM-compatible links to ML models on local disk, S3, GCS, Azure Blob and git."""
    ctx.obj = {"verbose": verbose}


def _inherit_verbose(ctx: typer.Context, value: bool) -> bool:
    """A command's `-v`, or the one given before it (`mlemremote -v ls`, as `mlem -v`)."""
    root = ctx.find_root().obj
    return value or bool(isinstance(root, dict) and root.get("verbose"))


@contextlib.contextmanager
def _progress(show: bool, total: int, label: str) -> Iterator[Any]:
    """A progress bar on stderr when it is a terminal; else nothing is drawn."""
    if not show:
        yield _NoBar()
        return
    with typer.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar


class _NoBar:
    def update(self, steps: int) -> None:
        pass


StorageOptions = Annotated[
    list[str] | None,
    typer.Option(
        "--storage-option",
        "-o",
        help="KEY=VALUE passed to the filesystem (repeatable, each KEY once; dotted keys "
        "nest, e.g. client_kwargs.endpoint_url=http://127.0.0.1:9000). VALUE is read as "
        "YAML (true, 5, {a: 1}), except for a secret's KEY (key, secret, token, "
        "connection_string, ...): taken as written unless it starts with '{'.",
    ),
]
Verbose = Annotated[
    bool,
    typer.Option("--verbose", "-v", callback=_inherit_verbose, help="Show tracebacks on errors."),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]
Repo = Annotated[
    str | None,
    typer.Option("--repo", "-r", help="The repo PATH is in (default: found from PATH)."),
]
Rev = Annotated[
    str | None,
    typer.Option(
        "--rev",
        help="A git branch, tag or commit (of a git repository, local or remote), or an "
        "object version of a versioned bucket.",
    ),
]
Message = Annotated[
    str | None,
    typer.Option("--message", "-m", help="Why: recorded with the move in the alias's history."),
]
T = TypeVar("T")


def parse_storage_options(items: list[str] | None) -> dict[str, Any] | None:
    """`["a=1", "client_kwargs.endpoint_url=http://x"]` -> `{"a": 1, "client_kwargs": {...}}`."""
    if not items:
        return None
    from mlemremote import _yaml
    from mlemremote._redact import is_secret_name
    from mlemremote.core.errors import MlemError

    options: dict[str, Any] = {}
    given: dict[str, int] = {}
    for number, item in enumerate(items, 1):
        key, sep, raw = item.partition("=")
        # Values are never echoed: they are often secrets.
        if not sep or not key or "" in key.split("."):
            raise typer.BadParameter(f"storage option {number} is not KEY=VALUE")
        if key in given:
            # The later one would silently win: say which two (by number, not value).
            raise typer.BadParameter(
                f"storage option {key} is given twice (-o number {given[key]} and {number})"
            )
        given[key] = number
        if is_secret_name(key.rsplit(".", 1)[-1]) and not raw.lstrip().startswith("{"):
            # A credential as written: YAML would turn 0123 into 83, `a: b` into a
            # mapping, and refuse one that starts with @, *, % or !.
            value: Any = raw
        else:
            try:
                value = _yaml.load(raw.encode(), f"the value of {key}") if raw else ""
            except MlemError as exc:
                raise typer.BadParameter(str(exc)) from None
        node = options
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise typer.BadParameter(f"storage option {key} conflicts with {part}")
        if isinstance(node.get(last), dict):
            raise typer.BadParameter(f"storage option {key} conflicts with {key}.*")
        if last in node:  # (given inside an earlier mapping: `-o a={b: 1} -o a.b=2`)
            raise typer.BadParameter(f"storage option {key} is given twice")
        node[last] = value
    return options


def _run(verbose: bool, action: Callable[[], T], *, bulk: bool = False) -> T:
    """Run a command in one call scope; any error is one line on stderr and exit code 2
    (with `--verbose`, a traceback first, redacted like every message)."""
    from mlemremote._boundary import scope
    from mlemremote._redact import redact
    from mlemremote.core.errors import MlemError

    if not verbose:  # the SDKs log what they give up on (tracebacks): ours is the one line
        for name in ("gcsfs", "adlfs", "azure", "aiobotocore", "botocore", "s3fs", "fsspec"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        with scope("the command", bulk=bulk):
            return action()
    except MlemError as exc:
        if verbose:
            typer.echo(redact("".join(traceback.format_exception(exc))).rstrip(), err=True)
        typer.echo(f"error: {_one_line(str(exc))}", err=True)
        raise typer.Exit(2) from None


def _one_line(text: str) -> str:
    """An error's text on one line, its control characters escaped (a path read from a
    hostile link may hold terminal escapes)."""
    from mlemremote._redact import printable

    return printable(" ".join(text.split()))


def _shown(text: str, most: int) -> str:
    """Text read from storage (a message, an author), safe on one terminal line: credentials
    masked, every control or format character (new lines, terminal escapes, bidi
    overrides) written as its escape, and cut to `most` characters."""
    from mlemremote._redact import printable, redact

    safe = printable(redact(text))
    return safe if len(safe) <= most else safe[: most - 3] + "..."


@app.command()
def init(
    path: Annotated[str, typer.Argument(help="The folder or URI to make a repo.")] = ".",
    storage_option: StorageOptions = None,
    verbose: Verbose = False,
) -> None:
    """Make PATH (default: the current folder) a repo (create PATH/.mlem/config.yaml);
    does nothing if it is one."""
    from mlemremote.api import init as do_init

    options = parse_storage_options(storage_option)
    _run(verbose, lambda: do_init(path, storage_options=options))
    typer.echo(f"initialised {path}")


@app.command()
def link(
    source: Annotated[str, typer.Argument(help="The object to link to: a path, URI or name.")],
    target: Annotated[str, typer.Argument(help="Where to write the link (the alias).")],
    source_repo: Annotated[
        str | None,
        typer.Option("--source-repo", "--sr", help="The repo SOURCE is in (any backend, or git)."),
    ] = None,
    rev: Rev = None,
    target_repo: Annotated[
        str | None,
        typer.Option(
            "--target-repo", "--tr", help="The repo to write the link in (.mlem/link/TARGET)."
        ),
    ] = None,
    external: Annotated[
        bool,
        typer.Option(
            "--external", "-e", help="In a repo, write TARGET where named, not in .mlem/link/."
        ),
    ] = False,
    follow_links: Annotated[
        bool,
        typer.Option(
            "--follow-links/--no-follow-links",
            "--f/--nf",
            help="If SOURCE is a link, link to what it leads to (default) or to the link itself.",
        ),
    ] = True,
    absolute: Annotated[
        bool,
        typer.Option(
            "--absolute/--relative",
            "--abs/--rel",
            help="Write the full URI, or (default) a repo-relative path within one repo.",
        ),
    ] = False,
    pin: Annotated[
        bool,
        typer.Option("--pin", help="Record the version SOURCE has now (a git commit, ...)."),
    ] = False,
    expected: Annotated[
        str | None,
        typer.Option(
            "--expected",
            help="The alias's token as read earlier (`show TARGET --no-follow --json` prints "
            "it): move it only if it has not changed since.",
        ),
    ] = None,
    json_out: Json = False,
    folder_relative: Annotated[
        bool,
        typer.Option(
            "--folder-relative",
            help="Outside repos, write the path relative to the link's folder "
            "(./m.mlem): movable with it, but MLEM cannot read it.",
        ),
    ] = False,
    message: Message = None,
    storage_option: StorageOptions = None,
    verbose: Verbose = False,
) -> None:
    """Link SOURCE (a path, URI or name in --source-repo) at TARGET, like `mlem link`."""
    from mlemremote.api import link as do_link

    options = parse_storage_options(storage_option)
    made = _run(
        verbose,
        lambda: do_link(
            source,
            source_repo=source_repo,
            rev=rev,
            target=target,
            target_repo=target_repo,
            external=external,
            follow_links=follow_links,
            absolute=absolute,
            folder_relative=folder_relative,
            storage_options=options,
            pin=pin,
            message=message,
            expected=expected,
        ),
    )
    _note_no_history(made.location, "`history` and `rollback` will not know this move")
    if json_out:
        row = {"uri": str(made.location), "token": made.token, **made.to_dict()}
        typer.echo(json.dumps(row, indent=2))
        return
    at = f" @ {made.rev}" if made.rev else ""
    typer.echo(f"{made.location} -> {made.path}" + (f" in {made.repo}" if made.repo else "") + at)


@app.command()
def show(
    path: Annotated[str, typer.Argument(help="A path, URI, or a name in --repo.")],
    repo: Repo = None,
    rev: Rev = None,
    no_follow: Annotated[
        bool, typer.Option("--no-follow", "--nf", help="Show PATH itself, not what it leads to.")
    ] = False,
    storage_option: StorageOptions = None,
    json_out: Json = False,
    explain_config: Annotated[
        bool,
        typer.Option(
            "--explain-config",
            help="Read no object; print the storage options PATH would be opened with "
            "and where each comes from (-o, your remote, the repo's remote, fsspec's "
            "configuration, the SDK's environment), secrets masked. A PATH outside "
            "--repo is taken as a link target read from that repo (whose config is "
            "read for its remotes). Not with --rev or --no-follow.",
        ),
    ] = False,
    verbose: Verbose = False,
) -> None:
    """Show the chain of hops from PATH, each with its URI, then the final object's YAML
    (with --json: each hop's URI and content)."""
    from mlemremote import _links
    from mlemremote.api import load_meta
    from mlemremote.core.objects import build

    options = parse_storage_options(storage_option)
    if explain_config:
        if rev is not None or no_follow:
            flag = "--rev" if rev is not None else "--no-follow"
            typer.echo(
                f"error: --explain-config reads no object: {flag} has no use with it", err=True
            )
            raise typer.Exit(2)
        _explain_config(path, repo, options, json_out, verbose)
        return

    def hops() -> list[Any]:
        first = load_meta(path, repo, rev, follow_links=False, storage_options=options)
        if no_follow:
            return [first]
        return _links.walk_all(first, build)

    chain = _run(verbose, hops)
    rows = [
        {
            "hop": i,
            "object_type": obj.object_type,
            "uri": str(obj.location),
            **_pointer(obj),
            "token": obj.token,
            "content": obj.to_dict(),
        }
        for i, obj in enumerate(chain)
    ]
    if json_out:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    for row in rows:
        points = f"  -> {row['points_to']}" if row.get("points_to") else ""
        typer.echo(f"{row['hop']:>3}  {row['object_type']:<8} {row['uri']}{points}")
    typer.echo("")
    typer.echo(chain[-1].to_yaml().rstrip())


def _explain_config(
    path: str, repo: str | None, options: dict[str, Any] | None, json_out: bool, verbose: bool
) -> None:
    """`show --explain-config`: the options for PATH, the used ones first (most specific
    source first), then those overridden or not used; exit 2 when a call would refuse
    them (a conflict or an unknown option), naming the problem."""
    from mlemremote.api import explain_storage_options

    found = _run(verbose, lambda: explain_storage_options(path, repo, storage_options=options))
    if json_out:
        typer.echo(json.dumps(found.as_dict(), indent=2))
    else:
        typer.echo(f"{found.uri}  ({found.backend}; {found.how})")
        for title, rows in (
            ("used", [r for r in found.rows if r.used]),
            ("not used", [r for r in found.rows if not r.used]),
        ):
            if not rows:
                continue
            typer.echo(f"{title}:")
            width = max(len(r.option) for r in rows)
            values = min(max(len(r.value) for r in rows), 40)
            for row in rows:
                note = f"  ({row.note})" if row.note else ""
                line = f"  {row.option:<{width}}  {row.value:<{values}}  <- {row.source}{note}"
                typer.echo(line)
    if found.problem:
        typer.echo(f"error: {_one_line(found.problem)}", err=True)
        raise typer.Exit(2)


def _pointer(obj: Any) -> dict[str, Any]:
    if obj.object_type != "link":
        return {}
    target = obj.path if obj.repo is None else f"{obj.repo} : {obj.path}"
    return {"points_to": target + (f" @ {obj.rev}" if obj.rev else ""), "link_type": obj.link_type}


class ObjectType(str, enum.Enum):
    """MLEM's `ls -t` choices (and `data`, MLEM's newer name for dataset)."""

    all = "all"
    link = "link"
    model = "model"
    dataset = "dataset"
    data = "data"
    env = "env"
    deployment = "deployment"
    packager = "packager"


@app.command("ls")
def ls(
    repo: Annotated[
        str | None, typer.Argument(help="The repo (default: the one around the current folder).")
    ] = None,
    type_filter: Annotated[
        ObjectType,
        typer.Option("--type", "-t", help="List only objects of this type (as `mlem ls -t`)."),
    ] = ObjectType.all,
    links: Annotated[
        bool,
        typer.Option(
            "--links/--no-links", "+l/-l", help="Include links (default) or leave them out."
        ),
    ] = True,
    rev: Rev = None,
    storage_option: StorageOptions = None,
    json_out: Json = False,
    verbose: Verbose = False,
) -> None:
    """List the aliases and objects in REPO (any backend): each alias by name, with what it
    finally leads to (`latest -> models/rf`); names that cannot reach their metafile are
    marked shadowed or ambiguous, as `check` marks them."""
    from mlemremote import _bulk

    options = parse_storage_options(storage_option)
    tty = sys.stderr.isatty() and not json_out
    entries: list[_bulk.Entry] = []

    def run() -> _bulk.Survey:
        found = _bulk.survey(repo or _repo_here(), rev=rev, storage_options=options, repo_only=True)
        with _progress(tty, found.total, "listing") as bar:
            for _, entry in found.entries:
                entries.append(entry)
                bar.update(1)
        return found

    found = _run(verbose, run, bulk=True)
    kind = type_filter.value
    wanted = {"dataset", "data"} if kind in ("dataset", "data") else {kind}

    def shown(row: dict[str, Any]) -> bool:
        if row["object_type"] == "link" and not links:
            return False
        # As `mlem ls -t model`: an alias to a model is listed with the models.
        return kind == "all" or bool({row["object_type"], row["link_type"]} & wanted)

    rows = [
        row
        for row in (_ls_row(entry, found) for entry in sorted(entries, key=lambda e: e.name))
        if row is not None and shown(row)
    ]
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    width = max((len(r["alias"]) for r in rows), default=4)
    for row in rows:
        if row["target"]:
            detail = f"-> {_shorter(row['target'], row['uri'], row['name'])}"
        elif row["detail"]:
            detail = f"!! {row['status']}: {_one_line(row['detail'])}"
        else:
            detail = ""
        typer.echo(f"{row['object_type']:<8} {row['alias']:<{width}} {detail}".rstrip())
    typer.echo(_count(len(rows), "entry", "entries"))


def _ls_row(entry: Any, found: Any) -> dict[str, Any] | None:
    """One `ls` row, every key always there (None where it has no value): `status` as
    `check` says it (ok, external, shadowed, ambiguous, dangling, cycle, type-mismatch,
    invalid) with its `detail`. None for a metafile that vanished, and for MLEM's index
    link of an external object (`mlem ls` lists the object, not its index link)."""
    from mlemremote._links import is_index_link
    from mlemremote.core.errors import MlemError

    obj = entry.obj
    if obj is None:
        return None
    checked = entry.check_result(found.root, found.repo)
    fine = checked is None or checked.status in ("ok", "external")
    if fine and found.repo and is_index_link(obj, _in_type_folder(entry.name)):
        return None  # (a broken one is listed: it is worth a look)
    row: dict[str, Any] = {
        "name": entry.name,
        "alias": _alias(entry.name),
        "object_type": "invalid" if isinstance(obj, MlemError) else obj.object_type,
        "uri": str(entry.loc),
        "points_to": None,
        "link_type": None,
        "target": None,
        "status": "ok" if checked is None else checked.status,
        "detail": None,
    }
    if not isinstance(obj, MlemError):
        row |= _pointer(obj)
    if fine:
        row["target"] = None if entry.final is None else str(entry.final)
    else:
        row["detail"] = checked.detail
    return row


def _in_type_folder(name: str) -> str:
    """`.mlem/link/models/rf.mlem` -> `models/rf.mlem` (the name it is the index link of)."""
    parts = name.split("/")
    return "/".join(parts[2:]) if len(parts) > 2 and parts[0] == ".mlem" else ""


app.command("list", hidden=True, help="The same as `ls` (MLEM's name for it).")(ls)


def _alias(name: str) -> str:
    """A metafile's name in its repo as MLEM names it: `.mlem/link/latest.mlem` -> `latest`."""
    stem = name[: -len(".mlem")] if name.endswith(".mlem") else name
    parts = stem.split("/")
    return "/".join(parts[2:]) if len(parts) > 2 and parts[0] == ".mlem" else stem


def _shorter(target: str, uri: str, name: str) -> str:
    """`target` relative to the repo of the metafile `uri` (named `name` in it) when it is
    inside that repo, as an alias name; else the whole URI."""
    root = uri[: -len(name)] if uri.endswith(name) else None
    if root and target.startswith(root) and "@" not in target[len(root) :]:
        return _alias(target[len(root) :])
    return target  # (elsewhere, or at a revision: the whole URI, `@rev` included)


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def _repo_here() -> str:
    """The repo around the current folder (it or a folder above it)."""
    import os

    from mlemremote._location import resolve
    from mlemremote.core.errors import MlemRootNotFound

    found = resolve(os.getcwd()).repo
    if found is None:
        raise MlemRootNotFound(
            "the current folder is in no repo (no .mlem/ here or above); name one, or run "
            "`mlemremote init`"
        )
    return found


@app.command()
def check(
    repo_or_prefix: Annotated[
        str | None,
        typer.Argument(help="A repo or prefix (default: the repo around the current folder)."),
    ] = None,
    rev: Rev = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="Reads in flight at most.")
    ] = 32,
    storage_option: StorageOptions = None,
    json_out: Json = False,
    verbose: Verbose = False,
) -> None:
    """Resolve every link under REPO_OR_PREFIX concurrently; exit 1 if any is broken
    (dangling, a cycle, a type mismatch, invalid, or an ambiguous name). Links that leave
    the repo are listed, and objects hidden behind another of the same name (shadowed)."""
    from mlemremote import _bulk

    options = parse_storage_options(storage_option)
    tty = sys.stderr.isatty() and not json_out
    results: list[CheckResult] = []

    def run() -> None:
        found = _bulk.survey(
            repo_or_prefix or _repo_here(),
            rev=rev,
            storage_options=options,
            concurrency=concurrency,
        )
        with _progress(tty, found.total, "checking") as bar:
            for outcome in found.outcomes:
                if outcome is not None:
                    results.append(outcome)
                bar.update(1)

    _run(verbose, run, bulk=True)
    broken = [r for r in results if r.broken]
    if json_out:
        typer.echo(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        for result in results:
            typer.echo(result.line())
        typer.echo(f"{_count(len(results), 'link', 'links')}, {len(broken)} broken")
    raise typer.Exit(1 if broken else 0)


@app.command()
def get(
    path: Annotated[
        str, typer.Argument(help="The alias or object: a path, URI, or a name in --repo.")
    ],
    dest: Annotated[str, typer.Argument(help="The local folder to create with its files.")],
    repo: Repo = None,
    rev: Rev = None,
    force: Annotated[
        bool,
        typer.Option("--force", "-f", help="Replace DEST if it is a folder (in one step)."),
    ] = False,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="Files downloaded at once at most.")
    ] = 8,
    external_artifacts: Annotated[
        bool,
        typer.Option(
            "--external-artifacts",
            help="Read artifacts that are on another filesystem or bucket than the metafile "
            "(where a link could lead).",
        ),
    ] = False,
    storage_option: StorageOptions = None,
    json_out: Json = False,
    verbose: Verbose = False,
) -> None:
    """Copy the artifacts of what PATH leads to (links followed) into the new folder DEST,
    like `dvc get`: every file checked against its size and MD5, beside a copy of the
    metafile (MLEM loads DEST as it is). Nothing is left in DEST on an error."""
    from mlemremote.api import pull

    options = parse_storage_options(storage_option)
    done = _run(
        verbose,
        lambda: pull(
            path,
            dest,
            repo,
            rev,
            overwrite=force,
            concurrency=concurrency,
            progress=sys.stderr.isatty() and not json_out,
            external_artifacts=external_artifacts,
            storage_options=options,
        ),
    )
    if json_out:
        row = {
            "dest": done.dest,
            "source": done.source,
            "metafile": done.metafile,
            "files": done.files,
            "bytes": done.size,
        }
        typer.echo(json.dumps(row, indent=2))
        return
    files = _count(len(done.files), "artifact", "artifacts")
    line = f"{done.source}: {files} ({done.size} bytes) -> {done.dest}"
    typer.echo(_shown(line, sys.maxsize))  # one line: escapes in a name written out


def _target_of(link: Any) -> str | None:
    """What a link points to, as `show` prints it (None for no link: a removal)."""
    return None if link is None else _pointer(link)["points_to"]


@app.command()
def unlink(
    path: Annotated[str, typer.Argument(help="The alias: a path, URI, or a name in --repo.")],
    repo: Repo = None,
    expected: Annotated[
        str | None,
        typer.Option(
            "--expected",
            help="The alias's token as read earlier (`show PATH --no-follow --json` prints "
            "it): remove it only if it has not changed since.",
        ),
    ] = None,
    message: Message = None,
    storage_option: StorageOptions = None,
    json_out: Json = False,
    verbose: Verbose = False,
) -> None:
    """Remove the alias PATH (a link metafile; never a model), recording it in history."""
    from mlemremote.api import unlink as do_unlink

    options = parse_storage_options(storage_option)
    removed = _run(
        verbose,
        lambda: do_unlink(path, repo, expected=expected, storage_options=options, message=message),
    )
    row = {"removed": str(removed.location), "points_to": _target_of(removed)}
    _note_no_history(removed.location, "it cannot be rolled back")
    if json_out:
        typer.echo(json.dumps(row, indent=2))
        return
    typer.echo(f"removed {row['removed']} (it pointed to {row['points_to']})")


def _note_no_history(where: Any, consequence: str) -> None:
    """History lives in a repo's `.mlem/history/` or in a versioned bucket: say so when
    an alias has neither, rather than lose the record silently."""
    from mlemremote._history import keeps_history

    with contextlib.suppress(Exception):  # (only a note: never fails a done command)
        if not keeps_history(where):
            typer.echo(
                f"note: {where} is in no repo and its bucket keeps no versions, so no history "
                f"is kept: {consequence}",
                err=True,
            )


def _history_row(index: int, entry: Any) -> dict[str, Any]:
    return {
        "index": index,
        "time": None if entry.time is None else entry.time.isoformat(),
        "removed": entry.removed,
        "points_to": _target_of(entry.link),
        "link": None if entry.link is None else entry.link.to_dict(),
        "version": entry.version,
        # What --expected compares against; known for the alias as it is now (index 0).
        "token": None if entry.link is None else entry.link.token,
        "recorded": entry.recorded,
        "note": entry.note,
        "author": entry.author,
        "message": entry.message,
    }


@app.command()
def history(
    path: Annotated[str, typer.Argument(help="The alias: a path, URI, or a name in --repo.")],
    repo: Repo = None,
    storage_option: StorageOptions = None,
    json_out: Json = False,
    verbose: Verbose = False,
) -> None:
    """Where the alias PATH pointed over time, newest first (index 0: now)."""
    from mlemremote.api import history as do_history

    options = parse_storage_options(storage_option)
    entries = _run(verbose, lambda: do_history(path, repo, storage_options=options))
    rows = [_history_row(index, entry) for index, entry in enumerate(entries)]
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    authors = [_shown(row["author"] or "-", 40) for row in rows]
    width = max([len("AUTHOR"), *map(len, authors)])
    typer.echo(f"{'#':>3}  {'TIME':<32} {'RECORDED':<8} {'AUTHOR':<{width}} TARGET")
    for row, author in zip(rows, authors, strict=True):
        target = "(removed)" if row["removed"] else _shown(row["points_to"] or "", 400)
        note = f"  ({row['note']})" if row["note"] and not row["removed"] else ""
        why = f'  "{_shown(row["message"], 120)}"' if row["message"] else ""
        recorded = "yes" if row["recorded"] else "no"
        typer.echo(
            f"{row['index']:>3}  {row['time'] or '-':<32} {recorded:<8} {author:<{width}} "
            f"{target}{note}{why}"
        )


@app.command()
def rollback(
    path: Annotated[str, typer.Argument(help="The alias: a path, URI, or a name in --repo.")],
    repo: Repo = None,
    to: Annotated[
        int | None,
        typer.Option(
            "--to",
            min=0,
            help="The index (as `history` prints it) to go back to; default: the newest "
            "earlier target. With --expected, the history you read is the one used.",
        ),
    ] = None,
    expected: Annotated[
        str | None,
        typer.Option(
            "--expected",
            help="The alias's token when you read its history (`history --json` prints it "
            "as entry 0's token): roll back only if it has not moved since.",
        ),
    ] = None,
    message: Message = None,
    storage_option: StorageOptions = None,
    json_out: Json = False,
    verbose: Verbose = False,
) -> None:
    """Move the alias PATH back to an earlier target (compare-and-swap), and print
    where it points now."""
    from mlemremote.api import rollback as do_rollback

    options = parse_storage_options(storage_option)
    now = _run(
        verbose,
        lambda: do_rollback(
            path, repo, to, expected=expected, storage_options=options, message=message
        ),
    )
    row = {
        "uri": str(now.location),
        "points_to": _target_of(now),
        "token": now.token,
        "link": now.to_dict(),
    }
    if json_out:
        typer.echo(json.dumps(row, indent=2))
        return
    typer.echo(f"{row['uri']} -> {row['points_to']}")


@app.command()
def watch(
    path: Annotated[str, typer.Argument(help="The alias: a path, URI, or a name in --repo.")],
    repo: Repo = None,
    rev: Rev = None,
    interval: Annotated[
        float, typer.Option("--interval", min=0.01, help="Seconds between polls (jittered).")
    ] = 5.0,
    max_events: Annotated[
        int | None, typer.Option("--max-events", min=1, help="Stop after this many lines.")
    ] = None,
    storage_option: StorageOptions = None,
    verbose: Verbose = False,
) -> None:
    """Watch the alias PATH: print a JSON line with what it resolves to, then one each time
    that changes (any hop of its chain moved) or it moves to a broken target
    ("status": "broken": the last good object is still what it serves). Storage faults
    are retried and reported on stderr; Ctrl-C stops (exit 0)."""
    from mlemremote.api import watch as do_watch
    from mlemremote.core.errors import MlemError

    options = parse_storage_options(storage_option)
    stop = threading.Event()
    reader_gone = _when_reader_goes(sys.stdout, stop.set)
    events = _run(
        verbose,
        lambda: do_watch(
            path,
            repo,
            rev,
            interval=interval,
            max_events=max_events,
            stop=stop,
            storage_options=options,
        ),
    )
    try:
        for event in events:
            typer.echo(json.dumps(event.as_dict()))
    except KeyboardInterrupt:
        pass
    except MlemError as exc:
        typer.echo(f"error: {_one_line(str(exc))}", err=True)
        raise typer.Exit(2) from None
    finally:
        events.close()
    if reader_gone.is_set():
        raise typer.Exit(141)  # as a shell says SIGPIPE


def _when_reader_goes(stream: Any, then: Callable[[], None]) -> threading.Event:
    """Call `then` once the reader of the pipe `stream` is gone (`watch | head -1`): a
    watch whose alias never moves would otherwise never write again, so never learn it
    (as `tail -f` does, by polling the pipe's write end for POLLERR)."""
    import os
    import select
    import stat

    gone = threading.Event()
    try:
        fd = stream.fileno()
        is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
    except (AttributeError, OSError, ValueError):
        return gone
    if not is_pipe or not hasattr(select, "poll"):
        return gone

    def wait() -> None:
        poller = select.poll()
        poller.register(fd, 0)  # POLLERR and POLLHUP are reported whatever is asked
        while not any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll()):
            pass
        gone.set()
        then()

    threading.Thread(target=wait, name="stdout-reader", daemon=True).start()
    return gone


def main(argv: list[str] | None = None) -> None:
    """The `mlemremote` console script: exit 0 when all went well, 1 only when `check`
    found broken links, 2 for any error (usage errors included), in one line."""
    try:
        code = app(args=argv, prog_name="mlemremote", standalone_mode=False)
    except SystemExit as exc:
        # `mlemremote ls | head`: click ends on a broken pipe with exit 1 (ours for broken
        # links) after wrapping stdout; say it as a shell says SIGPIPE instead.
        if type(sys.stdout).__name__ == "PacifyFlushWrapper":
            sys.exit(141)
        raise exc from None
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(2)
    except typer.TyperException as exc:  # usage errors: a bad option, a missing argument
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help())  # `mlemremote` alone: the help, as `mlem`
            sys.exit(0)
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        typer.echo(f"error: {_one_line(message)} (see --help)", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
