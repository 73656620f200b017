"""mlemremote: MLEM-compatible links to ML models on local disk, S3, GCS and Azure Blob.

>>> import tempfile, os
>>> from mlemremote import MlemModel, link, load_meta
>>> folder = tempfile.mkdtemp()
>>> _ = MlemModel(model_type={"type": "sklearn"}).dump(os.path.join(folder, "rf"))
>>> _ = link(os.path.join(folder, "rf"), target=os.path.join(folder, "latest"))
>>> load_meta(os.path.join(folder, "latest")).model_type
{'type': 'sklearn'}
"""

from mlemremote._location import Location, resolve
from mlemremote.api import configure, history, init, link, load_meta, rollback
from mlemremote.core.errors import MlemError
from mlemremote.core.objects import MlemData, MlemLink, MlemModel, MlemObject

__version__ = "0.1.0"

__all__ = [
    "Location",
    "MlemData",
    "MlemError",
    "MlemLink",
    "MlemModel",
    "MlemObject",
    "configure",
    "history",
    "init",
    "link",
    "load_meta",
    "resolve",
    "rollback",
]
