"""Where an alias pointed over time, and how that record is kept honest.

Where the bucket keeps object versions (versioned S3 and GCS buckets), they are the
history: every write of the alias, by whoever, is a version. Elsewhere each move appends
one entry to `<repo>/.mlem/history/<alias>/`, written once and never rewritten, *after*
the alias itself. An entry names the alias's token after the move (`token`), the one it
replaced (`previous`), and what that replaced link said (`replaced`). A removal
(`unlink`) is an entry too: `removed: true`, no `link`, and the removed link's token and
content as `previous` and `replaced`. On a versioned S3 bucket a removal is the delete
marker it left; on a versioned GCS bucket the alias's absence is shown as a removal.

Writers can be killed between the two writes, the log write can fail, and other tools
(MLEM, `aws s3 cp`) move aliases without writing any log. So the log is never trusted to
be complete: `history_of` starts from the alias as it is now and walks back through the
entries by their tokens (not their clocks). When the current alias is not in the log, it
comes first anyway, marked `recorded=False`; a state that only a later entry remembers
(`replaced`) appears the same way. Entries are untrusted input: parsed like metafiles
(safe loader without aliases, size cap) and skipped with a warning when bad, when dated
in the future, when two of them say different things of one write, or when one
contradicts the alias or the `replaced` record of the move after it.

Every move records who made it (the `author` setting, by default `user@host`) and, when
given, why (`message`): in its log entry, and as YAML comment lines in the link itself
(`# mlemremote author: "..."`, ignored by every reader, MLEM included), so that on a
versioned bucket each version carries its own. A removal on a versioned bucket (a delete
marker, or the alias's absence) cannot carry them: there, in a repo, the log keeps one
entry per removal, found again by the version it removed. Entries written before authors
were recorded have none (`author` None). Authors are what the writer says it is, never
authenticated; messages and authors that look like credentials are refused.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import posixpath
import re
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Generic, Protocol, TypeVar

import yaml

from mlemremote import _yaml
from mlemremote._location import Location, at_revision, confined
from mlemremote._paths import HISTORY_PREFIX, MLEM_DIR, join, relpath
from mlemremote._redact import looks_secret, redact
from mlemremote._settings import AUTHOR_MAX_CHARS
from mlemremote._settings import current as current_settings
from mlemremote._stores import Blob, Expect, read_many, store_for
from mlemremote.core.errors import (
    InvalidArgumentError,
    InvalidLinkError,
    MlemError,
    MlemRootNotFound,
)

logger = logging.getLogger("mlemremote")
READ_CONCURRENCY = 32  # history entries (or versions) read at once
CLOCK_SKEW = timedelta(minutes=10)  # entries dated later than now + this are not believed


class LinkLike(Protocol):
    """What history needs of a link object (`core.objects.MlemLink` is one)."""

    path: str
    repo: str | None
    rev: str | None
    link_type: str

    @property
    def object_type(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


L = TypeVar("L", bound=LinkLike)
# Builds a link from a mapping read from a file (raises `MlemError` when it is not one).
BuildLink = Callable[[Mapping[str, Any], str], L]


@dataclass(frozen=True)
class HistoryEntry(Generic[L]):
    """One place an alias pointed to: when, the link as written, and its version.

    `version` is the backend's version id (S3 VersionId, GCS generation) or, in the log,
    the alias's token after that move. `recorded` is False for a state that no log entry
    or version records (the current alias moved by another tool or by a writer that
    stopped before logging, or a state only its successor remembers); `note` says which.
    `link` is None (and `removed` True) for a removal: the alias did not exist from then.
    `author` and `message` say who made the move and why, as the mover recorded them.
    """

    time: datetime | None
    link: L | None
    version: str | None
    previous: str | None = None  # from the log: the token this move replaced
    recorded: bool = True
    note: str = ""
    author: str | None = None  # who made the move (None: not recorded)
    message: str | None = None  # why, when the mover said so

    @property
    def removed(self) -> bool:
        """True when this entry is the alias's removal (`unlink`)."""
        return self.link is None


REMOVED_NOTE = "the alias was removed"
MESSAGE_MAX_CHARS = 2000
_AUDIT = "# mlemremote "


# -- who and why -----------------------------------------------------------------------
def author_now() -> str:
    """Who is moving aliases in this process: the `author` setting, or `user@host`."""
    return current_settings().author or default_author()


def default_author() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry, ...)
        user = "unknown"
    text = f"{user}@{socket.gethostname() or 'unknown'}"
    return "".join(c for c in text if c.isprintable())[:AUTHOR_MAX_CHARS]


def check_message(message: object) -> str | None:
    """The message of a move as it will be recorded ('' and None: none), or
    `InvalidArgumentError` before anything is written."""
    if message is None:
        return None
    if not isinstance(message, str):
        raise InvalidArgumentError(f"message must be a string, not {type(message).__name__}")
    if len(message) > MESSAGE_MAX_CHARS:
        raise InvalidArgumentError(f"message must be at most {MESSAGE_MAX_CHARS} characters")
    if not all(c.isprintable() or c in "\n\t" for c in message):
        raise InvalidArgumentError(
            "message must be printable text (new lines and tabs allowed): control and "
            "format characters (terminal escapes, ...) are refused; nothing was written"
        )
    if looks_secret(message):
        raise InvalidArgumentError(
            "message looks like it holds a credential (it would be stored in the history); "
            "nothing was written"
        )
    return message or None


def audit_comment(target: Location, body: str, author: str, message: str | None) -> str:
    """What follows a link's YAML `body` when it is written at `target`: comment lines
    saying who made the write and why (JSON strings: one line each, ASCII only, whatever
    the text holds), then the write's id and a seal over the name, the body and these
    lines. A copy of the bytes to another alias, or a hand edit that keeps the comments,
    breaks the seal: its history entry then names no author (never the first writer's)."""
    lines = f"{_AUDIT}author: {json.dumps(author)}\n"
    if message:
        lines += f"{_AUDIT}message: {json.dumps(message)}\n"
    write_id = uuid.uuid4().hex[:16]
    seal = _seal(target, (body + lines).encode(), write_id)
    return f"{lines}{_AUDIT}write {write_id} {seal}\n"


_WRITE_LINE = re.compile(rb"# mlemremote write ([0-9a-f]{16}) ([0-9a-f]{16})\n?\Z")


def _seal(target: Location, before: bytes, write_id: str) -> str:
    """What binds a write's comment lines to its alias (by its full path on its
    storage: a copy to the same name in another repo or bucket is a move made by nobody
    recorded, at the copy's time, never one by this write's author) and to the bytes
    before them."""
    name = target.fullpath.encode()
    return hashlib.sha256(b"%s\0%s\0%s" % (name, before, write_id.encode())).hexdigest()[:16]


def audit_of(data: bytes, target: Location) -> tuple[str | None, str | None]:
    """The author and message that `audit_comment` left in the bytes of a write of the
    link at `target` (None where there is none, it is not what it should be, or the
    bytes are not the ones sealed there: edited by hand, or copied from another alias)."""
    found: dict[str, str | None] = {"author": None, "message": None}
    sealed = _WRITE_LINE.search(data)
    if sealed is None or (sealed.start() and data[sealed.start() - 1 : sealed.start()] != b"\n"):
        return None, None
    before = data[: sealed.start()]
    if _seal(target, before, sealed.group(1).decode()) != sealed.group(2).decode():
        return None, None
    for line in before.splitlines():
        if not line.startswith(_AUDIT.encode()):
            continue
        key, sep, value = line[len(_AUDIT) :].partition(b": ")
        name = key.decode("ascii", "replace")
        # (A JSON string only: nothing nested that could exhaust the stack.)
        if sep and name in found and found[name] is None and value.startswith(b'"'):
            try:
                text = json.loads(value)
            except (ValueError, RecursionError):
                continue
            found[name] = _text(text, AUTHOR_MAX_CHARS if name == "author" else MESSAGE_MAX_CHARS)
    return found["author"], found["message"]


def _text(value: object, limit: int) -> str | None:
    """`value` if it is a string of at most `limit` characters (untrusted input)."""
    return value if isinstance(value, str) and len(value) <= limit else None


GONE_NOTE = "the alias does not exist now; no history entry records its removal"


def history_folder(target: Location) -> Location | None:
    """Where the append-only log of moves of the link at `target` lives (in its repo's
    `.mlem/history/`), or None outside a repo."""
    repo = target.repo
    if repo is None:
        return None
    rel = relpath(target.fullpath, repo)
    prefix = f"{MLEM_DIR}/link/"
    key = "link/" + rel[len(prefix) :] if rel.startswith(prefix) else "external/" + rel
    return target.sibling(join(repo, HISTORY_PREFIX, key), repo=repo)


def keeps_history(target: Location) -> bool:
    """Is a move of the link at `target` remembered: in a repo's log, or as a version
    of a bucket that keeps versions (a request, outside repos only)?"""
    return history_folder(target) is not None or store_for(target).versioned(target)


def has_log(target: Location) -> bool:
    """Does the link at `target` have a log of moves (one listing)?"""
    folder = history_folder(target)
    if folder is None:
        return False
    try:
        return any(p.endswith(".yaml") for p in store_for(folder).entries(folder))
    except MlemError:
        return False


def log_move(
    link: LinkLike,
    target: Location,
    *,
    token: str | None,
    version: str | None,
    previous: str | None,
    replaced: Mapping[str, Any] | None,
    author: str,
    message: str | None = None,
) -> None:
    """Append one entry for a move, where the bucket keeps no versions of its own.

    Called after the alias was written: a failure here is logged, never raised (the
    alias did move, and `history_of` shows it even without this entry).
    """
    entry = {
        "link": link.to_dict(),
        "token": token,
        "previous": previous,
        "replaced": dict(replaced) if replaced is not None else None,
    }
    _append(target, _audited(entry, author, message), version, "moved")


def log_removal(
    target: Location,
    *,
    version: str | None,
    previous: str,
    replaced: Mapping[str, Any],
    author: str,
    message: str | None = None,
) -> None:
    """Append one entry for the removal of the link at `target` (token `previous`,
    content `replaced`); as `log_move`, after the fact, and never raising. Also on a
    versioned bucket (with the version it made, if any): a removal carries no author."""
    entry = {"link": None, "removed": True, "token": None, "previous": previous}
    entry = _audited({**entry, "replaced": dict(replaced)}, author, message)
    _append(target, entry, version, "was removed", on_versions=True)


def _audited(entry: dict[str, Any], author: str, message: str | None) -> dict[str, Any]:
    return {**entry, "author": author, **({"message": message} if message else {})}


def _append(
    target: Location,
    entry: dict[str, Any],
    version: str | None,
    what: str,
    *,
    on_versions: bool = False,
) -> None:
    try:
        store = store_for(target)
        if store.keeps_versions(target, version):
            if not on_versions:
                return
            entry = {**entry, "version": version}
        folder = history_folder(target)
        if folder is None:
            return
        if not confined(folder, folder._repo if isinstance(folder._repo, str) else "/"):
            raise InvalidLinkError(f"{folder}: a symlink in the repo leads the log out of it")
        now = datetime.now(timezone.utc)
        entry = {"time": now.isoformat(), **entry}
        name = f"{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:12]}.yaml"
        log = folder.sibling(join(folder.fullpath, name), repo=folder._repo)
        data = yaml.safe_dump(entry, sort_keys=True, default_flow_style=False).encode()
        store.write(log, data, Expect.ABSENT)  # never rewritten
    except MlemError as exc:
        logger.warning(
            redact(f"{target} {what}, but its history entry could not be written: {exc}")
        )


@dataclass(frozen=True)
class _Logged:
    time: datetime
    link_content: Mapping[str, Any] | None  # None: a removal
    token: str | None
    previous: str | None
    replaced: Mapping[str, Any] | None
    uri: str
    author: str | None = None
    message: str | None = None
    version: str | None = None  # on a versioned bucket: the version a removal made


def history_of(
    current: L | None, current_blob_time: datetime | None, target: Location, build: BuildLink[L]
) -> list[HistoryEntry[L]]:
    """The moves of the link at `target`, newest first; `current` is that link as just
    read (with its token and version), and always comes first. None: there is no link
    at `target` now; then a removal comes first."""
    store = store_for(target)
    token: str | None = getattr(current, "_token", None)
    version: str | None = getattr(current, "_version", None)
    if store.versioned(target):
        return _from_versions(current, version, current_blob_time, target, build)
    folder = history_folder(target)
    if folder is None:
        raise MlemRootNotFound(
            f"{target} is not in a repo and {store.describe(target)} keeps no versions: "
            "there is no history"
        )
    logged = _read_log(folder)
    return _reconcile(current, token, current_blob_time, logged, build)


def _from_versions(
    current: L | None,
    version: str | None,
    time: datetime | None,
    target: Location,
    build: BuildLink[L],
) -> list[HistoryEntry[L]]:
    store = store_for(target)
    listed = store.versions(target)
    versions = [v for v in listed if not v.deleted]
    locs = [at_revision(target, v.version) for v in versions]
    blobs = dict(zip((v.version for v in versions), _read_all(locs), strict=True))
    removals = _removals(target)
    # Each write has its own id: a later version holding an older one's id is a copy of
    # it (a restore by hand), made by nobody recorded, never by that write's author.
    first_with: dict[bytes, str] = {}
    for v in reversed(versions):  # oldest first
        found = blobs.get(v.version)
        written = None if found is None else _WRITE_LINE.search(found.data)
        if written is not None:
            first_with.setdefault(written.group(1), v.version)
    entries: list[HistoryEntry[L]] = []
    for v in listed:
        if v.deleted:  # an S3 delete marker: a removal
            who = _who(next((r for r in removals if r.version == v.version), None))
            entries.append(
                HistoryEntry(
                    v.time, None, v.version, note=REMOVED_NOTE, author=who[0], message=who[1]
                )
            )
            continue
        blob = blobs.get(v.version)
        if blob is None:
            continue
        link = _build_link(blob.data, str(at_revision(target, v.version)), build)
        if link is not None:
            author, message = audit_of(blob.data, target)
            written = _WRITE_LINE.search(blob.data)
            if written is not None and first_with.get(written.group(1)) != v.version:
                author, message = None, None
            entries.append(HistoryEntry(v.time, link, v.version, author=author, message=message))
    _place_markers(entries, removals, {v.version: v.token for v in listed if v.token})
    _insert_removals(entries, removals)
    if current is None:
        if not entries or not entries[0].removed:
            entries.insert(0, HistoryEntry(None, None, None, note=GONE_NOTE))
        return entries
    if version is not None and (not entries or entries[0].version != version):
        # The alias moved between our read and the listing, or the listing lags: what
        # we read is the current state, and it comes first.
        entries = [e for e in entries if e.version != version]
        entries.insert(0, HistoryEntry(time, _unsaved(current), version))
    return entries


def _removals(target: Location) -> list[_Logged]:
    """The removals the log of the alias at `target` records, newest first (on a
    versioned bucket, where they are all it records)."""
    folder = history_folder(target)
    if folder is None:
        return []
    found = [e for e in _read_log(folder) if e.link_content is None]
    return sorted(found, key=lambda e: e.time, reverse=True)


def _place_markers(
    entries: list[HistoryEntry[L]], removals: list[_Logged], tokens: dict[str, str]
) -> None:
    """Put each delete marker that the log explains right after the version it removed
    (the one whose token the removal names): S3 lists times to the second, so a version
    and its removal written in one second would otherwise be in either order."""
    for removal in removals:
        if removal.version is None:
            continue
        at = [i for i, e in enumerate(entries) if e.removed and e.version == removal.version]
        was = [i for i, e in enumerate(entries) if tokens.get(e.version or "") == removal.previous]
        if len(at) != 1 or len(was) != 1:
            continue
        marker = entries.pop(at[0])
        entries.insert(was[0] - (1 if at[0] < was[0] else 0), marker)


def _insert_removals(entries: list[HistoryEntry[L]], removals: list[_Logged]) -> None:
    """Where a bucket leaves no marker of a removal (GCS), show each removal that the log
    records just after the version it removed (its `previous`), if the times agree."""
    for removal in reversed(removals):  # oldest first
        if removal.version is not None and any(e.version == removal.version for e in entries):
            continue  # its marker is listed (S3)
        index = next(
            (
                i
                for i, e in enumerate(entries)
                if e.link is not None and e.version == removal.previous
            ),
            None,
        )
        if index is None or (index > 0 and entries[index - 1].removed):
            continue
        removed, newer = entries[index], entries[index - 1] if index > 0 else None
        after = removed.time is None or removal.time >= removed.time - CLOCK_SKEW
        before = newer is None or newer.time is None or removal.time <= newer.time + CLOCK_SKEW
        if after and before:
            entry: HistoryEntry[L] = HistoryEntry(
                removal.time,
                None,
                None,
                note=REMOVED_NOTE,
                author=removal.author,
                message=removal.message,
            )
            entries.insert(index, entry)


def _who(logged: _Logged | None) -> tuple[str | None, str | None]:
    return (None, None) if logged is None else (logged.author, logged.message)


def _reconcile(
    current: L | None,
    token: str | None,
    time: datetime | None,
    logged: list[_Logged],
    build: BuildLink[L],
) -> list[HistoryEntry[L]]:
    """Follow the tokens back from the current alias; fill in what the log lacks.

    An entry is believed only where it can be checked: the one that names the current
    token must name the current target, and the one a move replaced must say what that
    move's `replaced` says; one that does not is skipped with a warning (planted, or
    from a clock-skewed tool), and the state it claimed is shown as the alias or the
    `replaced` record has it.
    """
    out: list[HistoryEntry[L]] = []
    used: set[int] = set()
    soon = datetime.now(timezone.utc) + CLOCK_SKEW
    by_token: dict[str, _Logged] = {}
    claims: dict[str, set[str]] = {}
    for entry in logged:
        if entry.time > soon:  # a clock far ahead, or planted to come first
            _skip(entry.uri, "it is dated in the future")
            used.add(id(entry))
        elif entry.token is not None:
            by_token[entry.token] = entry
            claims.setdefault(entry.token, set()).add(_claim(entry))
    for token_claimed, said in claims.items():
        if len(said) > 1:  # two entries say different things of one write: believe neither
            for entry in logged:
                if entry.token == token_claimed and id(entry) not in used:
                    _skip(entry.uri, "another entry records the same write differently")
                    used.add(id(entry))
            del by_token[token_claimed]
    remaining = sorted(logged, key=lambda e: e.time, reverse=True)

    def checked(entry: _Logged | None, must_be: LinkLike | None) -> _Logged | None:
        """`entry`, if it is unused, builds, and says what `must_be` says."""
        if entry is None or id(entry) in used:
            return None
        if entry.link_content is None:  # a removal: nothing in it to check against
            return entry if must_be is None else None
        link = _link_of(entry.link_content, entry.uri, build)
        if link is None or (must_be is not None and not _same(link, must_be)):
            if link is not None:
                _skip(entry.uri, "its token is the alias's, but not its target")
            used.add(id(entry))
            return None
        return entry

    def unrecorded(link: L, version: str | None, when: datetime | None, note: str) -> None:
        out.append(HistoryEntry(when, link, version, recorded=False, note=note))

    if current is None:
        # Nothing is there now: the newest entry should be the removal.
        rest = [e for e in remaining if id(e) not in used]
        step = rest[0] if rest else None
        if step is None or step.link_content is not None:
            out.append(HistoryEntry(None, None, None, recorded=False, note=GONE_NOTE))
    else:
        step = checked(by_token.get(token) if token is not None else None, current)
    if current is not None and step is None:
        unrecorded(
            _unsaved(current),
            token,
            time,
            "the current link; no history entry records this move (another tool, or a "
            "writer that stopped before logging it, moved the alias)",
        )
    while True:
        while step is not None:
            used.add(id(step))
            if step.link_content is None:
                out.append(
                    HistoryEntry(
                        step.time,
                        None,
                        None,
                        step.previous,
                        note=REMOVED_NOTE,
                        author=step.author,
                        message=step.message,
                    )
                )
            else:
                link = _link_of(step.link_content, step.uri, build)
                if link is not None:
                    out.append(
                        HistoryEntry(
                            step.time,
                            link,
                            step.token,
                            step.previous,
                            author=step.author,
                            message=step.message,
                        )
                    )
            if step.previous is None:
                break
            replaced = None if step.replaced is None else _link_of(step.replaced, step.uri, build)
            before = checked(by_token.get(step.previous), replaced)
            if before is None:
                if replaced is not None:
                    unrecorded(
                        replaced,
                        step.previous,
                        None,
                        "replaced by the next move; no history entry records how it got there",
                    )
                break
            step = before
        rest = [e for e in remaining if id(e) not in used]
        if not rest:
            return out
        step = rest[0]  # a break in the chain: continue with the newest entry left


def _claim(entry: _Logged) -> str:
    """What an entry says of its write, as one comparable text."""
    return json.dumps(
        [entry.link_content, entry.previous, entry.replaced], sort_keys=True, default=str
    )


def _same(a: LinkLike, b: LinkLike) -> bool:
    return (a.path, a.repo, a.rev, a.link_type) == (b.path, b.repo, b.rev, b.link_type)


def _read_log(folder: Location) -> list[_Logged]:
    entries = store_for(folder).entries(folder)
    names = sorted(posixpath.basename(p.rstrip("/")) for p in entries if p.endswith(".yaml"))
    locs = [folder.sibling(join(folder.fullpath, name), repo=folder._repo) for name in names]
    found: list[_Logged] = []
    for loc, blob in zip(locs, _read_all(locs), strict=True):
        if blob is None:
            continue
        entry = _parse_entry(blob.data, str(loc))
        if entry is not None:
            found.append(entry)
    return found


def _read_all(locs: Sequence[Location]) -> list[Blob | None]:
    """Read the files, gathered where the store allows it; a file that cannot be read
    is skipped with a warning (as a bad entry is)."""
    answers = read_many(locs, READ_CONCURRENCY)
    out: list[Blob | None] = []
    for index, loc in enumerate(locs):
        answer = answers.get(index, _MISSING_ANSWER)
        try:
            if answer is _MISSING_ANSWER:
                answer = store_for(loc).read(loc)
            if isinstance(answer, MlemError):
                raise answer
        except MlemError as exc:
            _skip(str(loc), str(exc))
            answer = None
        out.append(answer if isinstance(answer, Blob) else None)
    return out


_MISSING_ANSWER: Any = object()


def _mapping(data: bytes, uri: str) -> dict[str, Any] | None:
    """The YAML mapping in `data`, or None (skipped with a warning)."""
    try:
        content = _yaml.load(data, uri)
    except MlemError as exc:
        _skip(uri, str(exc))
        return None
    if not isinstance(content, dict):
        _skip(uri, "not a YAML mapping")
        return None
    return content


def _parse_entry(data: bytes, uri: str) -> _Logged | None:
    content = _mapping(data, uri)
    if content is None:
        return None
    link, raw_time = content.get("link"), content.get("time")
    token, previous, replaced = (content.get(k) for k in ("token", "previous", "replaced"))
    removal = content.get("removed") is True and link is None and token is None
    if not (removal or isinstance(link, dict)) or not isinstance(raw_time, str):
        _skip(uri, "'link' must be a mapping (or the entry a removal) and 'time' a string")
        return None
    if not all(v is None or isinstance(v, str) for v in (token, previous)):
        _skip(uri, "'token' and 'previous' must be strings")
        return None
    if replaced is not None and not isinstance(replaced, dict):
        replaced = None
    try:
        time = datetime.fromisoformat(raw_time)
    except ValueError:
        _skip(uri, "'time' is not an ISO 8601 time")
        return None
    time = time if time.tzinfo else time.replace(tzinfo=timezone.utc)
    author = _text(content.get("author"), AUTHOR_MAX_CHARS)
    message = _text(content.get("message"), MESSAGE_MAX_CHARS)
    version = _text(content.get("version"), 1024)
    return _Logged(time, link, token, previous, replaced, uri, author, message, version)


def _link_of(content: Mapping[str, Any], uri: str, build: BuildLink[L]) -> L | None:
    try:
        link = build(content, uri)
    except MlemError as exc:
        _skip(uri, str(exc))
        return None
    if link.object_type != "link":
        _skip(uri, f"it records a {link.object_type}, not a link")
        return None
    return link


def _build_link(data: bytes, uri: str, build: BuildLink[L]) -> L | None:
    content = _mapping(data, uri)
    return None if content is None else _link_of(content, uri, build)


def _skip(uri: str, why: str) -> None:
    logger.warning(redact(f"history: skipped {uri}: {why}"))


def _unsaved(link: L) -> L:
    copy: L = link.model_copy()  # type: ignore[attr-defined]
    copy._location = None  # type: ignore[attr-defined]
    return copy
