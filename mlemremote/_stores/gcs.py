"""GCS: ifGenerationMatch writes, generations as versions."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

from mlemremote._foreign import storage_error
from mlemremote._stores.base import (
    AsyncStore,
    Blob,
    Expect,
    Expected,
    Version,
    Where,
    WriteConflict,
    Written,
    too_large,
)


class GCSStore(AsyncStore):
    kind = "GCS"

    def __init__(self) -> None:
        # Whether a bucket keeps old generations: asked once per bucket and filesystem,
        # since it decides on every link write whether history needs its own log.
        self._versioning: dict[tuple[int, str], bool] = {}

    def describe(self, loc: Where) -> str:
        return "GCS"

    async def _get(self, loc: Where, limit: int) -> Blob:
        _quiet_gcsfs_416()
        fs = loc.fs
        url = fs.url(loc.fullpath, generation=loc.rev)
        try:
            headers, data = await fs._call("GET", url, headers={"Range": f"bytes=0-{limit}"})
        except Exception as exc:
            if getattr(exc, "code", None) != 416:
                raise
            # An empty object has no byte 0: read it whole (it is empty).
            headers, data = await fs._call("GET", url)
        total = str(headers.get("Content-Range", "")).rpartition("/")[2]
        if total.isdigit() and int(total) > limit:
            raise too_large(loc, limit, int(total))
        generation = str(headers.get("X-Goog-Generation", ""))
        return Blob(bytes(data), generation, generation or None, _http_date(headers))

    def _write_once(self, loc: Where, data: bytes, expect: Expected) -> Written:
        fs = loc.fs
        try:
            if expect is Expect.ANY:
                out = self.run(loc, "write", fs._pipe_file, loc.fullpath, data)
            elif expect is Expect.ABSENT:
                out = self.run(loc, "write", fs._pipe_file, loc.fullpath, data, mode="create")
            else:
                out = self.run(loc, "write", self._upload_if_generation, loc, data, expect)
        except FileExistsError as exc:  # gcsfs: 412 Precondition Failed
            if expect is Expect.ANY:
                raise
            raise WriteConflict(f"{loc} changed") from exc
        generation = str(out["generation"]) if isinstance(out, dict) else None
        return Written(generation, generation)

    @staticmethod
    async def _upload_if_generation(loc: Where, data: bytes, generation: str) -> Any:
        # gcsfs has no compare-and-swap write: a multipart upload with ifGenerationMatch
        # is one request, and the server applies the condition atomically.
        fs = loc.fs
        bucket, key, _ = fs.split_path(loc.fullpath)
        boundary = "mlemremote-boundary"
        meta = json.dumps({"name": key})
        body = (
            (
                f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n"
                f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--".encode()
        )
        return await fs._call(
            "POST",
            f"{fs._location}/upload/storage/v1/b/{bucket}/o",
            uploadType="multipart",
            ifGenerationMatch=generation,
            headers={"Content-Type": f'multipart/related; boundary="{boundary}"'},
            data=body,
            json_out=True,
        )

    def check_versions(self, loc: Where) -> None:
        return None  # an unknown generation reads as missing

    def keeps_versions(self, loc: Where, written_version: str | None) -> bool:
        return self.versioned(loc)

    def versioned(self, loc: Where) -> bool:
        bucket = loc.fs.split_path(loc.fullpath)[0]
        key = (id(loc.fs), bucket)
        if key not in self._versioning:
            try:
                meta = loc.fs.call("GET", "b/{}", bucket, json_out=True)
            except Exception as exc:
                raise storage_error(loc, "list versions of", exc) from None
            self._versioning[key] = bool(meta.get("versioning", {}).get("enabled"))
        return self._versioning[key]

    def versions(self, loc: Where) -> list[Version]:
        fs = loc.fs
        bucket, key, _ = fs.split_path(loc.fullpath)
        found: list[tuple[int, Version]] = []
        page_token: dict[str, str] = {}
        try:
            while True:
                page = fs.call(
                    "GET", "b/{}/o", bucket, prefix=key, versions="true", json_out=True,
                    **page_token,
                )  # fmt: skip
                for item in page.get("items", []):
                    if item["name"] == key:
                        created = _parse_time(item["timeCreated"])
                        generation = int(item["generation"])
                        found.append((generation, Version(str(generation), created)))
                if "nextPageToken" not in page:
                    break
                page_token = {"pageToken": page["nextPageToken"]}
        except Exception as exc:
            raise storage_error(loc, "list versions of", exc) from None
        # Generations only grow: the highest is the newest, whatever the clocks say.
        return [version for _, version in sorted(found, key=lambda f: f[0], reverse=True)]


class _Drop416(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "non-retriable exception: , 416" not in record.getMessage()


def _quiet_gcsfs_416() -> None:
    """gcsfs logs every 416 with a traceback at ERROR level; a range read of an empty
    object (MLEM's `.mlem/config.yaml` is empty) answers 416 by design, so that one
    message is dropped."""
    gcsfs_logger = logging.getLogger("gcsfs")
    if not any(isinstance(f, _Drop416) for f in gcsfs_logger.filters):
        gcsfs_logger.addFilter(_Drop416())


def _parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _http_date(headers: Any) -> datetime | None:
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(str(headers.get("Last-Modified", "")))
    except (TypeError, ValueError):
        return None
