"""Azure Blob: ETag match conditions. Versions are refused: Azurite, the only server this
is tested on, ignores version ids and would silently serve the current blob."""

from __future__ import annotations

from typing import Any

from mlemremote._foreign import code_of, missing_bucket, storage_error
from mlemremote._stores.base import (
    AsyncStore,
    Blob,
    Expect,
    Expected,
    Where,
    WriteConflict,
    Written,
    too_large,
)


class AzureStore(AsyncStore):
    kind = "Azure Blob"

    def describe(self, loc: Where) -> str:
        return "Azure Blob (blob versions are not supported yet)"

    async def _get(self, loc: Where, limit: int) -> Blob:
        container, blob, _ = loc.fs.split_path(loc.fullpath)
        async with loc.fs.service_client.get_blob_client(container=container, blob=blob) as bc:
            # retry_total=0: our retry policy is the one that counts.
            stream = await bc.download_blob(retry_total=0)
            if stream.size > limit:
                raise too_large(loc, limit, stream.size)
            data = bytes(await stream.readall())
            props = stream.properties
            return Blob(data, str(props.etag), modified=props.last_modified)

    def _write_once(self, loc: Where, data: bytes, expect: Expected) -> Written:
        from azure.core import MatchConditions

        conditions: dict[str, Any] = {"retry_total": 0}
        if isinstance(expect, str):
            conditions.update(etag=expect, match_condition=MatchConditions.IfNotModified)
        elif expect is Expect.ABSENT:
            conditions.update(mode="create")
        try:
            out = self.run(loc, "write", loc.fs._pipe_file, loc.fullpath, data, **conditions)
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
