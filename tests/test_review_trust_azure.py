"""Hostile review (rev2-trust), Azure: each test fails on the commit before its fix.

- adlfs reads `az://container@account.blob.core.windows.net/x` as `container/x` of the
  account its filesystem was made for (it drops what precedes the container): a link
  naming another account silently served the model of the same path in yours.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Endpoints, make_backend

from mlemremote.api import init, load_meta
from mlemremote.core.errors import InvalidLinkError
from mlemremote.core.objects import MlemLink, MlemModel

pytestmark = pytest.mark.backends("azure")

MODEL = b"object_type: model\nmodel_type:\n  served: true\n"


def test_a_link_naming_another_azure_account_is_not_read_from_yours(
    endpoints: Endpoints, tmp_path: Path
) -> None:
    backend = make_backend("azure", endpoints, tmp_path)
    container = backend.root.split("://", 1)[1]
    backend.fs.pipe_file(f"{container}/m.mlem", MODEL)
    repo, so = backend.root, backend.storage_options
    init(repo, storage_options=so)
    theirs = f"az://{container}@theirs.blob.core.windows.net/m.mlem"
    MlemLink(path=theirs, link_type="model").dump("alias", repo=repo, storage_options=so)
    with pytest.raises(InvalidLinkError, match="names Azure account 'theirs'"):
        load_meta("alias", repo=repo, storage_options=so)
    with pytest.raises(InvalidLinkError, match="names Azure account 'theirs'"):
        load_meta(theirs, storage_options=so)
    # The account the filesystem is for, named in the URL: read as before.
    mine = f"az://{container}@devstoreaccount1.blob.core.windows.net/m.mlem"
    assert isinstance(load_meta(mine, storage_options=so), MlemModel)


def test_a_dfs_host_naming_another_azure_account_is_not_read_from_yours(
    endpoints: Endpoints, tmp_path: Path
) -> None:
    """(rev3) adlfs also drops a host `<account>.dfs.core.windows.net` with no `@`:
    `abfs://theirs.dfs.core.windows.net/c/m.mlem` is `c/m.mlem` of your account."""
    backend = make_backend("azure", endpoints, tmp_path)
    container = backend.root.split("://", 1)[1]
    backend.fs.pipe_file(f"{container}/m.mlem", MODEL)
    repo, so = backend.root, backend.storage_options
    init(repo, storage_options=so)
    for scheme in ("abfs", "az"):
        theirs = f"{scheme}://theirs.dfs.core.windows.net/{container}/m.mlem"
        MlemLink(path=theirs, link_type="model").dump("alias", repo=repo, storage_options=so)
        with pytest.raises(InvalidLinkError, match="names Azure account 'theirs'"):
            load_meta("alias", repo=repo, storage_options=so)
        with pytest.raises(InvalidLinkError, match="names Azure account 'theirs'"):
            load_meta(theirs, storage_options=so)
    # Your own account in the host form: read as before.
    mine = f"abfs://devstoreaccount1.dfs.core.windows.net/{container}/m.mlem"
    assert isinstance(load_meta(mine, storage_options=so), MlemModel)
