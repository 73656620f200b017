"""Errors raised by mlemremote; every one is a `MlemError`.

Names follow MLEM 0.2.0 (`mlem.core.errors`) so that `except` clauses carry over.

>>> from mlemremote.core.errors import MlemError, MlemObjectNotFound
>>> issubclass(MlemObjectNotFound, MlemError)
True
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from mlemremote._redact import redact


class MlemError(Exception):
    """Base class of every error a public call raises. Its message never holds
    credentials (known secret values, URL userinfo and signature parameters are masked)
    and never quotes a file's content. `.original` is the foreign exception behind it, if
    any, as it was raised: kept for debugging, never printed by this library, and never
    in the cause chain (a traceback shows only redacted messages)."""

    original: BaseException | None = None

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


class MlemObjectNotSavedError(MlemError):
    """The object has no location yet (it was never dumped or loaded)."""


class MlemObjectNotFound(MlemError):
    """No metafile exists at any place the path can name."""

    def __init__(self, message: str, tried: Sequence[str] = ()) -> None:
        self.tried = list(tried)
        if self.tried:
            message += "; tried: " + ", ".join(self.tried)
        super().__init__(message)


class AmbiguousObjectError(MlemObjectNotFound):
    """A name matches metafiles in more than one `.mlem/<type>/` folder of a repo (MLEM
    refuses such a name too): nothing is guessed."""


class MlemRootNotFound(MlemError):
    """A repo was required but no `.mlem/config.yaml` was found."""


class WrongMetaType(MlemError):
    """An object is not of the type its link or the caller asked for."""


class LinkCycleError(MlemError):
    """Following links came back to a metafile already visited."""

    def __init__(self, chain: Sequence[str]) -> None:
        self.chain = list(chain)
        super().__init__("link cycle: " + " -> ".join(self.chain))


class LinkChainTooLongError(MlemError):
    """A chain of links is longer than the hop limit."""

    def __init__(self, chain: Sequence[str], limit: int) -> None:
        self.chain = list(chain)
        self.limit = limit
        super().__init__(f"more than {limit} link hops: " + " -> ".join(self.chain))


class ObjectExistsError(MlemError):
    """A link would replace an object that is not a link; nothing was written."""


class AliasChangedError(MlemError):
    """A compare-and-swap move found the alias changed since it was read; nothing written."""


class InvalidLinkError(MlemError):
    """A link (or a link target) is not acceptable: it escapes its repo, names a folder, ..."""


class HostNotAllowedError(InvalidLinkError):
    """A URL leads to a host that is not allowed: another origin than the one the read
    started from (unless in `allowed_hosts`), or a link-local, cloud metadata or other
    non-routable address, in any spelling and after DNS resolution."""


class SecretInURLError(InvalidLinkError):
    """A URL carries credentials (``user:password@``, ``?sig=``, ``X-Amz-Signature``, a
    token): they belong in storage options or remotes, never in a link."""


class DeserializationError(MlemError):
    """A metafile is not valid: malformed YAML, unknown `object_type`, missing fields."""


class MetafileTooLargeError(DeserializationError):
    """A metafile is larger than the configured cap; it was not read."""


class UnsupportedLocationError(MlemError):
    """A URI names a scheme we cannot use (unknown, or its backend is not installed)."""


class RemoteGitNotSupportedError(UnsupportedLocationError):
    """A link or repo names a remote git repository over a transport we do not use
    (`ssh://`, `git://`): never read as anything else."""


class ReadOnlyLocationError(MlemError):
    """A write was asked of a read-only backend (http, https, a git revision)."""


class RevisionNotSupportedError(MlemError):
    """`rev` was given for a backend that cannot read past versions (yet)."""


class RevisionNotFound(MlemError):
    """The revision does not exist in the repository."""


class RemoteConfigError(MlemError):
    """A remotes section (repo or user config) is invalid, or holds a secret in a repo."""


class StorageError(MlemError):
    """The storage backend failed (permission denied, missing bucket, server error, or
    transient faults past the retry budget). `.original` is the backend's exception."""


class BucketNotFoundError(StorageError):
    """The bucket or container of a location does not exist."""


class NotAFileError(StorageError):
    """A metafile's name holds something that is not a regular file (a folder, a FIFO, a
    socket, a device): it is never opened for reading or replaced."""


class TimeBudgetError(StorageError):
    """A call ran out of its time budget (`retry_max_seconds`), slow bodies included."""


class GitRemoteError(StorageError):
    """A remote git repository could not be read. The message names the repository's URL
    (never its credentials) and the revision asked for."""


class GitRepoNotFoundError(GitRemoteError):
    """No git repository answers at the URL (HTTP 404, or not a git server)."""


class GitAuthError(GitRemoteError):
    """The git server refused the credentials, or asked for some and none were given."""


class GitUnreachableError(GitRemoteError):
    """The git server could not be reached (refused connection, unknown name, reset)."""


class GitTransferLimitError(GitRemoteError):
    """A git server sent more than `git_max_transfer_bytes` (an endless pack or ref
    list): the transfer was cut off and nothing was kept."""


class InvalidArtifactError(InvalidLinkError):
    """An object's `artifacts` entry is malformed (no `uri`, a `size` that is not a whole
    number, a `hash` that is not an MD5, a type other than MLEM's `local` and `fsspec`) or
    leads where it may not: out of its repo (or, outside repos, its metafile's folder),
    to another bucket or filesystem, to a scheme or host that links may not name, or
    through a symlink out of the repo. Refused before anything is downloaded."""


class ArtifactIntegrityError(MlemError):
    """An artifact's bytes are not the ones its metafile names: another size (a truncated
    or longer file, or a server that said so), another MD5, or a file that changed while
    it was read. Nothing is left at the destination."""


class ArtifactNotFoundError(MlemObjectNotFound):
    """An artifact named by an object's metafile is not there."""


class DestinationExistsError(ObjectExistsError):
    """`pull`'s destination exists (and `overwrite` was not given, or it is not a folder
    that may be replaced); nothing was written."""


class InsufficientSpaceError(StorageError):
    """The destination's filesystem has less free space than the artifacts need;
    nothing was downloaded."""


class InvalidArgumentError(MlemError):
    """An argument of a public call has the wrong type or value (e.g. `storage_options`
    that is not a mapping, `force_type` that is not an object class)."""


class SettingsError(InvalidArgumentError):
    """`configure()` was given an unknown setting or a value out of range."""


class UnexpectedError(MlemError):
    """Something failed that no rule of this library expected; `.original` holds it.
    Public calls raise this instead of letting a foreign exception escape."""


class StorageOptionError(InvalidArgumentError):
    """A storage option is unknown to its backend, or is given twice in one source (two
    spellings with different values, or two alternatives such as `connection_string` and
    `account_name`). The message names the option and its source, never its value."""


class ArtifactFileUsageError(InvalidArgumentError, ValueError):
    """A file object of `open_artifact` was used as no binary reader may be: read after
    `close()`, a size below -1. Also a `ValueError`, as `io` raises for it."""


class ArtifactFileTypeError(InvalidArgumentError, TypeError):
    """A file object of `open_artifact` was given an argument of the wrong type (a size
    that is not a whole number). Also a `TypeError`, as `io` raises for it."""


class ArtifactFileUnsupportedError(InvalidArgumentError, io.UnsupportedOperation):
    """A file object of `open_artifact` was asked what a stream cannot do (`seek`, `tell`,
    `fileno`, `write`): also `io.UnsupportedOperation`, which readers check for."""
