"""S3 (AWS, MinIO, moto, SeaweedFS): If-Match / If-None-Match writes, VersionId versions.

A watch polls a metafile with GetObject and If-None-Match (its ETag as last read): 304,
and no body, while it is unchanged; s3fs passes the condition through to aiobotocore,
which raises the 304 as an error (`_foreign.not_modified`). A 304 naming another ETag
than the one asked about is not believed: the object is read again, unconditionally.

A link is removed by DeleteObject with If-Match (its ETag as just read): AWS, moto and
SeaweedFS apply the condition atomically (412 otherwise). A server that ignored it would
leave the instant between the caller's read and the DELETE unguarded; on a versioned
bucket the deletion only adds a delete marker, so nothing is lost even then.
"""

from __future__ import annotations

from mlemremote._foreign import (
    answered_etag,
    missing_bucket,
    not_modified,
    precondition_failed,
    storage_error,
)
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

VERSION_PAGES = 10  # pages of a version listing looked through (1,000 versions each)


class S3Store(AsyncStore):
    kind = "S3"

    def describe(self, loc: Where) -> str:
        return "S3"

    @own_timeouts
    async def _get(self, loc: Where, limit: int, if_none_match: str | None = None) -> Blob:
        # One GET, its body read in chunks: the connection is dropped as soon as the body
        # passes the cap, whatever Content-Length the server sent (or none). No Range:
        # S3 answers a range read of an empty object (a repo's `.mlem/config.yaml`) with
        # 416, which would cost a second request on the commonest read.
        bucket, key, _ = loc.fs.split_path(loc.fullpath)
        extra = {"VersionId": loc.rev} if loc.rev else {}
        if if_none_match is not None:
            extra["IfNoneMatch"] = if_none_match
        resp = await loc.fs._call_s3("get_object", Bucket=bucket, Key=key, **extra)
        body = resp["Body"]
        try:
            size = told_size(resp.get("ContentRange"), resp.get("ContentLength"))
            if size is not None and size > limit:
                raise too_large(loc, limit, size)
            data = await read_capped(body.read, limit)
            if len(data) > limit:
                raise too_large(loc, limit, size)
        finally:
            body.close()  # unless the body was read to its end, the connection is dropped
        version = resp.get("VersionId")
        version = None if version in (None, "null") else version
        return Blob(data, str(resp["ETag"]), version, resp.get("LastModified"))

    def open_body(
        self, loc: Where, *, offset: int = 0, token: str | None = None, within: str | None = None
    ) -> Body:
        # One GET (from `offset`: a Range), its body read as it is consumed; a resumed
        # read names the ETag it started on (If-Match), so it cannot splice two contents.
        bucket, key, _ = loc.fs.split_path(loc.fullpath)
        extra = {"VersionId": loc.rev} if loc.rev else {}
        if offset:
            extra["Range"] = f"bytes={offset}-"
        if token is not None:
            extra["IfMatch"] = token
        call = own_timeouts(loc.fs._call_s3)
        try:
            resp = self.run(loc, "read", call, "get_object", Bucket=bucket, Key=key, **extra)
        except OSError as exc:
            if token is not None and precondition_failed(exc):
                raise changed(loc) from None
            raise
        body = resp["Body"]
        return AsyncBody(
            loc,
            body.read,
            body.close,
            told_size(resp.get("ContentRange"), resp.get("ContentLength")),
            str(resp["ETag"]) if resp.get("ETag") else None,
            told_start(resp.get("ContentRange")),
        )

    @own_timeouts
    async def _get_if_changed(self, loc: Where, limit: int, last: Blob | None) -> Blob | Unchanged:
        if last is None or not last.token:
            return await self._get(loc, limit)
        try:
            return await self._get(loc, limit, if_none_match=last.token)
        except OSError as exc:
            if not not_modified(exc):
                raise
            told = answered_etag(exc)
        if told is not None and told != last.token:
            return await self._get(loc, limit)
        return UNCHANGED

    async def _bucket_exists(self, loc: Where) -> bool:
        try:
            await loc.fs._call_s3("head_bucket", Bucket=loc.fs.split_path(loc.fullpath)[0])
        except FileNotFoundError:
            return False
        return True

    def _write_once(self, loc: Where, data: bytes, expect: Expected) -> Written:
        if expect is Expect.ANY:
            conditions = {}
        elif expect is Expect.ABSENT:
            conditions = {"mode": "create"}
        else:
            # Conditions go on this PUT only (never s3_additional_kwargs, which would
            # send them on every GET too).
            conditions = {"IfMatch": expect}
        try:
            pipe = own_timeouts(loc.fs._pipe_file)
            resp = self.run(loc, "write", pipe, loc.fullpath, data, **conditions)
        except OSError as exc:
            if missing_bucket(exc):
                raise storage_error(loc, "write", exc) from None
            conflict = isinstance(exc, (FileExistsError, FileNotFoundError))
            if expect is not Expect.ANY and (conflict or precondition_failed(exc)):
                raise WriteConflict(f"{loc} changed") from exc
            raise
        version = resp.get("VersionId") if isinstance(resp, dict) else None
        token = resp.get("ETag") if isinstance(resp, dict) else None
        return Written(token, None if version in (None, "null") else version)

    def _delete_once(self, loc: Where, expect: str) -> Written:
        bucket, key, _ = loc.fs.split_path(loc.fullpath)
        try:
            call = own_timeouts(loc.fs._call_s3)
            resp = self.run(
                loc, "delete", call, "delete_object", Bucket=bucket, Key=key, IfMatch=expect
            )
        except OSError as exc:
            if missing_bucket(exc):
                raise storage_error(loc, "delete", exc) from None
            if isinstance(exc, FileNotFoundError) or precondition_failed(exc):
                raise WriteConflict(f"{loc} changed") from exc
            raise
        finally:
            loc.fs.invalidate_cache(loc.fullpath)
        version = resp.get("VersionId") if isinstance(resp, dict) else None
        return Written(None, None if version in (None, "null") else version)

    def check_versions(self, loc: Where) -> None:
        return None  # a bucket without versioning answers "no such version"

    def keeps_versions(self, loc: Where, written_version: str | None) -> bool:
        return written_version is not None  # S3 answers a PUT with its VersionId

    def version_with(self, loc: Where, size: int, md5: str) -> str | None:
        # An ETag is the MD5 of the content only for an object uploaded in one part (a
        # multipart ETag is `<md5 of the parts' md5s>-<parts>`): those never match.
        # Only a candidate: the bytes read are checked against the MD5 all the same.
        bucket, key, _ = loc.fs.split_path(loc.fullpath)
        marker: dict[str, str] = {}
        try:
            for _ in range(VERSION_PAGES):
                page = loc.fs.call_s3("list_object_versions", Bucket=bucket, Prefix=key, **marker)
                for item in page.get("Versions", []):
                    etag = str(item.get("ETag", "")).strip('"').lower()
                    if item["Key"] == key and item.get("Size") == size and etag == md5:
                        version = item.get("VersionId")
                        return None if version in (None, "null") else str(version)
                if not page.get("IsTruncated"):
                    return None
                marker = {
                    "KeyMarker": page["NextKeyMarker"],
                    "VersionIdMarker": page["NextVersionIdMarker"],
                }
        except Exception:
            return None  # (not known: the current object is read, and checked)
        return None  # (not among the newest VERSION_PAGES pages: the current one is read)

    def versioned(self, loc: Where) -> bool:
        bucket = loc.fs.split_path(loc.fullpath)[0]
        try:
            status = loc.fs.call_s3("get_bucket_versioning", Bucket=bucket).get("Status")
        except Exception as exc:
            raise storage_error(loc, "list versions of", exc) from None
        return bool(status == "Enabled")

    def versions(self, loc: Where) -> list[Version]:
        # S3 lists the versions of a key newest first (the current one first): that
        # order is kept; timestamps of two writes in one second would not tell them apart.
        bucket, key, _ = loc.fs.split_path(loc.fullpath)
        found: list[tuple[bool, Version]] = []
        marker: dict[str, str] = {}
        try:
            while True:
                page = loc.fs.call_s3("list_object_versions", Bucket=bucket, Prefix=key, **marker)
                for item in page.get("Versions", []):
                    if item["Key"] == key:
                        found.append((item.get("IsLatest", False), _version(item)))
                for item in page.get("DeleteMarkers", []):
                    if item["Key"] == key:
                        found.append((item.get("IsLatest", False), _version(item, True)))
                if not page.get("IsTruncated"):
                    break
                marker = {
                    "KeyMarker": page["NextKeyMarker"],
                    "VersionIdMarker": page["NextVersionIdMarker"],
                }
        except Exception as exc:
            raise storage_error(loc, "list versions of", exc) from None
        # The latest first, then by time, newest first; equal times keep S3's order.
        latest = [v for is_latest, v in found if is_latest]
        rest = [v for is_latest, v in found if not is_latest]
        return latest + sorted(rest, key=lambda v: v.time, reverse=True)


def _version(item: dict[str, object], deleted: bool = False) -> Version:
    etag = None if deleted or item.get("ETag") is None else str(item["ETag"])
    return Version(str(item["VersionId"]), item["LastModified"], deleted, etag)  # type: ignore[arg-type]
