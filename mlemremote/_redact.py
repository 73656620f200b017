"""Keep credentials out of messages and logs.

Every `MlemError` message passes through `redact`: well-known secret parameters
(AccountKey=, sig=, X-Amz-Signature=, ...) are masked, and so is every value that was
handed to a filesystem under a secret-looking option name (registered by `remember`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
_PARAMS = re.compile(
    r"(?i)\b(AccountKey|SharedAccessSignature|SharedAccessKey|sig|X-Amz-Signature|"
    r"X-Amz-Credential|X-Amz-Security-Token|Signature|AWSAccessKeyId|access_token|"
    r"client_secret|password)=([^;&\s\"'<>]+)"
)
_SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_CLIENT_SECRET",
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
            and value not in ("anon", "true", "false")
        ):
            _known.add(value)


def redact(text: str) -> str:
    text = _PARAMS.sub(lambda m: f"{m.group(1)}={MASK}", text)
    secrets = set(_known)
    secrets.update(os.environ[v] for v in _SECRET_ENV if len(os.environ.get(v, "")) >= 4)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
