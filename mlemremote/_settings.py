"""Process-wide settings: retries, the metafile size cap, what links may point to."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# Schemes a link may name. http(s) is left out so that a link written by someone else
# cannot make us fetch arbitrary URLs (e.g. a cloud metadata endpoint); add it with
# configure(link_schemes=...) when you trust the links you read.
DEFAULT_LINK_SCHEMES = frozenset({"file", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})


@dataclass(frozen=True)
class Settings:
    """What `configure()` sets. Defaults come from `MLEMREMOTE_*` environment variables."""

    retry_attempts: int = 5  # tries of one request, the first included
    retry_max_seconds: float = 60.0  # total time one request may spend retrying
    retry_initial_wait: float = 0.2  # first backoff; doubles, with full jitter
    retry_max_wait: float = 10.0  # longest single backoff
    max_metafile_bytes: int = 1 << 20  # larger metafiles are refused, not read
    link_schemes: frozenset[str] = DEFAULT_LINK_SCHEMES
    # A link stored on a remote backend may name a local path (or file://) only if True.
    allow_local_links: bool = False


def _from_env() -> Settings:
    env = os.environ
    defaults = Settings()
    return Settings(
        retry_attempts=int(env.get("MLEMREMOTE_RETRY_ATTEMPTS", defaults.retry_attempts)),
        retry_max_seconds=float(
            env.get("MLEMREMOTE_RETRY_MAX_SECONDS", defaults.retry_max_seconds)
        ),
        max_metafile_bytes=int(
            env.get("MLEMREMOTE_MAX_METAFILE_BYTES", defaults.max_metafile_bytes)
        ),
    )


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
    if "link_schemes" in changes:
        changes["link_schemes"] = frozenset(changes["link_schemes"])
    _current = dataclasses.replace(_current, **changes)
    if _current.retry_attempts < 1 or _current.max_metafile_bytes < 1:
        _current = previous
        raise ValueError("retry_attempts and max_metafile_bytes must be at least 1")
    return previous


@contextmanager
def configured(**changes: Any) -> Iterator[Settings]:
    """`configure()` for a `with` block."""
    previous = configure(**changes)
    try:
        yield _current
    finally:
        configure(**dataclasses.asdict(previous))
