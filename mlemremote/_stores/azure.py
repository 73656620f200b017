"""Azure Blob: ETag match conditions. Versions are refused: Azurite, the only server this
is tested on, ignores version ids and would silently serve the current blob.

A link is removed by Delete Blob with If-Match (its ETag as just read), which Azure and
Azurite apply atomically. A watch polls a metafile with Get Blob and If-None-Match (its
ETag as last read): 304, without a body, while it is unchanged; a 304 naming another
ETag is not believed (the blob is read again, unconditionally)."""

from __future__ import annotations

from typing import Any

from mlemremote._foreign import (
    answered_etag,
    code_of,
    missing_bucket,
    not_modified,
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
    Where,
    WriteConflict,
    Written,
    changed,
    own_timeouts,
    take_capped,
    told_size,
    told_start,
    too_large,
)


async def _download_capped(
    loc: Where, bc: Any, limit: int, *, ranged: bool, if_none_match: str | None = None
) -> tuple[dict[str, Any], bytes] | Unchanged | None:
    """One Get Blob request (the cap + 1 byte when `ranged`), its body taken block by
    block until it passes the cap (then the connection is dropped); None when a range
    request answers 416; UNCHANGED when it was conditional (`if_none_match`, an ETag)
    and the answer is 304 for that ETag.

    `download_blob` is not used: it reads the whole first answer before handing anything
    out (all of it, from a server that ignores the range), and retries a cut body itself.
    This is the request it makes, with the errors it raises (`process_storage_error`)."""
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob._generated.models import ModifiedAccessConditions
    from azure.storage.blob._shared.response_handlers import process_storage_error

    def keep(response: Any, stream: Any, headers: dict[str, Any]) -> Any:
        return response.http_response, stream, headers

    conditions = (
        {} if if_none_match is None
        else {"modified_access_conditions": ModifiedAccessConditions(if_none_match=if_none_match)}
    )  # fmt: skip
    try:
        http, stream, headers = await bc._client.blob.download(
            range=f"bytes=0-{limit}" if ranged else None,
            **conditions,
            retry_total=0,  # our retry policy is the one that counts
            cls=keep,
            # The filesystem's timeouts, as adlfs passes them on its own requests.
            **getattr(loc.fs, "_timeout_kwargs", {}),
        )
    except HttpResponseError as error:
        if ranged and error.status_code == 416:
            return None
        if if_none_match is not None and not_modified(error):
            told = answered_etag(error)
            if told is None or told == if_none_match:
                return UNCHANGED
            return await _download_capped(loc, bc, limit, ranged=ranged)  # not believed
        process_storage_error(error)
    try:
        size = told_size(headers.get("Content-Range"), headers.get("Content-Length"))
        if size is not None and size > limit:
            raise too_large(loc, limit, size)
        data = await take_capped(stream, limit)
        if len(data) > limit:
            raise too_large(loc, limit, size)
        return headers, data
    finally:
        _drop(http)  # a no-op once the body was read to its end


class _Chunks:
    """`read(most)` over an SDK's stream of blocks of its own size."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream.__aiter__()
        self._left = b""

    async def read(self, most: int) -> bytes:
        if not self._left:
            try:
                self._left = bytes(await self._stream.__anext__())
            except StopAsyncIteration:
                return b""
        chunk, self._left = self._left[:most], self._left[most:]
        return chunk


async def _open_download(
    loc: Where, offset: int, token: str | None
) -> tuple[dict[str, Any], _Chunks, Any]:
    """A Get Blob request (from `offset`), its body unread: its headers, its blocks, and
    what closes it. Errors raised as the SDK raises them (`process_storage_error`)."""
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob._generated.models import ModifiedAccessConditions
    from azure.storage.blob._shared.response_handlers import process_storage_error

    container, name, _ = loc.fs.split_path(loc.fullpath)
    client = loc.fs.service_client.get_blob_client(container=container, blob=name)
    bc = await client.__aenter__()

    def keep(response: Any, stream: Any, headers: dict[str, Any]) -> Any:
        return response.http_response, stream, headers

    conditions = ModifiedAccessConditions(if_match=token) if token is not None else None
    try:
        try:
            http, stream, headers = await bc._client.blob.download(
                range=f"bytes={offset}-" if offset else None,
                modified_access_conditions=conditions,
                retry_total=0,  # our retry policy is the one that counts
                cls=keep,
                **getattr(loc.fs, "_timeout_kwargs", {}),
            )
        except HttpResponseError as error:
            if token is not None and error.status_code == 412:
                raise changed(loc) from None
            process_storage_error(error)
    except BaseException:
        await client.__aexit__(None, None, None)
        raise

    async def close() -> None:
        _drop(http)
        await client.__aexit__(None, None, None)

    return headers, _Chunks(stream), close


def _drop(http: Any) -> None:
    """Close the connection under a response at once (aiohttp's `close` is synchronous),
    also when the read was cancelled by the end of the call's time budget."""
    internal = getattr(http, "internal_response", None)
    close = getattr(internal, "close", None)
    if callable(close):
        close()


class AzureStore(AsyncStore):
    kind = "Azure Blob"
    bucket_word = "container"

    def describe(self, loc: Where) -> str:
        return "Azure Blob (blob versions are not supported yet)"

    @own_timeouts
    async def _get(self, loc: Where, limit: int) -> Blob:
        container, blob, _ = loc.fs.split_path(loc.fullpath)
        async with loc.fs.service_client.get_blob_client(container=container, blob=blob) as bc:
            got = await _download_capped(loc, bc, limit, ranged=True)
            if got is None:  # 416: an empty blob has no byte 0; read it without a range
                got = await _download_capped(loc, bc, limit, ranged=False)
            assert isinstance(got, tuple)
            headers, data = got
            return Blob(data, str(headers["ETag"]), modified=headers.get("Last-Modified"))

    def open_body(
        self, loc: Where, *, offset: int = 0, token: str | None = None, within: str | None = None
    ) -> Body:
        # One Get Blob (from `offset`), its body taken block by block as it is consumed;
        # a resumed read names the ETag it started on (If-Match).
        opened = self.run(loc, "read", own_timeouts(_open_download), loc, offset, token)
        headers, chunks, close = opened
        return AsyncBody(
            loc,
            chunks.read,
            close,
            told_size(headers.get("Content-Range"), headers.get("Content-Length")),
            str(headers["ETag"]) if headers.get("ETag") else None,
            told_start(headers.get("Content-Range")),
        )

    @own_timeouts
    async def _get_if_changed(self, loc: Where, limit: int, last: Blob | None) -> Blob | Unchanged:
        if last is None or not last.token:
            return await self._get(loc, limit)
        container, blob, _ = loc.fs.split_path(loc.fullpath)
        async with loc.fs.service_client.get_blob_client(container=container, blob=blob) as bc:
            got = await _download_capped(loc, bc, limit, ranged=True, if_none_match=last.token)
            if got is None:  # 416: an empty blob has no byte 0; read it without a range
                got = await _download_capped(loc, bc, limit, ranged=False, if_none_match=last.token)
            if got is UNCHANGED:
                return UNCHANGED
            assert isinstance(got, tuple)
            headers, data = got
            if str(headers["ETag"]) == last.token:  # the condition was ignored
                return UNCHANGED
            return Blob(data, str(headers["ETag"]), modified=headers.get("Last-Modified"))

    async def _bucket_exists(self, loc: Where) -> bool:
        container = loc.fs.split_path(loc.fullpath)[0]
        async with loc.fs.service_client.get_container_client(container) as cc:
            return bool(await cc.exists(retry_total=0, **getattr(loc.fs, "_timeout_kwargs", {})))

    def _write_once(self, loc: Where, data: bytes, expect: Expected) -> Written:
        from azure.core import MatchConditions

        conditions: dict[str, Any] = {"retry_total": 0}
        if isinstance(expect, str):
            conditions.update(etag=expect, match_condition=MatchConditions.IfNotModified)
        elif expect is Expect.ABSENT:
            conditions.update(mode="create")
        try:
            pipe = own_timeouts(loc.fs._pipe_file)
            out = self.run(loc, "write", pipe, loc.fullpath, data, **conditions)
        except FileExistsError as exc:
            raise WriteConflict(f"{loc} exists") from exc
        except Exception as exc:
            if missing_bucket(exc):
                raise storage_error(loc, "write", exc) from None
            if isinstance(expect, str) and code_of(exc) in ("ConditionNotMet", "BlobNotFound"):
                raise WriteConflict(f"{loc} changed") from exc
            if isinstance(expect, str) and type(exc).__name__ in (
                "ResourceModifiedError",
                "ResourceNotFoundError",
            ):
                raise WriteConflict(f"{loc} changed") from exc
            raise
        return Written(str(out["etag"]) if isinstance(out, dict) else None)

    def _delete_once(self, loc: Where, expect: str) -> Written:
        from azure.core import MatchConditions

        container, name, _ = loc.fs.split_path(loc.fullpath)

        async def delete() -> None:
            client = loc.fs.service_client.get_blob_client(container=container, blob=name)
            async with client as bc:
                await bc.delete_blob(
                    etag=expect, match_condition=MatchConditions.IfNotModified, retry_total=0
                )

        try:
            self.run(loc, "delete", own_timeouts(delete))
        except Exception as exc:
            if missing_bucket(exc):
                raise storage_error(loc, "delete", exc) from None
            if code_of(exc) in ("ConditionNotMet", "BlobNotFound") or type(exc).__name__ in (
                "ResourceModifiedError",
                "ResourceNotFoundError",
            ):
                raise WriteConflict(f"{loc} changed") from exc
            raise
        finally:
            loc.fs.invalidate_cache(loc.fullpath)
        return Written(None)
