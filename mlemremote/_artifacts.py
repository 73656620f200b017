"""Artifacts: the files an object's metafile names (MLEM's `artifacts`), fetched whole
into a local folder (`pull`) or streamed one at a time (`open_artifact`).

An entry is MLEM's: `uri`, `size`, `hash` (the file's MD5) and an optional `type`,
`local` (the default: a path relative to the metafile's folder, as MLEM resolves it) or
`fsspec` (a full URI; MLEM writes these on object stores: `s3://bucket/repo/models/rf`).

**Where an artifact may be.** Checked for every entry before anything is downloaded
(`InvalidArtifactError`), with the policy of links (`_policy`): a path may not climb out
of the metafile's folder, or, when it climbs, out of its repo (a metafile outside repos
keeps its artifacts below its folder); `%2e%2e` and `..\\` count as climbing. A full URI
(or an absolute path) must be on the same filesystem and in the same bucket as the
metafile, and inside its folder or repo; with `external=True` it may be elsewhere, but
only where a link may lead (`link_schemes`, local paths only from local metafiles, http
only to the metafile's origin or `allowed_hosts`, never to refused addresses). On local
disk the file opened must be inside the repo (or folder) once symlinks are resolved,
judged on the open descriptor, and a regular file (a FIFO, socket, device or folder is
refused without blocking); in a git revision a symlink, folder or submodule is refused.

**Reading.** One request per artifact on object stores (its body read as it arrives,
1 MiB at a time); the size the server announces must be the metafile's `size`, no more
than `size` bytes are ever taken, and the MD5 is computed while the bytes stream. A
transient fault resumes the read where it stopped (a Range request pinned to the
content it started on: ETag, generation), within `retry_attempts` consecutive failures.
Each artifact of a `pull` has its own time budget: `retry_max_seconds` plus one second
per `min_transfer_rate` bytes it declares; no read waits more than `retry_max_seconds`
for its next bytes.

**Pulling** downloads every artifact (at most `concurrency` at once) into a temporary
folder beside the destination (`.<dest>.pull-<random>`, so on its filesystem), checks
each one, writes a copy of the metafile whose artifacts name the files beside it (MLEM
loads the folder as it is), and only then moves the folder into place in one rename:
create-only (`renameat2(RENAME_NOREPLACE)` on Linux), or with `overwrite` an atomic
exchange with the old folder, which is removed afterwards. On any error or interruption
the temporary folder is removed and the destination is as it was. A process killed
outright (SIGKILL) may leave the hidden temporary folder, never a partial destination.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import io
import os
import posixpath
import random
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import yaml

from mlemremote import _policy
from mlemremote._boundary import scope
from mlemremote._foreign import detach, is_missing, is_transient, storage_error
from mlemremote._links import check_link_field
from mlemremote._location import Location, at_revision, resolve
from mlemremote._paths import is_inside, join, relpath, split_scheme
from mlemremote._settings import current as current_settings
from mlemremote._stores import Body, store_for
from mlemremote._stores.base import until
from mlemremote._stores.local import exchange_names, rename_noreplace
from mlemremote.core.errors import (
    ArtifactFileTypeError,
    ArtifactFileUnsupportedError,
    ArtifactFileUsageError,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    DestinationExistsError,
    HostNotAllowedError,
    InsufficientSpaceError,
    InvalidArgumentError,
    InvalidArtifactError,
    InvalidLinkError,
    MlemError,
    SecretInURLError,
    StorageError,
    TimeBudgetError,
    WrongMetaType,
)

CHUNK = 1 << 20  # the most one read of a body asks for
KINDS = (None, "local", "fsspec")  # MLEM's artifact types that name a file by `uri`
_MD5 = re.compile(r"[0-9a-fA-F]{32}")
_MAX_NAME = 1024


@dataclass(frozen=True)
class Artifact:
    """One artifact of an object, checked and resolved."""

    name: str  # its key in the metafile's `artifacts`
    uri: str  # as the metafile writes it
    size: int
    md5: str  # lower-case hex
    loc: Location  # where it is read
    rel: str  # its path in a pulled folder (relative to the metafile's copy)
    within: str | None = None  # local disk: the folder its file must really be in
    pinned: bool = False  # its metafile was read at an object version (S3, GCS)


@dataclass(frozen=True)
class Pulled:
    """What `pull` wrote."""

    dest: str  # the folder
    metafile: str  # the copy of the object's metafile in it
    files: dict[str, str] = field(default_factory=dict)  # artifact name -> its file
    size: int = 0  # bytes of artifacts
    source: str = ""  # the metafile the artifacts were read for (its URI)


# -- which artifacts, and where ---------------------------------------------------------
def artifacts_of(obj: Any, *, external: bool = False) -> list[Artifact]:
    """The artifacts of a loaded object, each checked (see the module's doc); raises
    `InvalidArtifactError` for the first entry that is malformed or leads where it may
    not, before anything is read."""
    base: Location = obj.loc
    where = str(base)
    if obj.object_type not in ("model", "dataset", "data"):
        raise WrongMetaType(
            f"{where} is a {obj.object_type}: only models and datasets have artifacts"
        )
    entries = getattr(obj, "artifacts", None)
    if entries is None:
        return []
    if not isinstance(entries, Mapping):
        raise InvalidArtifactError(f"{where}: artifacts must be a mapping of names to entries")
    folder = posixpath.dirname(base.fullpath)
    found: list[Artifact] = []
    for name, entry in entries.items():
        found.append(_artifact(base, folder, name, entry, external))
    _check_layout(base, found)
    return found


def _artifact(base: Location, folder: str, name: object, entry: object, external: bool) -> Artifact:
    where = str(base)
    if (
        not isinstance(name, str)
        or not name.strip()
        or len(name.encode(errors="replace")) > _MAX_NAME
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name)
    ):
        raise InvalidArtifactError(f"{where}: an artifact's name is empty, too long or not text")
    what = f"{where}: artifact {name!r:.80}"
    if not isinstance(entry, Mapping):
        raise InvalidArtifactError(f"{what} is not a mapping of uri, size and hash")
    kind = entry.get("type")
    if kind not in KINDS:
        raise InvalidArtifactError(
            f"{what} has type {_shown(kind)}: only MLEM's local and fsspec artifacts (a file "
            "named by its uri) can be read"
        )
    uri, size, md5 = entry.get("uri"), entry.get("size"), entry.get("hash")
    if not isinstance(uri, str):
        raise InvalidArtifactError(f"{what} has no uri")
    check_link_field(uri, "uri", what)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidArtifactError(
            f"{what}: size must be a whole number of bytes, not {_shown(size)}"
        )
    if not isinstance(md5, str) or not _MD5.fullmatch(md5):
        raise InvalidArtifactError(
            f"{what}: hash must be an MD5 (32 hex digits), not {_shown(md5)}"
        )
    loc, root = _locate(base, folder, uri, kind, external, what)
    rel = (
        relpath(loc.fullpath, folder)
        if _same_place(loc, base) and is_inside(loc.fullpath, folder) and loc.fullpath != folder
        else name
    )
    pinned = base.rev is not None and base.git_root is None and loc.rev is None
    within = root if loc.is_local else None
    return Artifact(name, uri, size, md5.lower(), loc, rel, within, pinned)


def _shown(value: object) -> str:
    return (
        repr(value)
        if isinstance(value, (int, type(None)))
        else type(value).__name__ + (f" {value!r:.40}" if isinstance(value, str) else "")
    )


def _plain(path: str) -> str:
    """A path as a server may read it: `%2e%2e` and `..\\` climb too."""
    from urllib.parse import unquote

    return unquote(path).replace("\\", "/")


def _same_place(a: Location, b: Location) -> bool:
    """Same filesystem (backend, endpoint, credentials) and bucket; a git revision is
    the same place only at the same revision (object versions are not compared: a
    version belongs to one object)."""
    return (
        a.fs == b.fs
        and a.git_root == b.git_root
        and a.bucket == b.bucket
        and (a.git_root is None or a.rev == b.rev)
    )


def _locate(
    base: Location, folder: str, uri: str, kind: object, external: bool, what: str
) -> tuple[Location, str]:
    """Where an artifact is, and the folder that contains it (its metafile's folder, or
    the repo when it climbs out of that folder); refused where a link could not lead."""
    scheme, _ = split_scheme(uri)
    if scheme is None and not uri.startswith("/"):
        if kind == "fsspec":  # MLEM opens it relative to the working directory it runs in
            raise InvalidArtifactError(
                f"{what}: a relative uri of an fsspec artifact names a file relative to the "
                "working directory MLEM runs in; it is not guessed"
            )
        full = join(folder, uri)
        plain = join(folder, _plain(uri))
        loc = base.sibling(full, repo=base._repo)
    else:
        if kind in (None, "local") and scheme is not None:
            raise InvalidArtifactError(f"{what}: a local artifact's uri must be a path, not a URI")
        base_scheme = "file" if base.is_local else base.scheme
        if base.git_root is not None and (scheme is None or scheme == "file"):
            raise InvalidArtifactError(
                f"{what}: an artifact in a git revision names a local path; it may not "
                "leave its repository"
            )
        _policy.refuse_secrets(uri)
        try:
            _policy.check_destination(uri, base_scheme, base.uri, what)
        except (HostNotAllowedError, SecretInURLError):
            raise  # (the policy's own refusals, as for links)
        except InvalidLinkError as exc:
            raise InvalidArtifactError(str(exc)) from None
        if not external and _family(scheme or "file") != _family(base_scheme):
            # (refused before a filesystem is made for it: making one may need
            # credentials, and fail otherwise than with this answer)
            raise InvalidArtifactError(
                f"{what}: {_short(uri)} is on another filesystem or bucket than its "
                "metafile; pass external_artifacts=True (--external-artifacts) to read it there"
            )
        if scheme is None and (base.is_local or base.scheme == "memory"):
            loc = base.sibling(posixpath.normpath(uri), repo=base._repo)
        else:
            loc = resolve(uri, like=base)
        full = plain = loc.fullpath
    if not _same_place(loc, base):
        if external:
            return loc, posixpath.dirname(loc.fullpath)
        raise InvalidArtifactError(
            f"{what}: {_short(uri)} is on another filesystem or bucket than its metafile; "
            "pass external_artifacts=True (--external-artifacts) to read it there"
        )
    if full != folder and is_inside(full, folder) and is_inside(plain, folder):
        return loc, folder
    repo = base.repo  # (a request per folder on object stores: only for a climbing uri)
    if repo is None:
        raise InvalidArtifactError(
            f"{what}: {_short(uri)} leaves the metafile's folder, and the metafile is in no repo"
        )
    if full == repo or not (is_inside(full, repo) and is_inside(plain, repo)):
        raise InvalidArtifactError(f"{what}: {_short(uri)} leaves the repo {base.uri_of(repo)}")
    return base.sibling(full, repo=repo), repo


_FAMILIES = {
    "local": "file",
    "s3a": "s3",
    "gcs": "gs",
    "abfs": "az",
    "abfss": "az",
    "https": "http",
}


def _family(scheme: str) -> str:
    """Schemes that name one kind of filesystem (`s3a` is `s3`, ...)."""
    return _FAMILIES.get(scheme, scheme)


def _short(text: str) -> str:
    return repr(text) if len(text) <= 120 else repr(text[:116] + "...")


def _check_layout(base: Location, found: list[Artifact]) -> None:
    """The files of a pulled folder: each a plain relative path, none twice, none below
    another, none the metafile's copy."""
    where = str(base)
    taken = {metafile_name(base): "the metafile"}
    for art in found:
        parts = art.rel.split("/")
        if (
            art.rel.startswith("/")
            or any(p in ("", ".", "..") for p in parts)
            or any(p in ("", ".", "..") for p in _plain(art.rel).split("/"))
        ):
            raise InvalidArtifactError(
                f"{where}: artifact {art.name!r:.80} is outside the metafile's folder and its "
                "name is not a plain relative path, so it has no place in a pulled folder"
            )
        if any(p.lower() == ".mlem" for p in parts):
            raise InvalidArtifactError(
                f"{where}: artifact {art.name!r:.80} would be written in a .mlem folder of "
                "the pulled folder, which would then pass for an MLEM repo (its config, "
                "links and history)"
            )
        if art.rel in taken:
            raise InvalidArtifactError(
                f"{where}: artifacts {art.name!r:.80} and {taken[art.rel]} take the same "
                f"place, {art.rel!r:.80}"
            )
        taken[art.rel] = repr(art.name)
    for rel, owner in taken.items():
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            above = "/".join(parts[:depth])
            if above in taken:
                raise InvalidArtifactError(
                    f"{where}: {owner} would be inside {taken[above]}, a file ({above!r:.80})"
                )


def metafile_name(base: Location) -> str:
    return posixpath.basename(base.fullpath.rstrip("/")) or "object.mlem"


def local_metafile(obj: Any, found: list[Artifact]) -> bytes:
    """The object's metafile for a pulled folder: its artifacts name the files beside
    it (MLEM's local artifacts), everything else as it was."""
    content = obj.to_dict()
    content["artifacts"] = {
        art.name: {"hash": art.md5, "size": art.size, "uri": art.rel} for art in found
    }
    return yaml.safe_dump(content, sort_keys=True, default_flow_style=False).encode()


# -- reading one artifact ---------------------------------------------------------------
class Transfer:
    """One artifact being read: its chunks in order, each checked as it arrives (no
    more than `size` bytes taken), the MD5 checked at the end; transient faults resume
    where the read stopped."""

    def __init__(self, art: Artifact, stop: threading.Event | None = None) -> None:
        self.art = art
        self.got = 0
        self.done = False
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._token: str | None = None
        self._body: Body | None = None
        self._failures = 0
        self._stop = stop
        self._lock = threading.Lock()
        self._loc: Location | None = None
        self._opened = False

    def open(self) -> None:
        """The first request: errors (missing, refused, another size) are raised here."""
        self._with_retries(lambda: None)

    def read(self) -> bytes:
        """The next chunk; b"" once the whole file arrived and matched its MD5."""
        if self.done:
            return b""
        chunk: bytes = self._with_retries(self._next)
        return chunk

    def close(self) -> None:
        with self._lock:
            body, self._body = self._body, None
        if body is not None:
            with contextlib.suppress(Exception):
                body.close()

    # (internals)
    def _next(self) -> bytes:
        assert self._body is not None
        left = self.art.size - self.got
        chunk = self._body.read(min(CHUNK, left + 1))
        if not chunk:
            self._finish()
            return b""
        self.got += len(chunk)
        if self.got > self.art.size:
            raise ArtifactIntegrityError(
                f"{self.art.loc} has more than the {self.art.size} bytes its metafile says "
                f"(artifact {self.art.name!r:.80}); reading stopped there"
            )
        self._md5.update(chunk)
        self._failures = 0
        if self.got == self.art.size:
            self._check_md5()  # before the last bytes are handed out, not at the next read
        return chunk

    def _finish(self) -> None:
        self.close()
        if self.got != self.art.size:
            raise ArtifactIntegrityError(
                f"{self.art.loc} ended after {self.got} of the {self.art.size} bytes its "
                f"metafile says (artifact {self.art.name!r:.80}): truncated"
            )
        self._check_md5()
        self.done = True

    def _check_md5(self) -> None:
        if self._md5.hexdigest() != self.art.md5:
            self.close()
            raise ArtifactIntegrityError(
                f"{self.art.loc} does not match its metafile's hash (artifact "
                f"{self.art.name!r:.80}: MD5 {self._md5.hexdigest()}, expected {self.art.md5})"
            )

    def stopped(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    def _open_body(self) -> None:
        if self.stopped():
            raise _Stopped
        if self._opened and self.got == self.art.size:
            self._body = _Ended()  # every byte arrived before the fault: nothing to resume
            return
        loc = self._where()
        body = store_for(loc).open_body(
            loc, offset=self.got, token=self._token, within=self.art.within
        )
        with self._lock:
            self._body = body
        self._opened = True
        if body.size is not None and body.size != self.art.size:
            raise ArtifactIntegrityError(
                f"{loc} is {body.size} bytes, its metafile says {self.art.size} "
                f"(artifact {self.art.name!r:.80}); nothing was read"
            )
        if self._token is None:
            self._token = body.token
        elif body.token is not None and body.token != self._token:
            # (a server that ignored the resumed read's condition: fake-gcs-server
            # ignores ifGenerationMatch on a media GET)
            raise ArtifactIntegrityError(f"{loc} changed while it was being read")
        skip = self.got - body.start  # (a server that ignored the Range sends it all again)
        if skip < 0:
            raise ArtifactIntegrityError(f"{loc} answered from byte {body.start}, not {self.got}")
        while skip > 0:
            dropped = len(body.read(min(CHUNK, skip)))
            if not dropped:
                break
            skip -= dropped

    def _where(self) -> Location:
        """Where to read: for an artifact of a metafile read at an object version (a
        pinned link on versioned S3 or GCS), the version of the artifact whose content
        the metafile names, when the bucket still has it (one listing, once)."""
        if self._loc is None:
            self._loc = self.art.loc
            if self.art.pinned:
                version = store_for(self._loc).version_with(self._loc, self.art.size, self.art.md5)
                if version is not None:
                    self._loc = at_revision(self._loc, version)
        return self._loc

    def _with_retries(self, step: Callable[[], Any]) -> Any:
        settings = current_settings()
        while True:
            if self._stop is not None and self._stop.is_set():
                raise _Stopped
            try:
                if self._body is None:
                    self._open_body()
                return step()
            except MlemError:
                self.close()
                raise
            except Exception as exc:
                self.close()
                loc = self.art.loc
                if is_missing(exc):
                    raise ArtifactNotFoundError(
                        f"artifact {self.art.name!r:.80}: no file at {loc}", [str(loc)]
                    ) from None
                self._failures += 1
                if not is_transient(exc) or self._failures >= settings.retry_attempts:
                    raise storage_error(loc, "read", exc) from None
                pause = random.uniform(
                    0,
                    min(settings.retry_max_wait, settings.retry_initial_wait * 2**self._failures),
                )
                self._pause(pause, loc)

    def _pause(self, seconds: float, loc: Location) -> None:
        """The backoff before a retry, within the time budget; cut short by a stop."""
        from mlemremote._stores.base import remaining

        if seconds >= remaining(loc, "read"):
            raise TimeBudgetError(f"cannot read {loc}: its time budget is spent (retrying faults)")
        if self._stop is None:
            time.sleep(seconds)
        elif self._stop.wait(seconds):
            raise _Stopped


class _Ended:
    """The body of a read that already has every byte."""

    size: int | None = None
    token: str | None = None
    start = 0

    def read(self, most: int) -> bytes:
        return b""

    def close(self) -> None:
        return None


class _Stopped(MlemError):
    """Another transfer of the same pull failed, or the pull was interrupted (never
    raised from a pull: the error that stopped it is)."""


def transfer_seconds(size: int) -> float:
    """An artifact's time budget: `retry_max_seconds`, plus a second per
    `min_transfer_rate` bytes."""
    settings = current_settings()
    return settings.retry_max_seconds + size / settings.min_transfer_rate


# -- pulling ----------------------------------------------------------------------------
def local_dest(dest: object) -> str:
    """`dest` as an absolute local path (a plain path or `file://`); anything else is
    refused."""
    if isinstance(dest, os.PathLike):
        dest = os.fspath(dest)
    if not isinstance(dest, str) or not dest.strip() or "\x00" in dest:
        raise InvalidArgumentError(f"dest must be a local folder path, not {dest!r:.60}")
    scheme, _ = split_scheme(dest)
    if scheme not in (None, "file"):
        raise InvalidArgumentError(
            f"dest must be a folder on local disk, not a {scheme}:// URI: artifacts are "
            "pulled to local disk"
        )
    if scheme == "file":
        dest = dest.split("://", 1)[1]
        if not dest.startswith("/"):  # file://host/...: not a folder of this machine's
            raise InvalidArgumentError(
                f"dest {dest!r:.60} must be file:///absolute/path (a host, even localhost, "
                "is not taken for a folder here)"
            )
    path = os.path.abspath(os.path.expanduser(dest))
    if path == "/" or os.path.dirname(path) == path:
        raise InvalidArgumentError("dest must be a folder to create, not the root")
    return path


def check_dest(path: str, overwrite: bool) -> None:
    """Refuse a destination that exists (unless `overwrite`, and then only a folder that
    is not a symlink or a mount point)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not overwrite:
        raise DestinationExistsError(
            f"{path} exists; nothing was written (overwrite=True, or --force, replaces a folder)"
        )
    if not stat.S_ISDIR(info.st_mode):
        kind = "a symlink" if stat.S_ISLNK(info.st_mode) else "not a folder"
        raise DestinationExistsError(
            f"{path} is {kind}: only a folder is replaced by a pull; nothing was written"
        )
    if os.path.ismount(path):
        raise DestinationExistsError(f"{path} is a mount point; it is not replaced")
    here = os.path.realpath(os.getcwd())
    real = os.path.realpath(path)
    if real == os.path.realpath(os.path.expanduser("~")) or is_inside(here, real):
        raise DestinationExistsError(
            f"{path} is your home folder, or the current folder or one above it: a pull "
            "never replaces those; name a folder of its own"
        )
    if os.path.isdir(os.path.join(path, ".mlem")) or ".mlem" in real.split("/"):
        raise DestinationExistsError(
            f"{path} is an MLEM repo or inside its .mlem folder: a pull never replaces a "
            "repo's models, aliases or history; name a folder of its own"
        )


def check_not_source(
    path: str, obj: Any, found: list[Artifact], named: Location | None = None
) -> None:
    """With `overwrite`, refuse a destination that holds what is pulled: the object's
    metafile (so its repo), the git repository it is read from, a file of an artifact
    or the metafile `named` (the alias asked for): replacing the folder would delete the
    source after copying it."""
    if not os.path.lexists(path):
        return
    loc: Location = obj.loc
    sources: list[str] = []
    if loc.is_local:
        sources.append(loc.fullpath)  # (so its repo too: the metafile is inside it)
    elif loc.git_root is not None and "://" not in loc.git_root:
        sources.append(loc.git_root)
    sources += [art.loc.fullpath for art in found if art.loc.is_local]
    if named is not None and named.is_local:
        sources.append(named.fullpath)
    real = os.path.realpath(path)
    for source in sources:
        if is_inside(os.path.realpath(source), real):
            raise DestinationExistsError(
                f"{path} holds what is being pulled ({source}): a pull never replaces its "
                "own source; name another folder"
            )


def pull(
    obj: Any,
    dest: str,
    *,
    overwrite: bool = False,
    concurrency: int = 8,
    progress: bool | None = None,
    external: bool = False,
    named: Location | None = None,
) -> Pulled:
    """Download every artifact of `obj` (a loaded model or dataset) into the new folder
    `dest` (see the module's doc)."""
    found = artifacts_of(obj, external=external)
    path = local_dest(dest)
    check_dest(path, overwrite)
    if overwrite:
        check_not_source(path, obj, found, named)
    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot make the folder {parent} ({exc.strerror})") from None
    total = sum(art.size for art in found)
    _check_space(parent, total)
    try:
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)[:64]}.pull-", dir=parent)
    except OSError as exc:
        raise StorageError(
            f"cannot make a folder in {parent} to pull into ({exc.strerror}); nothing was written"
        ) from None
    shown = sys.stderr.isatty() if progress is None else progress
    bar = _Progress(total, len(found), enabled=shown)
    try:
        _download_all(found, tmp, concurrency, bar)
        _write_file(os.path.join(tmp, metafile_name(obj.loc)), local_metafile(obj, found))
        replaced = _publish(tmp, path, overwrite)
        tmp = tmp if replaced else ""  # (after an exchange, it holds the old folder)
    finally:
        bar.finish()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return Pulled(
        dest=path,
        metafile=os.path.join(path, metafile_name(obj.loc)),
        files={art.name: os.path.join(path, *art.rel.split("/")) for art in found},
        size=total,
        source=str(obj.loc),
    )


def _check_space(folder: str, needed: int) -> None:
    try:
        info = os.statvfs(folder)
    except OSError:
        return
    free = info.f_bavail * info.f_frsize
    if needed > free:
        raise InsufficientSpaceError(
            f"the artifacts need {needed} bytes and {folder} has {free} free; nothing was "
            "downloaded"
        )


def _download_all(found: list[Artifact], tmp: str, concurrency: int, bar: _Progress) -> None:
    """Each artifact into its file under `tmp`, at most `concurrency` at once; the first
    failure stops the others (their open bodies are closed) and is raised."""
    if not found:
        return
    stop = threading.Event()
    transfers = [Transfer(art, stop) for art in found]
    pool = ThreadPoolExecutor(max_workers=min(concurrency, len(found)), thread_name_prefix="pull")
    futures: list[Future[None]] = []
    try:
        for transfer in transfers:
            context = contextvars.copy_context()
            futures.append(pool.submit(context.run, _download_one, transfer, tmp, bar))
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
            for future in done:
                error = future.exception()
                if error is not None and not isinstance(error, _Stopped):
                    raise error
    except BaseException:
        stop.set()
        for transfer in transfers:
            transfer.close()  # unblocks a read waiting on the network
        raise
    finally:
        # Every thread is joined before this returns, even through a second Ctrl-C: the
        # caller removes `tmp` next, which a thread still writing would fill again.
        interrupted = False
        while True:
            try:
                pool.shutdown(wait=True, cancel_futures=True)
                break
            except KeyboardInterrupt:
                interrupted = True
                stop.set()
                for transfer in transfers:
                    transfer.close()
        for transfer in transfers:
            transfer.close()
        if interrupted:
            raise KeyboardInterrupt


def _download_one(transfer: Transfer, tmp: str, bar: _Progress) -> None:
    art = transfer.art
    if transfer.stopped():  # (before any file is made: the folder may be going away)
        raise _Stopped
    with until(time.monotonic() + transfer_seconds(art.size)), scope("pull"):
        target = os.path.join(tmp, *art.rel.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd = os.open(
            target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666
        )
        try:
            transfer.open()
            written = flushed = 0
            while chunk := transfer.read():
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
                written += len(chunk)
                if written - flushed >= _WRITEBACK:
                    _start_writeback(fd, flushed, written - flushed)
                    flushed = written
                bar.update(len(chunk))
            os.fdatasync(fd)
        finally:
            os.close(fd)
            transfer.close()
        bar.file_done()


_WRITEBACK = 8 << 20  # written bytes handed to the disk while the download goes on


def _start_writeback(fd: int, offset: int, count: int) -> None:
    """Ask the kernel to start writing these bytes to disk now (Linux's
    `sync_file_range(SYNC_FILE_RANGE_WRITE)`, which does not wait), so that the final
    `fdatasync` has little left to wait for."""
    function = _sync_file_range()
    if function is not None:
        function(fd, offset, count, 2)  # SYNC_FILE_RANGE_WRITE


@functools.cache
def _sync_file_range() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return function


def _write_file(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: str, dest: str, overwrite: bool) -> bool:
    """Move the complete folder `tmp` to `dest` in one step: create-only, or with
    `overwrite` exchanged with the folder there. True when a folder was replaced: it is
    now at `tmp`, for the caller to remove. Never half-replaced."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    _sync_folder(tmp)
    parent = os.path.dirname(dest)
    try:
        if overwrite and os.path.lexists(dest):
            check_dest(dest, True)  # (again: it may have changed during the download)
            exchange_names(tmp, dest)
            replaced = True
        else:
            rename_noreplace(tmp, dest)
            replaced = False
    except FileExistsError:
        raise DestinationExistsError(
            f"{dest} appeared during the pull; nothing was written there"
        ) from None
    except OSError as exc:
        raise StorageError(
            f"cannot move the pulled folder to {dest} ({exc.strerror}); nothing was written there"
        ) from None
    _sync_folder(parent)
    return replaced


def _sync_folder(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# -- progress ---------------------------------------------------------------------------
class _Progress:
    """One line on stderr (a terminal only, unless asked): bytes, files, rate."""

    def __init__(self, total: int, files: int, *, enabled: bool) -> None:
        self.total, self.files, self.enabled = total, files, enabled
        self.got = 0
        self.finished = 0
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._shown = 0.0
        self._drawn = False

    def update(self, count: int) -> None:
        if not self.enabled:
            return
        with self._lock:
            self.got += count
            now = time.monotonic()
            if now - self._shown >= 0.1:
                self._shown = now
                self._draw(now)

    def file_done(self) -> None:
        if self.enabled:
            with self._lock:
                self.finished += 1
                self._draw(time.monotonic())

    def _draw(self, now: float) -> None:
        share = self.got / self.total if self.total else 1.0
        width = 24
        filled = int(share * width)
        rate = self.got / max(now - self._start, 1e-6)
        line = (
            f"\rpulling [{'#' * filled}{'.' * (width - filled)}] {share:4.0%} "
            f"{_bytes(self.got)}/{_bytes(self.total)} {self.finished}/{self.files} files "
            f"{_bytes(int(rate))}/s "
        )
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(line)
            sys.stderr.flush()
            self._drawn = True

    def finish(self) -> None:
        if self.enabled and self._drawn:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write("\n")
                sys.stderr.flush()


def _bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"  # pragma: no cover


# -- streaming one artifact -------------------------------------------------------------
def pick(found: list[Artifact], name: str | None, where: str) -> Artifact:
    """The artifact `name` (or the only one, when `name` is None)."""
    names = [art.name for art in found]
    if name is None:
        if len(found) == 1:
            return found[0]
        shown = ", ".join(repr(n) for n in names[:20]) or "none"
        raise InvalidArgumentError(
            f"{where} has {len(found)} artifacts ({shown}): name the one to open"
        )
    for art in found:
        if art.name == name:
            return art
    raise InvalidArgumentError(f"{where} has no artifact {name!r:.80}; it has {names!r:.200}")


class _RawArtifact(io.RawIOBase):
    """The bytes of one artifact, as `Transfer` checks them."""

    def __init__(self, transfer: Transfer) -> None:
        super().__init__()
        self._transfer = transfer
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.closed:
            raise ValueError("read of a closed artifact")
        if not self._left:
            with scope("open_artifact"):
                self._left = self._transfer.read()
        count = min(len(buffer), len(self._left))
        buffer[:count] = self._left[:count]
        self._left = self._left[count:]
        return count

    def finish(self) -> None:
        """Read what is left (unseen by the caller) so that the whole file is checked."""
        while not self._transfer.done:
            with scope("open_artifact"):
                self._transfer.read()
        self._left = b""

    def close(self) -> None:
        if not self.closed:
            self._transfer.close()
        super().close()


class ArtifactFile(io.BufferedReader):
    """A binary file object over one artifact, read as it arrives (not seekable).

    Each read hands out bytes that passed the size check; the read that reaches the end
    checks the MD5 and raises `ArtifactIntegrityError` instead of ending quietly when it
    does not match. Leaving a `with` block without an error reads (and checks) whatever
    was not read; leaving it with an error, or `close()`, drops the connection."""

    def __init__(self, raw: _RawArtifact, art: Artifact) -> None:
        super().__init__(raw, CHUNK)
        self.artifact = art
        self._raw_artifact = raw

    @property
    def name(self) -> str:
        return self.artifact.name

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        try:
            if kind is None and not self.closed:
                self._raw_artifact.finish()
        finally:
            self.close()


def _io_misuse(exc: Exception) -> MlemError:
    """The `MlemError` for a misuse `io` refused (also of the class `io` raised, so that
    readers that catch `io.UnsupportedOperation` or `ValueError` still do)."""
    error: MlemError
    if isinstance(exc, io.UnsupportedOperation):
        error = ArtifactFileUnsupportedError(f"an artifact's stream: {exc}")
    elif isinstance(exc, TypeError):
        error = ArtifactFileTypeError(f"an artifact's stream: {exc}")
    else:
        error = ArtifactFileUsageError(f"an artifact's stream: {exc}")
    return detach(error)


def _only_mlem_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: ArtifactFile, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except MlemError:
            raise
        except (ValueError, TypeError, OverflowError) as exc:  # (io.UnsupportedOperation too)
            error = _io_misuse(exc)  # (raised below: io's exception is not its context)
        raise error

    return wrapper


# ArtifactFile's methods that `io` may refuse (a closed file, a bad size, no seeking):
# behind the error boundary as every public method is (read(-5) raised ValueError).
for _name in (
    "read", "read1", "readinto", "readinto1", "readline", "readlines", "peek", "seek",
    "tell", "truncate", "fileno", "write", "writelines", "detach", "__enter__", "__next__",
):  # fmt: skip
    setattr(ArtifactFile, _name, _only_mlem_errors(getattr(io.BufferedReader, _name)))


def open_stream(art: Artifact) -> ArtifactFile:
    transfer = Transfer(art)
    transfer.open()
    return ArtifactFile(_RawArtifact(transfer), art)
