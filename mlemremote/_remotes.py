"""Remotes: storage options per URL prefix, in the spirit of DVC's remotes.

Two places define them, both as a `remotes:` mapping of name -> settings:

- the user's config file (`$MLEMREMOTE_CONFIG`, else `$XDG_CONFIG_HOME/mlemremote/config.yaml`,
  else `~/.config/mlemremote/config.yaml`): any fsspec option, and `env:`, option names
  mapped to environment variables that hold secrets;
- the repo's `.mlem/config.yaml`, shared with the team: non-secret options only
  (endpoints, profiles, `anon`, project); secrets and `env:` there are refused.

    remotes:
      onprem:
        url: s3://onprem-bucket
        options: {endpoint_url: "https://minio.example.com"}
        env: {key: ONPREM_ACCESS_KEY, secret: ONPREM_SECRET_KEY}   # user config only

For a URI, each config's remote with the longest matching `url` applies; the user's
options win over the repo's (see `_options` for every source and its precedence). An
endpoint that only the repo's remote names gets none of your credentials unless your
user config has a remote for the very same `url` (the repo says where, you say who).

A remote of the user's config can also serve other URLs, as Git's `url.<base>.insteadOf`
does: a URL that starts with one of its `insteadof` prefixes is read from its `url`
instead (the longest prefix wins), with its settings. For a git server the settings are
`username` and, through `env:`, `password` or `token`:

    remotes:
      github-mirror:
        url: https://git.example.com/mirror/
        insteadof: https://github.com/          # or a list of prefixes
        options: {username: x-access-token}
        env: {token: MIRROR_TOKEN}
Only the repo the caller named is asked for remotes (not repos reached by following
links, which other teams write), and only when a link leaves the caller's bucket.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlemremote import _yaml
from mlemremote._redact import is_secret_name
from mlemremote.core.errors import RemoteConfigError

USER_CONFIG_ENV = "MLEMREMOTE_CONFIG"
ALLOWED_IN_REPO = {("token", "anon")}  # gcsfs's anonymous access is not a secret


@dataclass(frozen=True)
class Remote:
    """Storage options for every URI below `url`."""

    name: str
    url: str
    options: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)  # option -> environment variable
    origin: str = ""
    insteadof: tuple[str, ...] = ()  # URL prefixes read from `url` instead

    def matches(self, uri: str) -> bool:
        prefix = self.url.rstrip("/")
        return uri == prefix or uri.startswith(prefix + "/")

    def storage_options(self) -> dict[str, Any]:
        """The options, with secrets read from the environment now."""
        resolved = dict(self.options)
        for option, variable in self.env.items():
            if variable not in os.environ:
                raise RemoteConfigError(
                    f"remote {self.name!r} ({self.origin}): environment variable {variable} "
                    f"(for {option}) is not set"
                )
            resolved[option] = os.environ[variable]
        return resolved


def parse_remotes(content: Any, origin: str, *, shared: bool) -> list[Remote]:
    """The `remotes:` of a config file's content. `shared`: a repo's config, where
    secrets and environment lookups are refused."""
    if content is None:
        return []
    if not isinstance(content, dict):
        raise RemoteConfigError(f"{origin}: a config file must be a YAML mapping")
    section = content.get("remotes") or {}
    if not isinstance(section, dict):
        raise RemoteConfigError(f"{origin}: 'remotes' must be a mapping of name -> settings")
    found = []
    for name, settings in section.items():
        where = f"remote {name!r} in {origin}"
        if not isinstance(settings, dict) or not isinstance(settings.get("url"), str):
            raise RemoteConfigError(f"{where}: needs a 'url' (e.g. s3://bucket)")
        unknown = set(settings) - {"url", "options", "env", "insteadof", "insteadOf"}
        if unknown:
            raise RemoteConfigError(f"{where}: unknown settings {sorted(unknown)}")
        options = settings.get("options") or {}
        env = settings.get("env") or {}
        if not isinstance(options, dict) or not isinstance(env, dict):
            raise RemoteConfigError(f"{where}: 'options' and 'env' must be mappings")
        instead = settings.get("insteadof", settings.get("insteadOf")) or []
        prefixes = [instead] if isinstance(instead, str) else instead
        if not isinstance(prefixes, list) or not all(
            isinstance(p, str) and "://" in p for p in prefixes
        ):
            raise RemoteConfigError(f"{where}: 'insteadof' must be a URL prefix or a list of them")
        for what, present in (("env", env), ("insteadof", prefixes)):
            if shared and present:
                # (A rewrite decides which server gets asked: the user's choice, as in Git.)
                raise RemoteConfigError(
                    f"{where}: '{what}' belongs in your user config ({user_config_path()}), "
                    "not in a repo's config that others write"
                )
        if shared:
            _refuse_secrets(options, where)
            _refuse_transport(options, where)
        found.append(Remote(str(name), settings["url"], options, env, origin, tuple(prefixes)))
    return found


def _refuse_secrets(options: Mapping[str, Any], where: str) -> None:
    for option, value in options.items():
        if isinstance(value, dict):
            _refuse_secrets(value, where)
        elif is_secret_name(str(option)) and (str(option), value) not in ALLOWED_IN_REPO:
            raise RemoteConfigError(
                f"{where}: option {option!r} looks like a secret; a repo's config is shared, "
                "so put it in your user config (as 'env:') instead"
            )


# Options that weaken or reroute the user's connections (TLS off, no certificate check,
# a proxy, an object of the caller's own): never from a config that others write.
_TRANSPORT = frozenset({
    "use_ssl", "verify", "proxies", "proxy", "proxies_config", "session", "request_session",
    "session_kwargs", "connector_args", "http_session_cls", "trust_env", "ssl",
})  # fmt: skip


def _refuse_transport(options: Mapping[str, Any], where: str, prefix: str = "") -> None:
    for option, value in options.items():
        name = f"{prefix}{option}"
        if str(option).lower() in _TRANSPORT:
            raise RemoteConfigError(
                f"{where}: option {name!r} changes how your connections are made (TLS, "
                "certificates, proxies); a repo's config is shared, so put it in your user "
                f"config ({user_config_path()}) instead"
            )
        if isinstance(value, Mapping):
            _refuse_transport(value, where, f"{name}.")


def user_config_path() -> Path:
    if os.environ.get(USER_CONFIG_ENV):
        return Path(os.environ[USER_CONFIG_ENV])
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "mlemremote" / "config.yaml"


def user_remotes() -> list[Remote]:
    path = user_config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise RemoteConfigError(f"cannot read {path}: {exc}") from exc
    content = _yaml.load(text.encode(), str(path))
    return parse_remotes(content, str(path), shared=False)


class Remotes:
    """The remotes that apply during one API call: the user's, and (read lazily, at the
    first link that leaves the caller's bucket) those of the repo the caller named."""

    def __init__(self) -> None:
        self.user = user_remotes()
        # The caller's repo config: how to read it (one GET) and its name for messages.
        self.repo_config: tuple[Callable[[], bytes | None], str] | None = None
        self._repo: list[Remote] | None = None

    def for_uri(self, uri: str, *, repo: bool = True) -> tuple[Remote | None, Remote | None]:
        """(the user's remote for `uri`, the repo's unless not `repo`): in each config, the
        one with the longest matching url. The user's comes first: its options win."""
        return _longest(self.user, uri), _longest(self._repo_remotes(), uri) if repo else None

    def match(self, uri: str) -> Remote | None:
        """The remote for `uri`: the repo's and the user's (see `for_uri`) merged, the
        user's options (and secrets from `env`) on top."""
        chosen = [r for r in reversed(self.for_uri(uri)) if r is not None]
        if len(chosen) <= 1:
            return chosen[0] if chosen else None
        options: dict[str, Any] = {}
        env: dict[str, str] = {}
        for remote in chosen:  # repo first, then user: the user's settings win
            options.update(remote.options)
            env.update(remote.env)
        names = "+".join(dict.fromkeys(r.name for r in chosen))
        origin = ", ".join(r.origin for r in chosen)
        return Remote(names, chosen[-1].url, options, env, origin)

    def rewrite(self, uri: str) -> tuple[str, Remote | None]:
        """`uri` after the user's `insteadof` rewrites (the longest prefix wins, as in Git),
        and the remote that rewrote it."""
        best: tuple[int, str, Remote] | None = None
        for remote in self.user:
            for prefix in remote.insteadof:
                if _under(uri, prefix) and (best is None or len(prefix) > best[0]):
                    best = (len(prefix), prefix, remote)
        if best is None:
            return uri, None
        _, prefix, remote = best
        rest = uri[len(prefix.rstrip("/")) :].lstrip("/")
        return (remote.url.rstrip("/") + "/" + rest if rest else remote.url), remote

    def user_names(self, uri: str) -> bool:
        """Does a remote of the user's config name `uri` (by `url` or `insteadof`)?"""
        return any(r.matches(uri) or any(_under(uri, p) for p in r.insteadof) for r in self.user)

    def _repo_remotes(self) -> list[Remote]:
        if self.repo_config is None:
            return []  # no repo named (yet)
        if self._repo is None:
            read, origin = self.repo_config
            data = read()
            content = _yaml.load(data, origin) if data else None
            self._repo = parse_remotes(content, origin, shared=True)
        return self._repo


def _longest(remotes: list[Remote], uri: str) -> Remote | None:
    """The remote of one config for `uri`: the longest matching url (remotes of that
    config with the same url merge, the later on top)."""
    matching = [r for r in remotes if r.matches(uri)]
    if not matching:
        return None
    longest = max(len(r.url.rstrip("/")) for r in matching)
    chosen = [r for r in matching if len(r.url.rstrip("/")) == longest]
    if len(chosen) == 1:
        return chosen[0]
    options: dict[str, Any] = {}
    env: dict[str, str] = {}
    for remote in chosen:
        options.update(remote.options)
        env.update(remote.env)
    names = "+".join(dict.fromkeys(r.name for r in chosen))
    return Remote(names, chosen[-1].url, options, env, chosen[-1].origin)


def _under(uri: str, prefix: str) -> bool:
    """Is `uri` the URL `prefix`, or below it? Only at a `/`: `https://github.com` covers
    neither `https://github.com.evil.net` nor `https://github.com:8080`."""
    base = prefix.rstrip("/")
    return uri == base or uri.startswith(base + "/")


_current: ContextVar[Remotes | None] = ContextVar("mlemremote_remotes", default=None)


@contextmanager
def remotes_scope() -> Iterator[Remotes]:
    """The remotes of one API call (nested calls share the outer one)."""
    active = _current.get()
    if active is not None:
        yield active
        return
    remotes = Remotes()
    token = _current.set(remotes)
    try:
        yield remotes
    finally:
        _current.reset(token)


def current() -> Remotes | None:
    return _current.get()
