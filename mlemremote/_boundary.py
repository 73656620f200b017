"""The public API's boundary: one call scope, and only `MlemError` leaves it.

Every public function and method (`api.*`, `MlemObject.dump`, `MlemLink.load_link`, ...)
and every CLI command runs inside `scope`:

- one call scope: repo probes are shared, remotes are read once, and (except for bulk
  calls, whose reads each get it) one time budget of `retry_max_seconds` covers every
  request, slow bodies included;
- a foreign exception that got this far becomes a `MlemError` (`_foreign.to_mlem_error`),
  and no foreign exception stays in the cause chain of what is raised (`_foreign.detach`):
  their texts may hold signed URLs or a line of a file.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from mlemremote._foreign import detach, to_mlem_error
from mlemremote._location import shared_repo_probes
from mlemremote._remotes import remotes_scope
from mlemremote._stores import call_budget
from mlemremote.core.errors import MlemError

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def scope(what: str = "", *, bulk: bool = False) -> Iterator[None]:
    """One public call (see the module's doc); nested scopes share the outer one."""
    try:
        with shared_repo_probes(), remotes_scope():
            if bulk:
                yield
            else:
                with call_budget():
                    yield
    except MlemError as exc:
        detach(exc)
        raise
    except Exception as exc:
        raise detach(to_mlem_error(exc, what)) from None


def public(func: F) -> F:
    """Run `func` in its own `scope`."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with scope(func.__qualname__):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def public_bulk(func: F) -> F:
    """Run `func` in its own `scope` where each read has its own time budget."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with scope(func.__qualname__, bulk=True):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
