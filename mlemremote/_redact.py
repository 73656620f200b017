"""Keep credentials out of messages and logs.

Every `MlemError` message passes through `redact`: URL userinfo (`user:pw@`), well-known
secret parameters (AccountKey=, sig=, X-Amz-Signature=, token=, ...), bearer tokens, and
every value that was handed to a filesystem under a secret-looking option name
(registered by `remember`) are masked. A registered value is masked only where it stands
as a whole token, so that a short secret such as `test` never turns `latest` into `la***`.

>>> redact("https://bob:hunter2@host/x?sig=abc&v=1")
'https://***@host/x?sig=***&v=1'
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
# Anywhere: names that only ever carry secrets.
_PARAMS = re.compile(
    r"(?i)\b(AccountKey|SharedAccessSignature|SharedAccessKey|X-Amz-Signature|"
    r"X-Amz-Credential|X-Amz-Security-Token|X-Goog-Signature|X-Goog-Credential|"
    r"AWSAccessKeyId|access_token|refresh_token|id_token|client_secret|password|passwd)"
    r"=([^;&\s\"'<>]+)"
)
# In a query string only: generic names that are secrets there (and plain words elsewhere).
_QUERY = re.compile(
    r"(?i)([?&;](?:sig|signature|token|key|apikey|api_key|secret|credential|auth|code|"
    r"sas)=)([^;&#\s\"'<>]+)"
)
# In JSON or a dict's repr (google-auth, OAuth answers): "access_token": "ya29...".
_KEYED = re.compile(
    r"""(?i)(["']?(?:access_token|refresh_token|id_token|client_secret|private_key|"""
    r"""private_key_id|password|secret_access_key|session_token|sas_token|account_key)"""
    r"""["']?\s*[:=]\s*["']?)([^"',;&\s}]+)"""
)  # (and `aws_secret_access_key = ...`, as in ~/.aws/credentials)
# Well-known token shapes, whatever names them: AWS access key ids, GitHub, Slack, GitLab
# and Google API tokens (text that is stored for good, a history message, is refused).
_TOKEN_SHAPES = re.compile(
    r"\b(?:(?:AKIA|ASIA)[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}|"
    r"xox[abposr]-[A-Za-z0-9-]{10,}|glpat-[A-Za-z0-9_-]{20,}|AIza[0-9A-Za-z_-]{35})"
)
_PEM = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S
)
_USERINFO_HTTP = re.compile(r"(?i)\b(https?://)[^/\s@?#]+@")
_USERINFO_WITH_PASSWORD = re.compile(r"(://)[^/\s@:?#]+:[^/\s@?#]+@")
# An Authorization header's credentials, and a bare "Bearer <token>" (case-sensitive:
# "basic classifier" and "bearer tokenizer" are ordinary words in a path).
_AUTH_HEADER = re.compile(r"""(?i)(authorization["']?\s*[:=]\s*["']?[a-z]+\s+)[^\s"',;]+""")
_BEARER = re.compile(r"\b(Bearer)\s+[A-Za-z0-9._~+/=-]{12,}")
_SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_CLIENT_SECRET",
    "GOOGLE_OAUTH_ACCESS_TOKEN",
)
_SECRET_WORDS = ("secret", "password", "key", "token", "credential", "connection_string", "sas")
_known: set[str] = set()


def is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def remember(options: Mapping[str, Any] | None) -> None:
    """Register the secret values among storage options (nested dicts included)."""
    for name, value in (options or {}).items():
        if isinstance(value, Mapping):
            remember(value)
        elif (
            isinstance(value, str)
            and is_secret_name(str(name))
            and len(value) >= 4
            and value not in ("anon", "true", "false", "google_default", "cloud", "cache")
        ):
            _known.add(value)
            for part in value.split(";"):  # a connection string's own AccountKey, ...
                _, sep, inner = part.partition("=")
                if sep and len(inner) >= 8:
                    _known.add(inner)


def redact(text: str) -> str:
    text = _PEM.sub(f"-----{MASK} PRIVATE KEY-----", text)
    text = _KEYED.sub(lambda m: f"{m.group(1)}{MASK}", text)
    text = _USERINFO_HTTP.sub(rf"\1{MASK}@", text)
    text = _USERINFO_WITH_PASSWORD.sub(rf"\1{MASK}@", text)
    text = _PARAMS.sub(lambda m: f"{m.group(1)}={MASK}", text)
    text = _QUERY.sub(lambda m: f"{m.group(1)}{MASK}", text)
    text = _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    secrets = set(_known)
    secrets.update(os.environ[v] for v in _SECRET_ENV if len(os.environ.get(v, "")) >= 4)
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            # Only where it stands alone: not inside a longer word or token.
            pattern = rf"(?<![\w]){re.escape(secret)}(?![\w])"
            text = re.sub(pattern, MASK, text)
    return text


def looks_secret(text: str) -> bool:
    """Does `text` hold something `redact` masks, or a well-known token's shape?"""
    return redact(text) != text or _TOKEN_SHAPES.search(text) is not None


def printable(text: str) -> str:
    """`text` safe on a terminal: every control or format character (new lines, terminal
    escapes, bidi overrides, zero-width marks) written as its Python escape."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )
