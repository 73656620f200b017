"""The `mlemremote` command line (typer). The library is imported inside each command, so
that `mlemremote --help` loads neither pydantic nor any cloud SDK."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from mlemremote._bulk import CheckResult

app = typer.Typer(
    name="mlemremote",
    help="MLEM-compatible links to ML models on local disk, S3, GCS and Azure Blob.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

StorageOptions = Annotated[
    list[str] | None,
    typer.Option(
        "--storage-option",
        "-o",
        help="KEY=VALUE passed to the filesystem (repeatable; dotted keys nest, e.g. "
        "client_kwargs.endpoint_url=http://127.0.0.1:9000).",
    ),
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks on errors.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]
Rev = Annotated[
    str | None,
    typer.Option(
        "--rev",
        help="A git branch, tag or commit (of a git repository, local or remote), or an "
        "object version of a versioned bucket.",
    ),
]
T = TypeVar("T")


def parse_storage_options(items: list[str] | None) -> dict[str, Any] | None:
    """`["a=1", "client_kwargs.endpoint_url=http://x"]` -> `{"a": 1, "client_kwargs": {...}}`."""
    if not items:
        return None
    from mlemremote import _yaml
    from mlemremote.core.errors import MlemError

    options: dict[str, Any] = {}
    for number, item in enumerate(items, 1):
        key, sep, raw = item.partition("=")
        # Values are never echoed: they are often secrets.
        if not sep or not key or "" in key.split("."):
            raise typer.BadParameter(f"storage option {number} is not KEY=VALUE")
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
    return " ".join(text.split())


@app.command()
def init(path: str, storage_option: StorageOptions = None, verbose: Verbose = False) -> None:
    """Make PATH a repo (create PATH/.mlem/config.yaml); does nothing if it is one."""
    from mlemremote.api import init as do_init

    options = parse_storage_options(storage_option)
    _run(verbose, lambda: do_init(path, storage_options=options))
    typer.echo(f"initialised {path}")


@app.command()
def link(
    source: str,
    target: str,
    source_repo: Annotated[str | None, typer.Option("--source-repo", "--sr")] = None,
    rev: Rev = None,
    target_repo: Annotated[str | None, typer.Option("--target-repo", "--tr")] = None,
    external: Annotated[bool, typer.Option("--external", "-e")] = False,
    follow_links: Annotated[bool, typer.Option("--follow-links/--no-follow-links")] = True,
    absolute: Annotated[bool, typer.Option("--absolute/--relative")] = False,
    folder_relative: Annotated[
        bool,
        typer.Option(
            "--folder-relative",
            help="Outside repos, write the path relative to the link's folder "
            "(./m.mlem): movable with it, but MLEM cannot read it.",
        ),
    ] = False,
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
        ),
    )
    typer.echo(f"{made.location} -> {made.path}" + (f" in {made.repo}" if made.repo else ""))


@app.command()
def show(
    path: str,
    repo: Annotated[str | None, typer.Option("--repo")] = None,
    rev: Rev = None,
    no_follow: Annotated[bool, typer.Option("--no-follow")] = False,
    storage_option: StorageOptions = None,
    json_out: Json = False,
    verbose: Verbose = False,
) -> None:
    """Show the chain of hops from PATH, each with its URI, and the final object."""
    from mlemremote import _links
    from mlemremote.api import load_meta
    from mlemremote.core.objects import build

    options = parse_storage_options(storage_option)

    def hops() -> list[Any]:
        first = load_meta(path, repo, rev, follow_links=False, storage_options=options)
        if no_follow:
            return [first]
        return _links.walk_all(first, build)

    chain = _run(verbose, hops)
    rows = [
        {"hop": i, "object_type": obj.object_type, "uri": str(obj.location), **_pointer(obj)}
        for i, obj in enumerate(chain)
    ]
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        points = f"  -> {row['points_to']}" if row.get("points_to") else ""
        typer.echo(f"{row['hop']:>3}  {row['object_type']:<8} {row['uri']}{points}")


def _pointer(obj: Any) -> dict[str, Any]:
    if obj.object_type != "link":
        return {}
    target = obj.path if obj.repo is None else f"{obj.repo} : {obj.path}"
    return {"points_to": target + (f" @ {obj.rev}" if obj.rev else ""), "link_type": obj.link_type}


@app.command("ls")
def ls(
    repo: str,
    rev: Rev = None,
    storage_option: StorageOptions = None,
    json_out: Json = False,
    verbose: Verbose = False,
) -> None:
    """List the links and objects in REPO (any backend)."""
    from mlemremote import _bulk
    from mlemremote.core.errors import MlemError

    options = parse_storage_options(storage_option)

    def run() -> list[tuple[str, Any]]:
        return _bulk.list_repo(repo, rev=rev, storage_options=options)

    entries = _run(verbose, run, bulk=True)
    rows = [
        {"name": name, "object_type": "invalid", "error": str(obj)}
        if isinstance(obj, MlemError)
        else {
            "name": name,
            "object_type": obj.object_type,
            "uri": str(obj.location),
            **_pointer(obj),
        }
        for name, obj in entries
    ]
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    width = max((len(r["name"]) for r in rows), default=4)
    typer.echo(f"{'TYPE':<8} {'NAME':<{width}} POINTS TO")
    for row in rows:
        detail = row.get("points_to") or row.get("error") or ""
        typer.echo(f"{row['object_type']:<8} {row['name']:<{width}} {detail}")


@app.command()
def check(
    repo_or_prefix: str,
    rev: Rev = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1)] = 32,
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
        found = _bulk.check_links(
            repo_or_prefix, rev=rev, storage_options=options, concurrency=concurrency
        )
        if not tty:
            results.extend(found.results)
            return
        with typer.progressbar(length=found.total, label="checking", file=sys.stderr) as bar:
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
        typer.echo(f"{len(results)} links, {len(broken)} broken")
    raise typer.Exit(1 if broken else 0)


def main(argv: list[str] | None = None) -> None:
    """The `mlemremote` console script: exit 0 when all went well, 1 only when `check`
    found broken links, 2 for any error (usage errors included), in one line."""
    try:
        code = app(args=argv, prog_name="mlemremote", standalone_mode=False)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(2)
    except typer.TyperException as exc:  # usage errors: a bad option, a missing argument
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        typer.echo(f"error: {_one_line(message)} (see --help)", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
