"""Storage options: the one step that merges every source of them (issue 14).

Options reach a filesystem from these sources, most specific first; each option is taken
from the first source that gives it:

1. the call: `storage_options=` (the CLI's `-o`), for the locations named in the call;
2. your remote for the URI (your user config; the longest matching `url` there);
3. the repo's remote for the URI (the named repo's `.mlem/config.yaml`; no secrets),
   for locations the call reaches without options of its own (link targets, the source
   `link` reads for a target repo): a shared config is never mixed into the call's;
4. fsspec's configuration, `fsspec.config.conf[protocol]`, which fsspec fills from
   `FSSPEC_<PROTOCOL>_<OPTION>` variables and `~/.config/fsspec/` when it is imported;
5. mlemremote's default connect timeout (`configure(connect_timeout=...)`);
6. the SDK's environment (`AWS_*`, `AZURE_STORAGE_*`, `STORAGE_EMULATOR_HOST`, ...), which
   botocore, adlfs and gcsfs read themselves for what nothing above sets.

How they merge (`plan_for`):

- option by option; an option named `*_kwargs` (`client_kwargs`, `config_kwargs`, ...) is
  a mapping merged key by key; any other value is replaced whole (a gcsfs `token` dict);
- equivalent spellings are one option: s3fs's `endpoint_url` and
  `client_kwargs.endpoint_url`, `key`/`username`/`client_kwargs.aws_access_key_id`, ...;
  gcsfs's `anon: true` and `token: anon`. They are never passed twice;
- alternatives (`connection_string` or `account_name`/`account_key` for adlfs; `anon`,
  `key`/`secret`/`token` or `profile` for s3fs) come from one source: the most specific
  source that gives any of them decides, and the others are dropped from the sources below
  it, so that a backend's own preference (adlfs always prefers a connection string) never
  silently undoes it;
- two spellings with different values, or two alternatives, in one source; an option the
  backend does not take: `StorageOptionError`, one line naming the option and its source
  (never the value);
- an endpoint only a repo's remote names gets no credentials of yours (unless anonymous,
  or you name the same endpoint, or your user config has a remote for the very URL of
  the repo's remote); an adlfs credential variable (`$AZURE_STORAGE_ACCOUNT_KEY`, ...)
  that would replace the credential the options chose: `StorageOptionError` too.

`Plan.rows` tell every option used, every one overridden and every SDK variable in play,
with its source, secrets masked (`api.explain_storage_options`, `show --explain-config`).

>>> kwargs = plan_for("s3", [
...     Layer("the call", {"client_kwargs": {"endpoint_url": "http://a"}}),
...     Layer("fsspec", {"endpoint_url": "http://b", "key": "k3y-id"}),
... ], fsspec_config=False).kwargs
>>> kwargs["endpoint_url"], kwargs["key"]
('http://a', 'k3y-id')
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec
import fsspec.config
from fsspec.spec import AbstractFileSystem

from mlemremote._redact import MASK, is_secret_name, redact
from mlemremote._remotes import Remote
from mlemremote._settings import current as current_settings
from mlemremote.core.errors import StorageOptionError

OptionPath = tuple[str, ...]

CALL = "the call's storage options (storage_options= / -o)"
DEFAULT = "mlemremote's default (configure(connect_timeout=...))"
SDK = "the SDK's environment"
# Names of options (or headers inside `*_kwargs`) whose values are shown masked, besides
# those `_redact.is_secret_name` knows.
_SECRET_TOO = ("auth", "cookie", "signature", "private", "passwd", "cred")
# gcsfs `token` values that name a method, not a credential.
_PUBLIC_VALUES = frozenset({"anon", "google_default", "cache", "cloud", "browser"})


@dataclass(frozen=True)
class Layer:
    """One source of options: its name for messages, its options and, per top-level
    option, where exactly it came from (an environment variable)."""

    source: str
    options: Mapping[str, Any]
    detail: Mapping[str, str] = field(default_factory=dict)
    shared: bool = False  # a repo's config: written by others
    url: str = ""  # a remote's: the URL it is for

    def where(self, path: OptionPath) -> str:
        extra = self.detail.get(path[0])
        return f"{self.source}, from {extra}" if extra else self.source


@dataclass(frozen=True)
class Row:
    """One line of an explanation: an option (or an SDK environment variable), its value
    as shown (secrets masked), its source and whether it is used."""

    option: str
    value: str
    source: str
    used: bool
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "option": self.option,
            "value": self.value,
            "source": self.source,
            "used": self.used,
            "note": self.note,
        }


@dataclass
class Plan:
    """The keyword arguments for one filesystem, and how each came to be."""

    backend: str  # the package that takes them: s3fs, gcsfs, adlfs, ...
    kwargs: dict[str, Any]
    rows: list[Row]
    problem: StorageOptionError | None = None  # what `strict` would have raised


# -- what each backend takes ------------------------------------------------------------
_DROP: Any = object()


def _gcs_anon(value: Any) -> Any:
    if value is True:
        return "anon"
    if value is False or value is None:
        return _DROP
    raise StorageOptionError("anon must be true or false")  # (named with its source below)


@dataclass(frozen=True)
class Alias:
    spelling: OptionPath
    canonical: OptionPath
    convert: Callable[[Any], Any] | None = None  # the value in canonical form (_DROP: none)


@dataclass(frozen=True)
class EnvVar:
    """A variable the SDK reads for `option` when none of `shadows` is set."""

    name: str
    option: str
    shadows: frozenset[OptionPath]


@dataclass(frozen=True)
class Rules:
    package: str
    sdk: str = ""  # what reads the environment variables
    aliases: tuple[Alias, ...] = ()
    alternatives: tuple[tuple[frozenset[OptionPath], ...], ...] = ()
    environment: tuple[EnvVar, ...] = ()
    # mlemremote's defaults for the backend, from the connect timeout setting.
    timeout: Callable[[float], list[tuple[OptionPath, Any]]] | None = None
    accepted: Callable[..., frozenset[str]] | None = None
    nested: Mapping[str, Callable[..., frozenset[str]]] = field(default_factory=dict)
    hints: Mapping[str, str] = field(default_factory=dict)
    # Where requests (and so credentials) go: the option, and whether the merged options
    # send none (anonymous access).
    endpoint: OptionPath | None = None
    anonymous: Callable[[Mapping[OptionPath, Any]], bool] = lambda merged: False


def _paths(*names: str) -> frozenset[OptionPath]:
    return frozenset(tuple(n.split(".")) for n in names)


def _env(name: str, option: str, *shadows: str) -> EnvVar:
    return EnvVar(name, option, _paths(option, *shadows))


_LISTING = frozenset({"use_listings_cache", "listings_expiry_time", "max_paths"})
_FSSPEC = _LISTING | {"skip_instance_cache"}


def _named(func: Any) -> set[str]:
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - a C function
        return set()
    return {p.name for p in params if p.kind in kinds} - {"self"}


def _init_names(cls: type[AbstractFileSystem]) -> set[str]:
    """The keyword arguments `cls(...)` names: its own `__init__`'s and, while an
    `__init__` takes `**kwargs` (and so hands them on), those of the classes it inherits
    from. (gcsfs's `ExtendedGcsFileSystem`, the class for gs:// unless
    `GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`, names only its own few and hands the rest
    to `GCSFileSystem`.)"""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        names |= _named(init)
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):  # pragma: no cover - a C function
            break
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            break
    return names


@functools.cache
def _s3_accepted(cls: type[AbstractFileSystem]) -> frozenset[str]:
    # s3fs hands what it does not name to aiobotocore's session (`profile`, ...).
    from aiobotocore.session import AioSession

    return frozenset(_init_names(cls) | _named(AioSession.__init__) | _FSSPEC)


@functools.cache
def _s3_client_kwargs() -> frozenset[str]:
    from botocore.session import Session

    return frozenset(_named(Session.create_client) - {"service_name", "config"})


@functools.cache
def _s3_config_kwargs() -> frozenset[str]:
    from aiobotocore.config import AioConfig

    return frozenset(set(AioConfig.OPTION_DEFAULTS) | _named(AioConfig.__init__))


@functools.cache
def _gcs_accepted(cls: type[AbstractFileSystem]) -> frozenset[str]:
    # gcsfs hands the rest to fsspec, which ignores what it does not know.
    from fsspec.asyn import AsyncFileSystem

    return frozenset(_init_names(cls) | _named(AsyncFileSystem.__init__) | _FSSPEC)


# adlfs hands the rest to azure-identity's DefaultAzureCredential (when it uses one).
_AZURE_IDENTITY = frozenset({
    "authority", "broker_client_id", "broker_tenant_id", "interactive_browser_client_id",
    "interactive_browser_tenant_id", "managed_identity_client_id", "process_timeout",
    "require_envvar", "shared_cache_tenant_id", "shared_cache_username",
    "visual_studio_code_tenant_id", "workload_identity_client_id",
    "workload_identity_tenant_id", "additionally_allowed_tenants",
})  # fmt: skip


@functools.cache
def _azure_accepted(cls: type[AbstractFileSystem]) -> frozenset[str]:
    return frozenset(_init_names(cls) | _FSSPEC | _AZURE_IDENTITY)


def _gcs_timeout(seconds: float) -> list[tuple[OptionPath, Any]]:
    import aiohttp

    return [(("requests_timeout",), aiohttp.ClientTimeout(sock_connect=seconds))]


S3 = Rules(
    "s3fs",
    "botocore",
    aliases=(
        Alias(("client_kwargs", "endpoint_url"), ("endpoint_url",)),
        Alias(("username",), ("key",)),
        Alias(("client_kwargs", "aws_access_key_id"), ("key",)),
        Alias(("password",), ("secret",)),
        Alias(("client_kwargs", "aws_secret_access_key"), ("secret",)),
        Alias(("client_kwargs", "aws_session_token"), ("token",)),
        Alias(("client_kwargs", "use_ssl"), ("use_ssl",)),
        Alias(("config_kwargs", "region_name"), ("client_kwargs", "region_name")),
    ),
    alternatives=((_paths("anon"), _paths("key", "secret", "token"), _paths("profile")),),
    environment=(
        _env("AWS_ENDPOINT_URL_S3", "endpoint_url"),
        _env("AWS_ENDPOINT_URL", "endpoint_url"),
        _env("AWS_ACCESS_KEY_ID", "key", "secret", "token", "profile", "anon"),
        _env("AWS_SECRET_ACCESS_KEY", "secret", "key", "token", "profile", "anon"),
        _env("AWS_SESSION_TOKEN", "token", "key", "secret", "profile", "anon"),
        _env("AWS_DEFAULT_PROFILE", "profile", "key", "secret", "token", "anon"),
        _env("AWS_PROFILE", "profile", "key", "secret", "token", "anon"),
        _env("AWS_DEFAULT_REGION", "client_kwargs.region_name"),
    ),
    timeout=lambda seconds: [
        (("config_kwargs", "connect_timeout"), seconds),
        # One attempt per botocore call: retries are ours (`retry_attempts`, within
        # `retry_max_seconds`), not botocore's inside each of ours (a refused port took
        # a minute of 5 x 5 attempts with backoff).
        (("config_kwargs", "retries"), {"total_max_attempts": 1}),
    ],
    accepted=_s3_accepted,
    nested={"client_kwargs": _s3_client_kwargs, "config_kwargs": _s3_config_kwargs},
    hints={"region_name": "client_kwargs.region_name", "region": "client_kwargs.region_name"},
    endpoint=("endpoint_url",),
    anonymous=lambda merged: merged.get(("anon",)) is True,
)
GCS = Rules(
    "gcsfs",
    "gcsfs and google-auth",
    aliases=(Alias(("anon",), ("token",), _gcs_anon),),
    environment=(
        _env("STORAGE_EMULATOR_HOST", "endpoint_url"),
        _env("GOOGLE_APPLICATION_CREDENTIALS", "token"),
        _env("GCSFS_DEFAULT_PROJECT", "project"),  # (read when gcsfs is imported)
        _env("GOOGLE_CLOUD_PROJECT", "project"),
    ),
    timeout=_gcs_timeout,
    accepted=_gcs_accepted,
    endpoint=("endpoint_url",),
    anonymous=lambda merged: merged.get(("token",)) == "anon",
)
# The variables adlfs reads for a credential (each when its option is not given), in the
# order it prefers them (a connection string: `_check_azure_environment`).
_AZURE_CREDENTIAL_ENV = {
    "account_key": "AZURE_STORAGE_ACCOUNT_KEY",
    "sas_token": "AZURE_STORAGE_SAS_TOKEN",
    "client_id": "AZURE_STORAGE_CLIENT_ID",
}
_AZURE_ACCOUNT = ("account_name", "account_host", "account_key", "sas_token", "credential")
_AZURE_PRINCIPAL = ("client_id", "client_secret", "tenant_id")
AZURE = Rules(
    "adlfs",
    "adlfs",
    alternatives=(
        # The account, and how to sign in to it: a connection string says both.
        (_paths("connection_string"), _paths(*_AZURE_ACCOUNT, *_AZURE_PRINCIPAL, "anon")),
        (
            _paths("account_key"),
            _paths("sas_token"),
            _paths("credential"),
            _paths(*_AZURE_PRINCIPAL),
            _paths("anon"),
        ),
    ),
    environment=(
        _env("AZURE_STORAGE_CONNECTION_STRING", "connection_string"),
        _env("AZURE_STORAGE_ACCOUNT_NAME", "account_name", "connection_string"),
        _env("AZURE_STORAGE_ACCOUNT_KEY", "account_key", "connection_string"),
        _env("AZURE_STORAGE_SAS_TOKEN", "sas_token", "connection_string"),
        _env("AZURE_STORAGE_CLIENT_ID", "client_id", "connection_string"),
        _env("AZURE_STORAGE_CLIENT_SECRET", "client_secret", "connection_string"),
        _env("AZURE_STORAGE_TENANT_ID", "tenant_id", "connection_string"),
        _env("AZURE_STORAGE_ANON", "anon"),
    ),
    timeout=lambda seconds: [(("connection_timeout",), seconds)],
    accepted=_azure_accepted,
    endpoint=("account_host",),
    # (adlfs signs in with a key, SAS token or service principal from the environment
    # even when `anon` is true.)
    anonymous=lambda merged: (
        merged.get(("anon",)) is True
        and not any(os.environ.get(name) for name in _AZURE_CREDENTIAL_ENV.values())
    ),
)
GENERIC = Rules("fsspec")


def protocols_of(cls: type[AbstractFileSystem] | AbstractFileSystem) -> tuple[str, ...]:
    proto = cls.protocol
    return tuple(proto) if isinstance(proto, (tuple, list)) else (proto,)


def rules_for(cls: type[AbstractFileSystem]) -> Rules:
    protocols = set(protocols_of(cls))
    if "s3" in protocols:
        return S3
    if "gs" in protocols:
        return GCS
    if protocols & {"abfs", "az"}:
        return AZURE
    return GENERIC


# -- the sources ---------------------------------------------------------------------------
def fsspec_layers(protocols: Sequence[str]) -> list[Layer]:
    """fsspec's configuration for `protocols`, most specific first (fsspec applies them
    in order, the later on top), each option with the variable it came from if any."""
    layers = []
    for proto in reversed(protocols):
        options = fsspec.config.conf.get(proto)
        if not isinstance(options, Mapping) or not options:
            continue
        detail = {}
        for name in options:
            variable = f"FSSPEC_{proto.upper()}_{str(name).upper()}"
            if variable in os.environ:
                detail[str(name)] = f"${variable}"
            elif f"FSSPEC_{proto.upper()}" in os.environ:
                detail[str(name)] = f"$FSSPEC_{proto.upper()}"
        layers.append(
            Layer(f"fsspec's configuration (fsspec.config.conf[{proto!r}])", options, detail)
        )
    return layers


def remote_layer(remote: Remote, whose: str) -> Layer:
    """A remote's options, secrets read from the environment now."""
    detail = {option: f"${variable}" for option, variable in remote.env.items()}
    return Layer(
        f"{whose} remote {remote.name!r} in {remote.origin}",
        remote.storage_options(),
        detail,
        shared=whose == "the repo's",
        url=remote.url,
    )


def option_layers(
    call: Mapping[str, Any] | None, remotes: tuple[Remote | None, Remote | None]
) -> list[Layer]:
    """The sources above fsspec's configuration, most specific first: the call's options,
    the user's remote, the repo's remote."""
    user, repo = remotes
    layers = [] if call is None else [Layer(CALL, call)]
    if user is not None:
        layers.append(remote_layer(user, "your"))
    if repo is not None:
        layers.append(remote_layer(repo, "the repo's"))
    return layers


# -- the merge -----------------------------------------------------------------------------
def _flatten(options: Mapping[str, Any], layer: Layer) -> dict[OptionPath, Any]:
    """{path: value}: `*_kwargs` mappings (and mappings inside them) descended into."""
    flat: dict[OptionPath, Any] = {}

    def walk(node: Mapping[Any, Any], prefix: OptionPath) -> None:
        for name, value in node.items():
            if not isinstance(name, str) or not name:
                raise StorageOptionError(
                    f"{layer.source}: option names must be non-empty strings, not "
                    f"{type(name).__name__}"
                )
            path = (*prefix, name)
            if isinstance(value, Mapping) and (prefix or name.endswith("_kwargs")):
                walk(value, path)
            else:
                flat[path] = value

    walk(options, ())
    return flat


def _dotted(path: OptionPath) -> str:
    return ".".join(path)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # pragma: no cover - an object whose == raises
        return a is b


def _canonical(
    rules: Rules, layer: Layer, spelled: dict[tuple[int, OptionPath], OptionPath], index: int
) -> dict[OptionPath, Any]:
    """The layer's options with every alias in its canonical spelling (the spelling used
    is noted in `spelled`); two spellings of one option with different values in one
    source are refused."""
    flat = _flatten(layer.options, layer)
    for alias in rules.aliases:
        if alias.spelling not in flat:
            continue
        value = flat.pop(alias.spelling)
        if alias.convert is not None:
            try:
                value = alias.convert(value)
            except StorageOptionError as exc:
                raise StorageOptionError(
                    f"storage option {_dotted(alias.spelling)} ({layer.where(alias.spelling)}): "
                    f"{exc}"
                ) from None
            if value is _DROP:
                continue
        if alias.canonical in flat and not _same(flat[alias.canonical], value):
            raise StorageOptionError(
                f"storage options {_dotted(alias.spelling)} and {_dotted(alias.canonical)} "
                f"({layer.where(alias.canonical)}) are the same option with different values; "
                "give one"
            )
        if alias.canonical not in flat:
            spelled[index, alias.canonical] = alias.spelling
        flat[alias.canonical] = value
    return flat


def _counts(flat: Mapping[OptionPath, Any], path: OptionPath) -> bool:
    """Does `path` take part in choosing an alternative? (Not when False or None:
    `anon: false` chooses nothing.)"""
    return path in flat and flat[path] is not None and flat[path] is not False


def plan_for(
    scheme_or_cls: str | type[AbstractFileSystem],
    layers: Sequence[Layer],
    *,
    strict: bool = True,
    fsspec_config: bool = True,
    explain: bool = False,
) -> Plan:
    """Merge `layers` (most specific first), then fsspec's configuration and the default
    timeout, into the keyword arguments of the filesystem class. `strict`: raise
    `StorageOptionError` on a conflict or an unknown option (else kept in `problem`);
    `explain`: fill `rows` (the source of every option, secrets masked)."""
    cls = (
        fsspec.get_filesystem_class(scheme_or_cls)
        if isinstance(scheme_or_cls, str)
        else scheme_or_cls
    )
    rules = rules_for(cls)
    protocols = protocols_of(cls)
    stack = [*layers, *(fsspec_layers(protocols) if fsspec_config else [])]
    if rules.timeout is not None:
        default: dict[str, Any] = {}
        for path, value in rules.timeout(current_settings().connect_timeout):
            if len(path) == 2:
                default.setdefault(path[0], {})[path[1]] = value
            else:
                default[path[0]] = value
        stack.append(Layer(DEFAULT, default))
    spelled: dict[tuple[int, OptionPath], OptionPath] = {}
    flats = [_canonical(rules, layer, spelled, i) for i, layer in enumerate(stack)]
    if rules.timeout is not None:
        # A default that is a mapping (botocore's `retries`) stands back whole when any
        # source sets part of it: its keys must not mix with the source's.
        given = {path[:2] for flat in flats[:-1] for path in flat if len(path) > 2}
        flats[-1] = {p: v for p, v in flats[-1].items() if len(p) < 3 or p[:2] not in given}
    rows: list[Row] = []
    problem: StorageOptionError | None = None

    position = {id(layer): i for i, layer in enumerate(stack)}

    def label(path: OptionPath, layer: Layer) -> str:
        given = spelled.get((position[id(layer)], path))
        return _dotted(path) + (f" (as {_dotted(given)})" if given else "")

    def overridden(path: OptionPath, value: Any, loser: Layer, winner: Layer) -> None:
        if not explain:
            return
        rows.append(
            Row(
                label(path, loser),
                shown(path, value),
                loser.where(path),
                False,
                f"overridden by {winner.where(path)}",
            )
        )

    # Alternatives: the most specific source that gives one decides.
    for group in rules.alternatives:
        decided: tuple[frozenset[OptionPath], Layer] | None = None
        for layer, flat in zip(stack, flats, strict=True):
            if decided is None:
                used = [s for s in group if any(_counts(flat, p) for p in s)]
                if len(used) > 1:
                    found = [min(p for p in s if _counts(flat, p)) for s in used]
                    raise StorageOptionError(
                        f"storage options {' and '.join(map(_dotted, found))} "
                        f"({layer.where(found[0])}) are two ways of saying one thing; give one"
                    )
                if used:
                    decided = (used[0], layer)
                continue
            spelling, winner = decided
            for other in group:
                if other is spelling:
                    continue
                for path in sorted(other & flat.keys()):
                    overridden(path, flat.pop(path), layer, winner)

    # Option by option, least specific first; a path replaces what lies on or under it.
    merged: dict[OptionPath, tuple[Any, Layer]] = {}
    for layer, flat in reversed(list(zip(stack, flats, strict=True))):
        for path, value in flat.items():
            for old in [q for q in merged if q[: len(path)] == path or path[: len(q)] == q]:
                old_value, old_layer = merged.pop(old)
                overridden(old, old_value, old_layer, layer)
            merged[path] = (value, layer)

    used_rows = [
        Row(label(path, layer), shown(path, value), layer.where(path), True)
        for path, (value, layer) in sorted(merged.items(), key=lambda i: position[id(i[1][1])])
        if explain
    ]
    try:
        _check_known(cls, rules, merged)
        _check_azure_environment(rules, merged)
        _check_azure_credential_environment(rules, merged)
        _check_azure_account_name(rules, merged)
        _check_shared_endpoint(rules, stack, flats, merged)
    except StorageOptionError as exc:
        if strict:
            raise
        problem = exc
    env_rows = _environment_rows(rules, merged) if explain else []
    kwargs = _unflatten({path: value for path, (value, _) in merged.items()})
    if fsspec_config:
        # fsspec merges its configuration under these arguments once more: an option
        # dropped above (an alias, an overridden alternative) must stay unset there.
        for proto in protocols:
            for option in fsspec.config.conf.get(proto) or {}:
                kwargs.setdefault(option, _default_of(cls, option))
    return Plan(rules.package, kwargs, used_rows + rows + env_rows, problem)


def _unflatten(flat: Mapping[OptionPath, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in flat.items():
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def _default_of(cls: type[AbstractFileSystem], name: str) -> Any:
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        with_default = inspect.signature(init).parameters.get(name)
        if with_default is not None and with_default.default is not inspect.Parameter.empty:
            return with_default.default
    return None


def _check_known(
    cls: type[AbstractFileSystem], rules: Rules, merged: Mapping[OptionPath, tuple[Any, Layer]]
) -> None:
    """Refuse an option the backend does not take (it would be ignored, or fail late)."""
    if rules.accepted is None:
        return
    accepted = rules.accepted(cls)
    for path, (_, layer) in merged.items():
        name = path[0]
        if name not in accepted and not (rules is AZURE and name.startswith("exclude_")):
            bad, known = path[:1], accepted
        elif len(path) > 1 and name in rules.nested and path[1] not in rules.nested[name]():
            bad, known = path[:2], rules.nested[name]()
        else:
            continue
        hint = rules.hints.get(bad[-1]) if len(bad) == 1 else None
        close = difflib.get_close_matches(bad[-1], sorted(known), n=1)
        if hint is None and close:
            hint = _dotted((*bad[:-1], close[0]))
        raise StorageOptionError(
            f"unknown storage option {_dotted(bad)} ({layer.where(path)}): "
            f"{rules.package} does not take it" + (f"; did you mean {hint}?" if hint else "")
        )


def _check_azure_environment(rules: Rules, merged: Mapping[OptionPath, tuple[Any, Layer]]) -> None:
    """adlfs connects with `$AZURE_STORAGE_CONNECTION_STRING` whenever no connection
    string is given, whatever account, host or credentials are named: refuse when that
    would silently replace one of them (another account or host, other credentials)."""
    if rules is not AZURE:
        return
    from_env = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    if not from_env or merged.get(("connection_string",), (None,))[0]:
        return
    parts = {k.lower(): v for k, _, v in (p.partition("=") for p in from_env.split(";"))}
    for option in ("account_name", "account_host", *_AZURE_ACCOUNT[2:], *_AZURE_PRINCIPAL):
        found = merged.get((option,))
        if found is None or not found[0]:
            continue
        value, layer = found
        if option == "account_name" and str(value).lower() == parts.get("accountname", "").lower():
            continue  # the same account: adlfs's choice changes nothing
        if option == "account_host" and str(value).lower() in parts.get("blobendpoint", "").lower():
            continue
        raise StorageOptionError(
            f"storage option {option} ({layer.where((option,))}) would be ignored: adlfs "
            "connects with $AZURE_STORAGE_CONNECTION_STRING (the SDK's environment) whenever "
            "no connection_string is given; give connection_string, or unset "
            "AZURE_STORAGE_CONNECTION_STRING"
        )


def _check_azure_credential_environment(
    rules: Rules, merged: Mapping[OptionPath, tuple[Any, Layer]]
) -> None:
    """adlfs reads `$AZURE_STORAGE_ACCOUNT_KEY`, `_SAS_TOKEN` and `_CLIENT_ID` for each
    option not given, then prefers a key to a SAS token to a service principal to
    anonymous access: a variable for a preferred one silently replaces the credential
    the options chose (a SAS token given with `-o` signed with the environment's key).
    Refused by name, as the options' alternatives are."""
    if rules is not AZURE or merged.get(("connection_string",), (None,))[0]:
        return
    given = [
        option
        for option in ("credential", "account_key", "sas_token", "client_id", "anon")
        if merged.get((option,), (None,))[0]
    ]
    if not given or given[0] in ("credential", "account_key"):
        return  # nothing chosen (the environment decides), or nothing adlfs prefers to it
    order = list(_AZURE_CREDENTIAL_ENV)
    chosen = given[0]
    before = order[: order.index(chosen)] if chosen in order else order
    for option in before:
        variable = _AZURE_CREDENTIAL_ENV[option]
        if os.environ.get(variable):
            layer = merged[(chosen,)][1]
            raise StorageOptionError(
                f"storage option {chosen} ({layer.where((chosen,))}) would be ignored: adlfs "
                f"signs in with ${variable} (the SDK's environment) instead; unset "
                f"{variable}, or give {option} yourself"
            )


# An Azure account name as a host name's first label (Azure itself takes 3 to 24 lower-case
# letters and digits).
_AZURE_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9]{1,63}")


def _check_azure_account_name(rules: Rules, merged: Mapping[OptionPath, tuple[Any, Layer]]) -> None:
    """Without `account_host`, adlfs connects to `https://{account_name}.blob.core.windows.net`,
    the name pasted in as it is: a name such as `evil.example.com/x` makes the host
    `evil.example.com`, which then gets your SAS token, key signature or bearer token (a
    repo's remote names no `account_host`, so the endpoint check never saw it). A name
    that is not one DNS label is refused, whatever its source."""
    if rules is not AZURE or merged.get(("connection_string",), (None,))[0]:
        return
    if merged.get(("account_host",), (None,))[0]:
        return
    found = merged.get(("account_name",))
    if found is None or found[0] is None:
        return
    value, layer = found
    if not isinstance(value, str) or not _AZURE_ACCOUNT_NAME.fullmatch(value):
        raise StorageOptionError(
            f"storage option account_name ({layer.where(('account_name',))}) is not an "
            "Azure storage account name (letters and digits): adlfs would make a host of it"
        )


def _endpoint_key(value: Any) -> str:
    return str(value).strip().rstrip("/").lower()


def _check_shared_endpoint(
    rules: Rules,
    stack: Sequence[Layer],
    flats: Sequence[Mapping[OptionPath, Any]],
    merged: Mapping[OptionPath, tuple[Any, Layer]],
) -> None:
    """A repo's remote may say where a bucket is, but your credentials (from your remote,
    fsspec's configuration, the SDK's environment or its default chain) are never sent to
    an endpoint only a repo names: a repo is written by others, and its remote would
    otherwise receive your bearer tokens and SAS tokens (GCS, Azure) or your signed
    requests (S3). Refused, unless the access is anonymous, one of your own sources names
    the same endpoint (the call's options, your remote, fsspec's configuration, the SDK's
    endpoint variable), or your user config has a remote for the very URL of the repo's
    remote (the documented split: the repo says where, you say who). Not one for a longer
    or a shorter URL: a repo's remote for `s3://` would otherwise borrow every remote of
    yours, and yours for `s3://bucket/x` was not written for what the repo says of
    `s3://bucket`."""
    if rules.endpoint is None or rules.endpoint not in merged:
        return
    value, layer = merged[rules.endpoint]
    if not layer.shared or value is None or value == "":
        return
    if rules.anonymous({path: v for path, (v, _) in merged.items()}):
        return
    if any(
        not source.shared and source.url.rstrip("/") == layer.url.rstrip("/") for source in stack
    ):
        return
    yours = {
        _endpoint_key(flat[rules.endpoint])
        for source, flat in zip(stack, flats, strict=True)
        if not source.shared and flat.get(rules.endpoint) is not None
    }
    for var in rules.environment:
        named = os.environ.get(var.name)
        if var.option != _dotted(rules.endpoint) or not named:
            continue
        if rules is GCS and not named.strip().lower().startswith(("http://", "https://")):
            named = f"http://{named.strip()}"  # (as gcsfs reads $STORAGE_EMULATOR_HOST)
        yours.add(_endpoint_key(named))
    if _endpoint_key(value) in yours:
        return
    name = _dotted(rules.endpoint)
    raise StorageOptionError(
        f"storage option {name} ({layer.where(rules.endpoint)}) names an endpoint none of "
        "your own settings name: your credentials are not sent where a repo alone says; "
        f"to trust it, add a remote for {redact(layer.url)} to your user config (with your "
        f"credentials as env:), or give the same {name} yourself, or make the access "
        "anonymous"
    )


def _environment_rows(rules: Rules, merged: Mapping[OptionPath, tuple[Any, Layer]]) -> list[Row]:
    """The SDK's variables that are set: used where nothing above sets their option (the
    first of several for one option: the SDK's order)."""
    rows = []
    first: dict[str, str] = {}
    for var in rules.environment:
        if not os.environ.get(var.name):
            continue
        if var.option in first:
            value = shown((var.name,), os.environ[var.name])
            note = f"not used: ${first[var.option]} comes first"
            rows.append(Row(f"${var.name}", value, f"{SDK} (${var.name})", False, note))
            continue
        first[var.option] = var.name
        setters = [p for p in sorted(var.shadows) if p in merged and merged[p][0] is not None]
        setters = [p for p in setters if p != ("anon",) or merged[p][0]]
        value = shown((var.name,), os.environ[var.name])
        source = f"{SDK} (${var.name}, for {var.option})"
        if setters:
            winner = merged[setters[0]][1].where(setters[0])
            note = f"not used: {_dotted(setters[0])} is set by {winner}"
            rows.append(Row(f"${var.name}", value, source, False, note))
        else:
            note = f"read by {rules.sdk}: nothing above sets {var.option}"
            rows.append(Row(f"${var.name}", value, source, True, note))
    return rows


# -- showing values --------------------------------------------------------------------------
def shown(path: OptionPath, value: Any) -> str:
    """`value` as an explanation shows it: secrets masked, objects by their type."""
    name = path[-1]
    secret = is_secret_name(name) or any(w in name.lower() for w in _SECRET_TOO)
    if value is None or isinstance(value, bool):
        return str(value)
    if secret and not (isinstance(value, str) and value in _PUBLIC_VALUES):
        return MASK
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return redact(value)
    if hasattr(value, "sock_connect"):  # aiohttp's ClientTimeout
        return f"ClientTimeout(sock_connect={value.sock_connect})"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{k}: {shown((*path, str(k)), v)}" for k, v in value.items())
        return "{" + inner + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(shown(path, v) for v in value) + "]"
    return f"<{type(value).__name__}>"
