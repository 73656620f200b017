"""Which URLs a call may use, decided before any request is made.

- **No secrets in URLs.** Userinfo (`https://user:pw@host`, any userinfo over http) and
  query strings or fragments on remote schemes (`?sig=`, `?X-Amz-Signature=`,
  `?token=`, `#...`) are refused with `SecretInURLError`: credentials belong in storage
  options or remotes, never in a link, and `.mlem` is never appended inside a query.
  Local paths and `memory://` keep `?` and `#` as the plain characters they are there.
- **Where a link may lead** (`check_destination`): a scheme from `link_schemes`; a local
  path only from a local link (unless `allow_local_links`); over http(s), only the origin
  the read started from, or a host in `allowed_hosts`.
- **Remote git repositories** (`GIT_HOSTS`, `.git` URLs, any http(s) repo at a `rev`)
  are read as git repositories (`_stores.git`), never fetched as web pages; their URLs
  pass the same checks.
- **Which addresses http(s) may reach** (`check_http_address`, `refused_ip`): never a
  link-local, cloud metadata, unspecified, multicast, broadcast or reserved address, in
  any spelling (`0xA9FEA9FE`, `2852039166`, `0251.0376.0251.0376`, `169.254.43518`,
  `[::ffff:169.254.169.254]`, NAT64, 6to4, ...) nor a metadata name
  (`metadata.google.internal`), not even in a URL the user passed, unless that exact host
  is in `allowed_hosts`. The http store checks the host before each request and every
  address a name resolves to before connecting (`_stores.http`). Loopback and private
  addresses are fine: another origin needs `allowed_hosts` anyway.

>>> refuse_secrets("s3://bucket/models/rf.mlem")  # fine: nothing raised
>>> origin("HTTPS://Example.com/repo/x.mlem")
'https://example.com:443'
>>> refused_host("0xA9FEA9FE")
'a link-local address (cloud metadata endpoints live there)'
>>> refused_host("10.0.0.7") is None
True
"""

from __future__ import annotations

import contextlib
import ipaddress
import unicodedata
from collections.abc import Iterable
from urllib.parse import urlsplit

from mlemremote._paths import split_scheme
from mlemremote._settings import current as current_settings
from mlemremote.core.errors import (
    HostNotAllowedError,
    InvalidLinkError,
    SecretInURLError,
)

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
    if scheme == "github":  # fsspec's `github://org:repo@rev/path`: no credentials there
        rest = rest.split("@", 1)[-1]
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


# Hosts whose http(s) URLs MLEM read as git repositories (its GithubResolver), and the
# other big git hosts: a URL there names a repo (`/org/repo`), not a file to GET.
GIT_HOSTS = frozenset({"github.com", "www.github.com", "gitlab.com", "bitbucket.org"})


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
    the user allowed (`configure(allowed_hosts=...)`); never to a refused address."""
    check_http_address(uri, where)
    host = (urlsplit(uri).hostname or "").lower()
    if host_allowed(host):
        return
    same_scheme = base_uri is not None and split_scheme(base_uri)[0] in HTTP_SCHEMES
    if same_scheme and origin(uri) == origin(base_uri or ""):
        return
    raise HostNotAllowedError(
        f"{where}: {origin(uri)} is another origin than the one the link was read from; "
        "add its host to configure(allowed_hosts=...) to follow it"
    )


# -- addresses -------------------------------------------------------------------------
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _nets(*names: str) -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]:
    return [(ipaddress.ip_network(n.split(" ", 1)[0]), n.split(" ", 1)[1]) for n in names]


_METADATA = "a cloud metadata address"
_LINK_LOCAL = "a link-local address (cloud metadata endpoints live there)"
_RESERVED = "a reserved, non-routable address"
# Checked first, so that the metadata addresses inside ranges that are fine (100.64/10,
# fc00::/7) are refused. Loopback and private ranges are not listed: they are fine.
_REFUSED_V4 = _nets(
    f"100.100.100.200/32 {_METADATA} (Alibaba Cloud)",
    f"169.254.0.0/16 {_LINK_LOCAL}",
    "0.0.0.0/8 an unspecified ('this network') address",
    f"192.0.0.0/24 {_RESERVED} (IETF protocol assignments; Oracle Cloud metadata)",
    f"192.0.2.0/24 {_RESERVED} (documentation)",
    f"198.51.100.0/24 {_RESERVED} (documentation)",
    f"203.0.113.0/24 {_RESERVED} (documentation)",
    f"198.18.0.0/15 {_RESERVED} (benchmarking)",
    f"192.88.99.0/24 {_RESERVED} (6to4 relay anycast)",
    "224.0.0.0/4 a multicast address",
    f"240.0.0.0/4 {_RESERVED} (or the broadcast address)",
)
_REFUSED_V6 = _nets(
    f"fd00:ec2::254/128 {_METADATA} (AWS)",
    "::/128 an unspecified address",
    f"fe80::/10 {_LINK_LOCAL}",
    f"fec0::/10 {_RESERVED} (site-local)",
    "ff00::/8 a multicast address",
    f"100::/64 {_RESERVED} (discard-only)",
    f"2001:db8::/32 {_RESERVED} (documentation)",
    f"64:ff9b:1::/48 {_RESERVED} (local-use NAT64, may embed any IPv4 address)",
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT: ::ffff:0:a.b.c.d
_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated IPv4-compatible: ::a.b.c.d
# Names that lead to a cloud metadata service (GCP, AWS), and every name below them.
METADATA_NAMES = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "instance-data"}
    | {"instance-data.ec2.internal"}
)


def parse_ip(host: str) -> IPAddress | None:
    """`host` as an IP address, however it is spelled: bracketed IPv6 (with a zone or
    not), dotted quad, or the forms `inet_aton` also takes (one to four parts, each
    decimal, octal with a leading 0, or hexadecimal with 0x: `2852039166`, `0xA9FEA9FE`,
    `0251.0376.0251.0376`, `169.254.43518`); None for a name.

    >>> str(parse_ip("169.254.43518")), str(parse_ip("[::ffff:169.254.169.254]"))
    ('169.254.169.254', '::ffff:a9fe:a9fe')
    """
    text = host.strip().lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text.split("%", 1)[0])  # no zone: "%25eth0"
        except ValueError:
            return None
    return _inet_aton(text[:-1] if text.endswith(".") else text)


def _inet_aton(text: str) -> ipaddress.IPv4Address | None:
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        if part.startswith("0x"):
            digits, base = part[2:] or "0", 16
        elif len(part) > 1 and part.startswith("0"):
            digits, base = part[1:], 8
        else:
            digits, base = part, 10
        allowed = "0123456789abcdef"[:base]
        if not digits or any(c not in allowed for c in digits):
            return None
        values.append(int(digits, base))
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = last
    for index, value in enumerate(head):
        number += value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def refused_ip(ip: IPAddress) -> str | None:
    """Why an http(s) request must not go to `ip` (a phrase), or None when it may:
    loopback, private (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) and public
    addresses may; the IPv4 address inside an IPv6 one (mapped, translated,
    compatible, NAT64, 6to4, Teredo) is judged as itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_loopback:
            return None
        inner = _embedded_v4(ip)
        if inner is not None:
            return refused_ip(inner)
        table: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = _REFUSED_V6
    else:
        table = _REFUSED_V4
    for network, why in table:
        if ip in network:
            return why
    if ip.is_multicast or ip.is_link_local or ip.is_unspecified or ip.is_reserved:
        return _RESERVED
    return None


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client's own address
    for network in (_TRANSLATED, _NAT64, _COMPATIBLE):
        if ip in network and not (network is _COMPATIBLE and int(ip) <= 1):
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refused_host(host: str) -> str | None:
    """Why an http(s) request must not go to `host` (an IP address in any spelling,
    or a name), or None; a name's addresses are judged once it is resolved."""
    ip = parse_ip(host)
    if ip is not None:
        return refused_ip(ip)
    name = host.strip().lower().rstrip(".")
    if name in METADATA_NAMES or any(name.endswith("." + n) for n in METADATA_NAMES):
        return "a cloud metadata name"
    return None


def host_allowed(host: str) -> bool:
    """Is `host` (as written in a URL, brackets or not) in `configure(allowed_hosts=...)`?"""
    allowed = current_settings().allowed_hosts
    if not allowed:
        return False
    name = host.strip().lower()
    bare = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    return bool({name, bare, f"[{bare}]", bare.rstrip(".")} & allowed)


def _mapped(host: str) -> list[str]:
    """A non-ASCII host as a resolver may read it: NFKC and IDNA map `①⑥⑨` to `169`."""
    if host.isascii():
        return []
    found = [unicodedata.normalize("NFKC", host)]
    with contextlib.suppress(UnicodeError):
        found.append(host.encode("idna").decode("ascii"))
    return found


def check_http_address(uri: str, where: str, also: Iterable[str] = ()) -> None:
    """Refuse (`HostNotAllowedError`), before any connection, an http(s) URL whose host
    is a link-local, cloud metadata or other non-routable address in any spelling, or a
    metadata name; unless that exact host is in `allowed_hosts`. `also`: the same host
    as the HTTP client spells it (after IDNA mapping), checked too."""
    try:
        written = urlsplit(uri).hostname or ""
    except ValueError as exc:
        raise InvalidLinkError(f"{where}: not a valid URL") from exc
    if not written:
        raise InvalidLinkError(f"{where}: the URL names no host")
    spellings = [written, *_mapped(written), *also]
    if any(host_allowed(host) for host in spellings):
        return
    for host in spellings:
        why = refused_host(host)
        if why is not None:
            raise HostNotAllowedError(
                f"{where}: {host} is {why}; it is never reached over http(s) unless "
                "named in configure(allowed_hosts=...)"
            )
