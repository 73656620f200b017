"""Which URLs a call may use, decided before any request is made.

- **No secrets in URLs.** Userinfo (`https://user:pw@host`, any userinfo over http) and
  query strings or fragments on remote schemes (`?sig=`, `?X-Amz-Signature=`,
  `?token=`, `#...`) are refused with `SecretInURLError`: credentials belong in storage
  options or remotes, never in a link, and `.mlem` is never appended inside a query.
  Local paths and `memory://` keep `?` and `#` as the plain characters they are there.
- **Where a link may lead** (`check_destination`): a scheme from `link_schemes`; a local
  path only from a local link (unless `allow_local_links`); over http(s), only the origin
  the read started from, or a host in `allowed_hosts`.

>>> refuse_secrets("s3://bucket/models/rf.mlem")  # fine: nothing raised
>>> origin("HTTPS://Example.com/repo/x.mlem")
'https://example.com:443'
"""

from __future__ import annotations

from urllib.parse import urlsplit

from mlemremote._paths import split_scheme
from mlemremote._settings import current as current_settings
from mlemremote.core.errors import HostNotAllowedError, InvalidLinkError, SecretInURLError

HTTP_SCHEMES = frozenset({"http", "https"})
# Where '?' and '#' are ordinary characters of a file name.
PLAIN_PATH_SCHEMES = frozenset({"file", "local", "memory"})
_ADVICE = "give them as storage options or in a remote (your user config), never in a URL"


def refuse_secrets(uri: str) -> None:
    """Raise `SecretInURLError` when `uri` carries credentials or a query string."""
    scheme, _ = split_scheme(uri)
    if scheme is None or scheme in PLAIN_PATH_SCHEMES:
        return
    rest = uri.split("://", 1)[1]
    authority = rest.split("/", 1)[0]
    if "@" in authority:
        userinfo = authority.rsplit("@", 1)[0]
        # `abfs://container@account.dfs.core.windows.net/...` names a container there.
        if scheme in HTTP_SCHEMES or ":" in userinfo:
            shown = f"{scheme}://***@{rest.split('@', 1)[1].split('?')[0]}"
            raise SecretInURLError(f"{shown} holds credentials (user:password@); {_ADVICE}")
    if "?" in rest or "#" in rest:
        shown = f"{scheme}://{rest.split('?')[0].split('#')[0]}"
        raise SecretInURLError(
            f"{shown}: a URL with a query string or fragment ('?...', '#...') is refused: "
            f"it may carry a signature or token; {_ADVICE}"
        )


def origin(uri: str) -> str:
    """`scheme://host:port` of an http(s) URL, lower-case, default ports made explicit."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError as exc:
        raise InvalidLinkError(f"{uri}: bad port") from exc
    port = port or (443 if scheme == "https" else 80)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


def check_destination(uri: str, base_scheme: str | None, base_uri: str | None, where: str) -> None:
    """May a link read from `base_uri` (scheme `base_scheme`; None for an unsaved link)
    lead to `uri`? Raises `InvalidLinkError` (or `HostNotAllowedError`) if not."""
    settings = current_settings()
    scheme = split_scheme(uri)[0] or "file"
    allowed = settings.link_schemes | {"memory"}
    same_http = scheme in HTTP_SCHEMES and base_scheme in HTTP_SCHEMES
    if scheme not in allowed and not same_http:
        raise InvalidLinkError(f"{where}: links to {scheme}:// are not allowed: {uri}")
    remote_base = base_scheme is not None and base_scheme not in PLAIN_PATH_SCHEMES
    if scheme == "file" and remote_base and not settings.allow_local_links:
        raise InvalidLinkError(
            f"{where}: a link on a remote backend names a local path ({uri}); "
            "configure(allow_local_links=True) to follow it"
        )
    if scheme in HTTP_SCHEMES:
        check_http_host(uri, base_uri, where)


def check_http_host(uri: str, base_uri: str | None, where: str) -> None:
    """Over http(s) a link may lead only to the origin it was read from, or to a host
    the user allowed (`configure(allowed_hosts=...)`)."""
    host = (urlsplit(uri).hostname or "").lower()
    if host in current_settings().allowed_hosts:
        return
    same_scheme = base_uri is not None and split_scheme(base_uri)[0] in HTTP_SCHEMES
    if same_scheme and origin(uri) == origin(base_uri or ""):
        return
    raise HostNotAllowedError(
        f"{where}: {origin(uri)} is another origin than the one the link was read from; "
        "add its host to configure(allowed_hosts=...) to follow it"
    )
