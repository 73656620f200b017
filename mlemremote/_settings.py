"""Process-wide settings: retries, the metafile size cap, what links may point to."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mlemremote._redact import looks_secret
from mlemremote.core.errors import SettingsError

# Schemes a link may name. http(s) is left out so that a link written by someone else
# cannot make us fetch arbitrary URLs (e.g. a cloud metadata endpoint); add it with
# configure(link_schemes=...) when you trust the links you read.
DEFAULT_LINK_SCHEMES = frozenset({"file", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})


@dataclass(frozen=True)
class Settings:
    """What `configure()` sets. Defaults come from `MLEMREMOTE_*` environment variables."""

    retry_attempts: int = 5  # tries of one request, the first included
    retry_max_seconds: float = 60.0  # the time budget of one call: retries and slow bodies
    retry_initial_wait: float = 0.2  # first backoff; doubles, with full jitter
    retry_max_wait: float = 10.0  # longest single backoff
    # Seconds to wait for a TCP connection to a server (each try): a stopped or
    # unreachable endpoint fails within about connect_timeout x retry_attempts.
    connect_timeout: float = 5.0
    max_metafile_bytes: int = 1 << 20  # larger metafiles are refused, not read
    link_schemes: frozenset[str] = DEFAULT_LINK_SCHEMES
    # A link stored on a remote backend may name a local path (or file://) only if True.
    allow_local_links: bool = False
    # Hosts a link read over http(s) may lead to besides its own origin (exact names or
    # IP addresses). Link-local and cloud metadata addresses are refused unless named here.
    allowed_hosts: frozenset[str] = frozenset()
    # Remote git: what one fetch or ref listing may download before it is cut off, and
    # how large the cache of fetched commits may grow before the least used are removed.
    git_max_transfer_bytes: int = 64 << 20
    git_cache_max_bytes: int = 1 << 30
    # Artifacts (`pull`, `open_artifact`): each file has `retry_max_seconds` plus one
    # second per this many bytes it declares (a server that trickles is cut off), and no
    # read of it may wait longer than `retry_max_seconds` for its next bytes.
    min_transfer_rate: int = 64 << 10
    # Who moves aliases, as the history of every move records it ("": `user@host` of the
    # process). Self-declared, not authenticated: the storage's access logs are.
    author: str = ""


_ENV = {
    "retry_attempts": "MLEMREMOTE_RETRY_ATTEMPTS",
    "retry_max_seconds": "MLEMREMOTE_RETRY_MAX_SECONDS",
    "connect_timeout": "MLEMREMOTE_CONNECT_TIMEOUT",
    "max_metafile_bytes": "MLEMREMOTE_MAX_METAFILE_BYTES",
    "git_max_transfer_bytes": "MLEMREMOTE_GIT_MAX_TRANSFER_BYTES",
    "git_cache_max_bytes": "MLEMREMOTE_GIT_CACHE_MAX_BYTES",
    "min_transfer_rate": "MLEMREMOTE_MIN_TRANSFER_RATE",
    "author": "MLEMREMOTE_AUTHOR",
}
AUTHOR_MAX_CHARS = 200


def _from_env() -> Settings:
    found: dict[str, Any] = {}
    for name, variable in _ENV.items():
        if variable in os.environ:
            kind = type(getattr(Settings(), name))
            try:
                found[name] = kind(os.environ[variable])
                if name == "author":
                    check_author(found[name])
            except (ValueError, SettingsError) as exc:
                found.pop(name, None)  # a bad value in the environment: the default stands
                if name == "author":  # (said, since every move records it)
                    logging.getLogger("mlemremote").warning("%s is ignored: %s", variable, exc)
                continue
    try:
        return _checked(dataclasses.replace(Settings(), **found))
    except SettingsError:
        return Settings()


def _checked(settings: Settings) -> Settings:
    """`settings` if every value has its type and range; `SettingsError` otherwise."""
    numbers = {
        "retry_attempts": (int, 1),
        "max_metafile_bytes": (int, 1),
        "git_max_transfer_bytes": (int, 1),
        "git_cache_max_bytes": (int, 0),
        "min_transfer_rate": (int, 1),
        "retry_max_seconds": (float, 0),
        "retry_initial_wait": (float, 0),
        "retry_max_wait": (float, 0),
        "connect_timeout": (float, 0),
    }
    for name, (kind, least) in numbers.items():
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(f"{name} must be a number, not {type(value).__name__}")
        if kind is int and not isinstance(value, int):
            raise SettingsError(f"{name} must be a whole number, not {value!r}")
        # (A whole number too large for a float, 10**400, passed `< inf` and then made
        # every later call fail with OverflowError where a time was computed from it.)
        if not value >= least or not _fits_float(value):
            raise SettingsError(f"{name} must be at least {least} and finite, not {value!r:.60}")
    if settings.retry_max_seconds <= 0:
        raise SettingsError("retry_max_seconds must be more than 0")
    if settings.connect_timeout <= 0:
        raise SettingsError("connect_timeout must be more than 0")
    check_author(settings.author)
    if not isinstance(settings.allow_local_links, bool):
        raise SettingsError("allow_local_links must be True or False")
    for name in ("link_schemes", "allowed_hosts"):
        values = getattr(settings, name)
        if not all(isinstance(v, str) for v in values):
            raise SettingsError(f"{name} must be a collection of strings")
    return settings


def _fits_float(value: float) -> bool:
    """Is `value` finite, also as a float (a whole number may be too large for one)?"""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def check_author(author: object) -> None:
    """`SettingsError` unless `author` is one printable line of text, short, without
    anything that looks like a credential (it is written into every move's history)."""
    if not isinstance(author, str):
        raise SettingsError(f"author must be a string, not {type(author).__name__}")
    if len(author) > AUTHOR_MAX_CHARS:
        raise SettingsError(f"author must be at most {AUTHOR_MAX_CHARS} characters")
    if not author.isprintable():
        raise SettingsError("author must be one line of printable characters")
    if looks_secret(author):
        raise SettingsError("author looks like it holds a credential; it is never recorded")


_current = _from_env()


def current() -> Settings:
    return _current


def configure(**changes: Any) -> Settings:
    """Change settings for this process; returns the previous ones.

    >>> from mlemremote.api import configure
    >>> previous = configure(retry_attempts=3, max_metafile_bytes=64 * 1024)
    >>> _ = configure(**previous.__dict__)
    """
    global _current
    previous = _current
    unknown = set(changes) - {f.name for f in dataclasses.fields(Settings)}
    if unknown:
        raise SettingsError(f"unknown settings: {', '.join(sorted(map(str, unknown)))}")
    for name in ("link_schemes", "allowed_hosts"):
        if name in changes:
            value = changes[name]
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise SettingsError(f"{name} must be a collection of strings, not {value!r}")
            changes[name] = frozenset(v.lower() if isinstance(v, str) else v for v in value)
    _current = _checked(dataclasses.replace(_current, **changes))
    return previous


@contextmanager
def configured(**changes: Any) -> Iterator[Settings]:
    """`configure()` for a `with` block."""
    previous = configure(**changes)
    try:
        yield _current
    finally:
        configure(**dataclasses.asdict(previous))
