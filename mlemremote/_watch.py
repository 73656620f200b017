"""Watching an alias: poll every hop of its chain, report when what it resolves to changes.

A watch resolves the alias as `load_meta` does and keeps the bytes of every metafile of
the chain (the alias, each link, the final object). Each poll then asks each hop's store
whether its file still holds those bytes (`Store.read_if_changed`: one conditional
request, and no body, where the backend allows it) and resolves the alias again only when
one does not. An event is made only when the bytes of the chain differ from those last
reported: a hop rewritten with the same bytes, or changed and changed back between two
polls, is no change (a move by `link` always changes the bytes: each write has its id).
A resolution reads the hops one after the other; each hop read before the last is then
asked again (one conditional request each), and the chain is resolved again while one
moved: a hop that moved while a later one was read never makes a chain that never was.

What is reported, and what never is:

- a change that resolves: an event with the new object (`ok`);
- a change to a broken target (dangling, a cycle, a wrong type, a link the policy
  refuses, invalid YAML): an event with the error and the last good object, which stays
  what the watch serves (`ok` is False); each broken state is reported once (after a
  second resolution agrees: a chain torn by a move during its reading can look broken),
  and while it lasts every poll resolves the alias in full, so that a repair is seen at
  once;
- a fault (the store cannot be reached, 5xx past the retries, a refused request): no
  event. The store's own retries run first; then the poll is given up, a warning is
  logged, `fault` says why, and the next poll comes later (the interval plus a backoff
  that grows with each fault in a row, as `retrying` waits). A fault never ends a watch.

Every `verify_every`-th poll reads every hop unconditionally and resolves the alias in full:
that bounds what a server that answers 304 wrongly, or a file that took over the alias's
name in MLEM's lookup order (the path before `.mlem/link/`), could hide. A chain through a
git revision is resolved in full at every poll: a branch is looked up again (one ref
listing for a remote repository; its commits come from the cache).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generic, Protocol, TypeVar

from mlemremote import _links
from mlemremote._boundary import scope
from mlemremote._location import Location
from mlemremote._redact import printable, redact
from mlemremote._stores import UNCHANGED, Blob, backoff, store_for
from mlemremote.core.errors import (
    BucketNotFoundError,
    GitRepoNotFoundError,
    MlemError,
    NotAFileError,
    StorageError,
    UnexpectedError,
)

logger = logging.getLogger("mlemremote")
_RESOLVE_TRIES = 3  # resolutions in one poll while hops move as they are read
_CLOSE_SLICE = 0.5  # seconds: how soon close() ends a wait on a caller's stop event
_LONGEST_WAIT = min(threading.TIMEOUT_MAX, 86400.0)  # one wait on an event, at most


class Hop(Protocol):
    """What a watch needs of a loaded object (`core.objects.MlemObject` is one)."""

    @property
    def object_type(self) -> str: ...

    @property
    def location(self) -> Location | None: ...


ObjT = TypeVar("ObjT", bound=Hop)
# Resolves the alias: every object of its chain, the alias first and the final object
# last; `first` is True for the watch's first resolution.
ResolveChain = Callable[[bool], list[ObjT]]


@dataclass(frozen=True)
class WatchEvent(Generic[ObjT]):
    """What a watch yields: the alias resolves to something new, or its new target is
    broken.

    `obj` is what to serve: the object the alias resolves to now when `ok`; when not,
    the last good object (None when there never was one) while `error` says why the
    alias's current target cannot be used. `chain` lists the metafiles from the alias to
    `obj`; `changed` those whose bytes differ from the last event (every one of them in
    the first); `poll` counts the polls made so far (1: the first resolution).
    """

    obj: ObjT | None
    error: MlemError | None
    chain: tuple[str, ...]
    changed: tuple[str, ...]
    poll: int
    time: datetime

    @property
    def ok(self) -> bool:
        """True when `obj` is what the alias resolves to now; False while it is the last
        good object, kept because the alias moved to a broken target (`error`)."""
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready mapping (what `mlemremote watch` prints)."""
        location = None if self.obj is None else self.obj.location
        return {
            "status": "ok" if self.ok else "broken",
            "poll": self.poll,
            "time": self.time.isoformat(),
            "uri": None if location is None else str(location),
            "object_type": None if self.obj is None else self.obj.object_type,
            "chain": list(self.chain),
            "changed": list(self.changed),
            "error": None if self.error is None else str(self.error),
            "error_type": None if self.error is None else type(self.error).__name__,
        }


def _shown(text: str) -> str:
    """A log line: credentials masked, control characters (from a hostile link's path, in
    an error's text) escaped."""
    return printable(redact(text))


def is_fault(exc: MlemError) -> bool:
    """Could the watch not look (a storage fault), rather than found something broken?"""
    if isinstance(exc, (NotAFileError, BucketNotFoundError, GitRepoNotFoundError)):
        return False  # what is stored is wrong: broken
    return isinstance(exc, (StorageError, UnexpectedError))


@dataclass
class _Hop:
    uri: str
    loc: Location
    blob: Blob


class Watch(Generic[ObjT]):
    """An iterator of `WatchEvent`s for one alias (made by `mlemremote.api.watch`).

    Iterating waits `interval` seconds (jittered) between polls and yields an event for
    each change; `poll()` makes one poll now and returns its event or None. It ends after
    `max_events` events, when `stop` is set, or after `close()`. `error` is the broken
    target's error while the alias is broken (None: what it serves is current);
    `fault` the last poll's storage fault (None once a poll gets through).
    """

    def __init__(
        self,
        resolve_chain: ResolveChain[ObjT],
        what: str,
        *,
        interval: float,
        jitter: float,
        verify_every: int | None,
        max_events: int | None,
        stop: threading.Event | None,
    ) -> None:
        self._resolve_chain = resolve_chain
        self.what = what
        self.interval = interval
        self.jitter = jitter
        self.verify_every = verify_every
        self.max_events = max_events
        self._own_stop = stop is None
        self._stop = stop if stop is not None else threading.Event()
        self._closed = False
        self._random = random.Random()
        self.polls = 0
        self.events = 0
        self.last_good: ObjT | None = None
        self.error: MlemError | None = None
        self.fault: MlemError | None = None
        self._faults = 0  # faulted polls in a row
        self._hops: list[_Hop] = []  # the chain as last resolved (empty while broken)
        self._good: tuple[tuple[str, bytes], ...] | None = None  # the bytes last served
        self._chain: tuple[str, ...] = ()  # the chain of `last_good`
        self._broken: tuple[str, str] | None = None  # the broken state last reported
        self._resolved_once = False  # (the first resolution warns of hidden objects)

    # -- iterating ---------------------------------------------------------------------
    def __iter__(self) -> Iterator[WatchEvent[ObjT]]:
        return self

    def __next__(self) -> WatchEvent[ObjT]:
        while True:
            if self._done():
                raise StopIteration
            if self.polls and self._wait(self.next_wait()):
                raise StopIteration
            if self._closed:
                raise StopIteration
            event = self.poll()
            if event is not None:
                return event

    def _done(self) -> bool:
        spent = self.max_events is not None and self.events >= self.max_events
        return self._closed or spent or self._stop.is_set()

    def close(self) -> None:
        """End the iteration; from another thread too (a wait in progress ends within
        `_CLOSE_SLICE` seconds, at once when the watch has its own `stop` event)."""
        self._closed = True
        if self._own_stop:
            self._stop.set()

    def _wait(self, seconds: float) -> bool:
        """Wait `seconds`; True when the watch was stopped or closed meanwhile. (An
        event's wait cannot be longer than `threading.TIMEOUT_MAX`: an interval of a
        billion seconds raised OverflowError; a caller's `stop` event is waited on in
        slices, so that `close()` from another thread ends the wait too.)"""
        end = time.monotonic() + seconds
        while not self._closed:
            left = end - time.monotonic()
            if left <= 0:
                return False
            step = left if self._own_stop else _CLOSE_SLICE
            if self._stop.wait(min(left, step, _LONGEST_WAIT)):
                return True
        return True

    def __enter__(self) -> Watch[ObjT]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next_wait(self) -> float:
        """Seconds until the next poll: the interval, jittered, plus a backoff after
        faults in a row."""
        wait = self.interval * self._random.uniform(1 - self.jitter, 1 + self.jitter)
        return wait + (backoff(self._faults) if self._faults else 0.0)

    # -- one poll ----------------------------------------------------------------------
    def poll(self) -> WatchEvent[ObjT] | None:
        """Poll once, now: the event this poll makes, or None (nothing changed, or a
        fault: then `fault` says which; or the watch is closed: nothing is read)."""
        if self._closed:
            return None
        self.polls += 1
        try:
            with scope("watch"):
                event = self._poll()
        except MlemError as exc:
            if not is_fault(exc):
                raise
            self._faulted(exc)
            return None
        if self.fault is not None:
            logger.info(_shown(f"watch {self.what}: polling again after {self._faults} fault(s)"))
        self.fault, self._faults = None, 0
        if event is not None:
            self.events += 1
        return event

    def _poll(self) -> WatchEvent[ObjT] | None:
        # (A hop in a git revision at a branch moves with the branch, which only a new
        # resolution looks up again: one ref listing, the commit read from the cache.)
        full = (
            not self._hops
            or (self.verify_every is not None and self.polls % self.verify_every == 0)
            or any(hop.loc.git_root is not None for hop in self._hops)
        )
        if not full and not self._probe(self._hops):
            return None
        for attempt in range(_RESOLVE_TRIES):
            try:
                objects, hops = self._resolve()
            except MlemError as exc:
                if is_fault(exc):
                    raise
                # A new broken state is confirmed by a second resolution: a torn read
                # (prod's old bytes -> mid's new ones) can look broken too.
                new = (type(exc).__name__, str(exc)) != self._broken
                if new and attempt == 0:
                    continue
                return self._went_broken(exc)
            # The hops were read one after the other: one that moved while a later one
            # was read makes a chain that never was (prod's old bytes -> mid's new
            # ones). Each hop read before the last is asked again, after it: unchanged,
            # the chain is what the alias resolved to when the last hop was read.
            if not self._probe([hop for hop in hops[:-1] if hop.loc.git_root is None]):
                return self._resolved(objects, hops)
        logger.info(_shown(f"watch {self.what}: the chain kept moving while it was read"))
        self._hops = []  # nothing served from a torn read; the next poll reads it again
        return None

    def _probe(self, hops: list[_Hop]) -> bool:
        """Does any hop's file hold other bytes than when it was read? One conditional
        read per hop, in order, up to the first that does."""
        for hop in hops:
            try:
                answer = store_for(hop.loc).read_if_changed(hop.loc, hop.blob)
            except MlemError as exc:
                if is_fault(exc):
                    raise
                return True  # e.g. a folder where the file was: resolving says what
            if answer is UNCHANGED:
                continue
            if isinstance(answer, Blob) and answer.data == hop.blob.data:
                hop.blob = answer  # written again with the same bytes: no change
                continue
            return True
        return False

    def _resolve(self) -> tuple[list[ObjT], list[_Hop]]:
        with _links.capturing() as seen:
            objects = self._resolve_chain(not self._resolved_once)
        self._resolved_once = True
        hops: list[_Hop] = []
        for obj in objects:
            where = obj.location
            read = seen.get(str(where)) if where is not None else None
            if where is None or read is None or read[1] is None:
                raise UnexpectedError(f"watch {self.what}: {where} was not read as a metafile")
            hops.append(_Hop(str(where), read[0], read[1]))
        return objects, hops

    def _resolved(self, objects: list[ObjT], hops: list[_Hop]) -> WatchEvent[ObjT] | None:
        self._hops = hops
        state = tuple((hop.uri, hop.blob.data) for hop in hops)
        was_broken = self.error is not None
        self.error, self._broken = None, None
        if state == self._good and not was_broken:
            return None
        before = dict(self._good or ())
        changed = tuple(uri for uri, data in state if before.get(uri) != data)
        self._good, self._chain = state, tuple(hop.uri for hop in hops)
        self.last_good = objects[-1]
        return self._event(self.last_good, None, self._chain, changed)

    def _went_broken(self, exc: MlemError) -> WatchEvent[ObjT] | None:
        self._hops = []  # while broken, every poll resolves the alias in full
        state = (type(exc).__name__, str(exc))
        if state == self._broken and self.error is not None:
            return None  # the same broken state as reported: its error stays
        self._broken, self.error = state, exc
        logger.warning(
            _shown(
                f"watch {self.what}: the alias now leads to a broken target ({exc}); "
                + ("still serving " + self._chain[-1] if self._chain else "nothing to serve")
            )
        )
        return self._event(self.last_good, exc, self._chain, ())

    def _event(
        self,
        obj: ObjT | None,
        error: MlemError | None,
        chain: tuple[str, ...],
        changed: tuple[str, ...],
    ) -> WatchEvent[ObjT]:
        return WatchEvent(obj, error, chain, changed, self.polls, datetime.now(timezone.utc))

    def _faulted(self, exc: MlemError) -> None:
        self.fault = exc
        self._faults += 1
        if self._faults == 1:
            logger.warning(
                _shown(
                    f"watch {self.what}: a poll failed ({exc}); "
                    "still serving what was last resolved, polling again with backoff"
                )
            )
        else:
            logger.debug(_shown(f"watch {self.what}: poll {self.polls} failed again ({exc})"))
