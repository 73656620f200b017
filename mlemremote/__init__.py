"""mlemremote: MLEM-compatible links to ML models on local disk, S3, GCS and Azure Blob.

>>> import tempfile, os
>>> from mlemremote import MlemModel, link, load_meta
>>> folder = tempfile.mkdtemp()
>>> _ = MlemModel(model_type={"type": "sklearn"}).dump(os.path.join(folder, "rf"))
>>> _ = link(os.path.join(folder, "rf"), target=os.path.join(folder, "latest"))
>>> load_meta(os.path.join(folder, "latest")).model_type
{'type': 'sklearn'}
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Re-exports, imported on first use: `mlemremote --help` then loads no library code.
_EXPORTS = {
    "Location": "mlemremote._location",
    "resolve": "mlemremote.api",
    "check": "mlemremote.api",
    "configure": "mlemremote.api",
    "explain_storage_options": "mlemremote.api",
    "history": "mlemremote.api",
    "init": "mlemremote.api",
    "link": "mlemremote.api",
    "load_many": "mlemremote.api",
    "load_meta": "mlemremote.api",
    "open_artifact": "mlemremote.api",
    "pull": "mlemremote.api",
    "rollback": "mlemremote.api",
    "unlink": "mlemremote.api",
    "watch": "mlemremote.api",
    "MlemError": "mlemremote.core.errors",
    "MlemData": "mlemremote.core.objects",
    "MlemLink": "mlemremote.core.objects",
    "MlemModel": "mlemremote.core.objects",
    "MlemObject": "mlemremote.core.objects",
}

if TYPE_CHECKING:
    from mlemremote._location import Location
    from mlemremote.api import (
        check,
        configure,
        explain_storage_options,
        history,
        init,
        link,
        load_many,
        load_meta,
        open_artifact,
        pull,
        rollback,
        unlink,
        watch,
    )
    from mlemremote.api import resolve_location as resolve
    from mlemremote.core.errors import MlemError
    from mlemremote.core.objects import MlemData, MlemLink, MlemModel, MlemObject


_RENAMED = {"resolve": "resolve_location"}  # wrapped in the API's error boundary


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(_EXPORTS[name])
        value = getattr(module, _RENAMED.get(name, name))
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mlemremote' has no attribute {name!r}")


__all__ = [
    "Location",
    "MlemData",
    "MlemError",
    "MlemLink",
    "MlemModel",
    "MlemObject",
    "check",
    "configure",
    "explain_storage_options",
    "history",
    "init",
    "link",
    "load_many",
    "load_meta",
    "open_artifact",
    "pull",
    "resolve",
    "rollback",
    "unlink",
    "watch",
]
