"""GCS: ifGenerationMatch writes, generations as versions.

A watch polls a metafile with a media GET and ifGenerationNotMatch (its generation as
last read): GCS answers 304, without a body, while it is unchanged. fake-gcs-server
ignores that condition (and `fields=` on a metadata GET) and sends the object: its
generation, unchanged, is then told from the answer's headers, at the cost of the body.

A link is removed by DELETE with ifGenerationMatch (its generation as just read), which
GCS applies atomically. fake-gcs-server ignores that condition (and `generation`) on
DELETE: there, the instant between the caller's read and the DELETE is unguarded.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any

from mlemremote._foreign import storage_error
from mlemremote._redact import redact
from mlemremote._stores.base import (
    UNCHANGED,
    AsyncBody,
    AsyncStore,
    Blob,
    Body,
    Expect,
    Expected,
    Unchanged,
    Version,
    Where,
    WriteConflict,
    Written,
    changed,
    own_timeouts,
    read_capped,
    told_size,
    told_start,
    too_large,
)
from mlemremote.core.errors import BucketNotFoundError

_ERROR_BODY_CAP = 64 * 1024  # what is read of an error answer, for its message


class GCSStore(AsyncStore):
    kind = "GCS"

    def __init__(self) -> None:
        # Whether a bucket keeps old generations: asked once per bucket and filesystem,
        # since it decides on every link write whether history needs its own log.
        self._versioning: dict[tuple[int, str], bool] = {}
        _quiet_gcsfs()

    def describe(self, loc: Where) -> str:
        return "GCS"

    @own_timeouts
    async def _get(self, loc: Where, limit: int) -> Blob:
        # One range request for the cap + 1 byte, sent on gcsfs's own session with its
        # headers (credentials included), read in chunks: the connection is dropped as
        # soon as the body passes the cap, whatever the server said. gcsfs's `_call` is
        # not used: it reads whole bodies, and retries 5xx itself for ~30 s.
        url = loc.fs.url(loc.fullpath, generation=loc.rev)
        got = await _get_capped(loc, url, limit, ranged=True)
        if got is None:  # 416: an empty object has no byte 0; read it without a range
            got = await _get_capped(loc, url, limit, ranged=False)
        assert isinstance(got, tuple)
        headers, data = got
        generation = str(headers.get("X-Goog-Generation", ""))
        return Blob(data, generation, generation or None, _http_date(headers))

    def open_body(
        self, loc: Where, *, offset: int = 0, token: str | None = None, within: str | None = None
    ) -> Body:
        # One GET on gcsfs's session (its credentials), the body read as it is consumed;
        # a resumed read is pinned to the generation it started on (ifGenerationMatch).
        response = self.run(loc, "read", own_timeouts(_open_media), loc, offset, token)
        size = told_size(
            response.headers.get("Content-Range"), response.headers.get("Content-Length")
        )
        if response.headers.get("Content-Encoding", "identity") not in ("identity", ""):
            size = None  # the length of what is sent, not of the object
        generation = response.headers.get("X-Goog-Generation")
        return AsyncBody(
            loc,
            response.content.read,
            response.close,
            size,
            str(generation or "") or None,
            told_start(response.headers.get("Content-Range") if response.status == 206 else None),
        )

    @own_timeouts
    async def _get_if_changed(self, loc: Where, limit: int, last: Blob | None) -> Blob | Unchanged:
        if last is None or not last.token:
            return await self._get(loc, limit)
        url = loc.fs.url(loc.fullpath, generation=loc.rev)
        condition = {"ifGenerationNotMatch": last.token}
        got = await _get_capped(loc, url, limit, ranged=True, params=condition)
        if got is None:  # 416: an empty object has no byte 0; read it without a range
            got = await _get_capped(loc, url, limit, ranged=False, params=condition)
        if got is UNCHANGED:
            return UNCHANGED
        assert isinstance(got, tuple)
        headers, data = got
        generation = str(headers.get("X-Goog-Generation", ""))
        if generation and generation == last.token:  # the condition was ignored
            return UNCHANGED
        return Blob(data, generation, generation or None, _http_date(headers))

    def _write_once(self, loc: Where, data: bytes, expect: Expected) -> Written:
        fs = loc.fs
        pipe = own_timeouts(fs._pipe_file)
        upload = own_timeouts(self._upload_if_generation)
        try:
            if expect is Expect.ANY:
                out = self.run(loc, "write", pipe, loc.fullpath, data)
            elif expect is Expect.ABSENT:
                out = self.run(loc, "write", pipe, loc.fullpath, data, mode="create")
            else:
                out = self.run(loc, "write", upload, loc, data, expect)
        except FileExistsError as exc:  # gcsfs: 412 Precondition Failed
            if expect is Expect.ANY:
                raise
            raise WriteConflict(f"{loc} changed") from exc
        except FileNotFoundError as exc:  # 404 to an upload: the bucket is not there
            if self._bucket_missing(loc):
                bucket = loc.fs.split_path(loc.fullpath)[0]
                raise BucketNotFoundError(
                    f"cannot write {loc}: the bucket {bucket!r} does not exist"
                ) from None
            raise WriteConflict(f"{loc} is gone") from exc
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

    def _delete_once(self, loc: Where, expect: str) -> Written:
        bucket, key, _ = loc.fs.split_path(loc.fullpath)
        call = own_timeouts(loc.fs._call)
        try:
            self.run(
                loc, "delete", call, "DELETE", "b/{}/o/{}", bucket, key, ifGenerationMatch=expect
            )
        except FileExistsError as exc:  # gcsfs: 412 Precondition Failed
            raise WriteConflict(f"{loc} changed") from exc
        except FileNotFoundError as exc:
            if self._bucket_missing(loc):
                raise BucketNotFoundError(
                    f"cannot delete {loc}: its bucket or container does not exist"
                ) from None
            raise WriteConflict(f"{loc} is gone") from exc
        finally:
            loc.fs.invalidate_cache(loc.fullpath)
        return Written(None)

    def _bucket_missing(self, loc: Where) -> bool:
        return not self.bucket_exists(loc)

    async def _bucket_exists(self, loc: Where) -> bool:
        try:
            await loc.fs._call("GET", "b/{}", loc.fs.split_path(loc.fullpath)[0])
        except FileNotFoundError:
            return False
        return True

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

    def version_with(self, loc: Where, size: int, md5: str) -> str | None:
        # GCS keeps each generation's MD5 (`md5Hash`, base64), except for composite
        # objects. Only a candidate: the bytes read are checked all the same.
        import base64
        import binascii

        key = loc.fs.split_path(loc.fullpath)[1]
        try:
            listed = _listed_versions(loc, pages=10)  # (at most 10,000 generations)
            items = sorted(listed, key=lambda i: -int(i.get("generation", 0)))
        except Exception:
            return None  # (not known: the current object is read, and checked)
        for item in items:
            try:
                digest = base64.b64decode(item.get("md5Hash", "")).hex()
            except (binascii.Error, ValueError):
                continue
            if item["name"] == key and int(item.get("size", -1)) == size and digest == md5:
                return str(item["generation"])
        return None

    def versions(self, loc: Where) -> list[Version]:
        key = loc.fs.split_path(loc.fullpath)[1]
        found: list[tuple[int, Version]] = []
        try:
            for item in _listed_versions(loc):
                if item["name"] == key:
                    created = _parse_time(item["timeCreated"])
                    generation = int(item["generation"])
                    found.append((generation, Version(str(generation), created)))
        except Exception as exc:
            raise storage_error(loc, "list versions of", exc) from None
        # Generations only grow: the highest is the newest, whatever the clocks say.
        return [version for _, version in sorted(found, key=lambda f: f[0], reverse=True)]


async def _get_capped(
    loc: Where, url: str, limit: int, *, ranged: bool, params: dict[str, str] | None = None
) -> tuple[Any, bytes] | Unchanged | None:
    """GET `url` (headers, and at most `limit` bytes of body), or None when a range
    request answers 416, or UNCHANGED when a conditional one (`params`) answers 304.
    Errors are raised as gcsfs raises them (`validate_response`), so that they are
    classified as before."""
    from gcsfs.retry import validate_response

    fs = loc.fs
    session = await fs._set_session()
    params = {**fs._get_params({}), **(params or {})}
    async with session.request(
        "GET",
        url,
        headers=fs._get_headers({"Range": f"bytes=0-{limit}"} if ranged else None),
        params=params or None,
        timeout=fs.requests_timeout,
    ) as response:
        try:
            if response.status == 304 and "ifGenerationNotMatch" in params:
                return UNCHANGED
            if 300 <= response.status < 400:  # a 304, or a redirect not followed
                # Never a body to parse: an empty "file" read from a 304 or a redirect.
                raise OSError(f"unexpected HTTP {response.status} answering a GET of {url}")
            if response.status >= 400:
                text = await read_capped(response.content.read, _ERROR_BODY_CAP)
                if response.status == 416 and ranged:
                    return None
                validate_response(response.status, text[:_ERROR_BODY_CAP], url)
            size = told_size(
                response.headers.get("Content-Range"), response.headers.get("Content-Length")
            )
            if size is not None and size > limit:
                raise too_large(loc, limit, size)
            data = await read_capped(response.content.read, limit)
            if len(data) > limit:
                raise too_large(loc, limit, size)
            return response.headers, data
        except BaseException:
            if not response.content.at_eof():
                response.close()  # over the cap or cancelled: drop the connection
            raise


def _listed_versions(loc: Where, pages: int | None = None) -> list[dict[str, Any]]:
    """Every generation of the objects whose names start with `loc`'s (all pages, or
    the first `pages`)."""
    fs = loc.fs
    bucket, key, _ = fs.split_path(loc.fullpath)
    items: list[dict[str, Any]] = []
    page_token: dict[str, str] = {}
    while pages is None or pages > 0:
        pages = None if pages is None else pages - 1
        page = fs.call(
            "GET", "b/{}/o", bucket, prefix=key, versions="true", json_out=True, **page_token
        )
        items.extend(page.get("items", []))
        if "nextPageToken" not in page:
            break
        page_token = {"pageToken": page["nextPageToken"]}
    return items


async def _open_media(loc: Where, offset: int, token: str | None) -> Any:
    """The response to a GET of the object's content (from `offset`), its body unread;
    errors raised as gcsfs raises them (`validate_response`)."""
    from gcsfs.retry import validate_response

    fs = loc.fs
    session = await fs._set_session()
    params = fs._get_params({})
    if token is not None:
        params["ifGenerationMatch"] = token
    response = await session.request(
        "GET",
        fs.url(loc.fullpath, generation=loc.rev),
        headers=fs._get_headers({"Range": f"bytes={offset}-"} if offset else None),
        params=params or None,
        timeout=fs.requests_timeout,
    )
    if response.status < 400:
        return response
    try:
        text = await read_capped(response.content.read, _ERROR_BODY_CAP)
    finally:
        response.close()
    if token is not None and response.status == 412:
        raise changed(loc)
    validate_response(response.status, text[:_ERROR_BODY_CAP], str(loc))
    raise OSError(f"HTTP {response.status}")  # pragma: no cover - validate_response raised


def _parse_time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _http_date(headers: Any) -> datetime | None:
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(str(headers.get("Last-Modified", "")))
    except (TypeError, ValueError):
        return None


class _QuietGcsfs(logging.Filter):
    """gcsfs logs each request it gives up on with a traceback at ERROR level; this
    library raises its own (redacted, one-line) error for it, so the record is made a
    one-line, redacted DEBUG message (a URL in it may carry a token)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), ()
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def _quiet_gcsfs() -> None:
    gcsfs_logger = logging.getLogger("gcsfs")
    if not any(isinstance(f, _QuietGcsfs) for f in gcsfs_logger.filters):
        gcsfs_logger.addFilter(_QuietGcsfs())
