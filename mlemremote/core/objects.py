"""MLEM metadata objects: the single source of the `.mlem` YAML schema.

`object_type` selects the class (a pydantic discriminated union). Keys this library does
not know are kept as they are, so a metafile written by MLEM loads and dumps unchanged.

>>> from mlemremote.core.objects import MlemLink
>>> print(MlemLink(path="models/rf.mlem", link_type="model").to_yaml(), end="")
link_type: model
object_type: link
path: models/rf.mlem
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, ValidationError

from mlemremote import _links, _yaml
from mlemremote._boundary import public
from mlemremote._location import Location
from mlemremote.core.errors import DeserializationError, MlemObjectNotSavedError


class MlemObject(BaseModel):
    """Base of every metadata object; `.location` is where it was loaded from or dumped to."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    object_type: str
    type_folder: ClassVar[str] = ""
    _location: Location | None = PrivateAttr(default=None)
    # As read or written: the token a compare-and-swap write compares against, and the
    # backend's version id of that content (S3 VersionId, GCS generation), if any.
    _token: str | None = PrivateAttr(default=None)
    _version: str | None = PrivateAttr(default=None)
    _modified: datetime | None = PrivateAttr(default=None)  # when it was written, if known

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise DeserializationError(
                f"invalid {type(self).__name__}: {_problems(exc, skip=0)}"
            ) from None

    # -- where it lives ----------------------------------------------------------------
    @property
    def location(self) -> Location | None:
        """The `Location` of its metafile, or None when it was never saved."""
        return self._location

    @property
    def loc(self) -> Location:
        """Like `location`, but raises `MlemObjectNotSavedError` when unsaved."""
        if self._location is None:
            raise MlemObjectNotSavedError(f"{type(self).__name__} is not saved")
        return self._location

    @property
    def token(self) -> str | None:
        """What a compare-and-swap (`expected=`, the CLI's `--expected`) compares against:
        the metafile's ETag, generation or content hash as it was read or written here;
        None when it was not. (Not a version id: `HistoryEntry.version` is that.)"""
        return self._token

    @property
    def is_saved(self) -> bool:
        return self._location is not None

    @property
    def resolved_type(self) -> str:
        """The type a link to this object records in `link_type`."""
        return self.object_type

    # -- YAML --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The metafile's content: declared fields that are None are left out, unknown keys
        are kept exactly as loaded."""
        unset = {name for name in type(self).model_fields if getattr(self, name) is None}
        return self.model_dump(exclude=unset, by_alias=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=True, default_flow_style=False)

    # -- saving ------------------------------------------------------------------------
    @public
    def dump(
        self,
        path: str,
        repo: str | None = None,
        external: bool | None = None,
        *,
        storage_options: Mapping[str, Any] | None = None,
    ) -> Location:
        """Write the metafile where MLEM writes it: at `<path>.mlem` outside repos; in a repo
        (`repo`, or one found above `path`) at `<repo>/.mlem/<type>/<path>.mlem`, or with
        `external` at `<repo>/<path>.mlem` plus MLEM's index link
        `<repo>/.mlem/link/<path>.mlem` (never replacing an alias of that name).

        >>> import tempfile, os
        >>> from mlemremote import MlemModel
        >>> folder = tempfile.mkdtemp()
        >>> MlemModel(model_type={"type": "sklearn"}).dump(os.path.join(folder, "rf")).uri[-8:]
        '/rf.mlem'
        """
        target = _links.target_location(
            path, repo, external, self.type_folder, build, storage_options=storage_options
        )
        _links.write_object(self, target)
        _links.write_index_link(self, target, build)
        return target

    @public
    def make_link(
        self,
        path: str | None = None,
        repo: str | None = None,
        external: bool | None = None,
        absolute: bool = False,
        *,
        folder_relative: bool = False,
        storage_options: Mapping[str, Any] | None = None,
    ) -> MlemLink:
        """A link to this (saved) object; written to `path` (in `repo`) when given (see
        `link` for where and in which form).

        >>> import tempfile, os
        >>> from mlemremote import MlemModel
        >>> folder = tempfile.mkdtemp()
        >>> model = MlemModel(model_type={"type": "sklearn"})
        >>> _ = model.dump(os.path.join(folder, "rf"))
        >>> model.make_link(os.path.join(folder, "latest"), folder_relative=True).path
        './rf.mlem'
        """
        link = self._link_at(self.location)
        if path is not None:
            link.dump(
                path,
                repo,
                external,
                absolute=absolute,
                folder_relative=folder_relative,
                storage_options=storage_options,
            )
        return link

    def _link_at(self, src: Location | None) -> MlemLink:
        """An unsaved link to this saved object at `src` (its location, or a pinned
        version of it), in its absolute form."""
        if src is None:
            raise MlemObjectNotSavedError("cannot link to an object that is not saved")
        fields = _links.absolute_fields(src)
        link = MlemLink(
            link_type=self.resolved_type,
            path=fields["path"],
            repo=fields.get("repo"),
            rev=fields.get("rev"),
        )
        link._points_to = src
        return link


class MlemModel(MlemObject):
    """A model's metadata (`object_type: model`); artifacts are not touched here."""

    object_type: Literal["model"] = "model"
    type_folder: ClassVar[str] = "model"
    artifacts: dict[str, Any] | None = None
    model_type: dict[str, Any] | None = None
    requirements: list[Any] | None = None


class MlemData(MlemObject):
    """A dataset's metadata; MLEM 0.2.0 writes `object_type: dataset`, later MLEM `data`."""

    object_type: Literal["dataset", "data"] = "dataset"
    type_folder: ClassVar[str] = "dataset"
    artifacts: dict[str, Any] | None = None

    @property
    def resolved_type(self) -> str:
        return "dataset"


class MlemEnv(MlemObject):
    object_type: Literal["env"] = "env"
    type_folder: ClassVar[str] = "env"


class MlemDeployment(MlemObject):
    object_type: Literal["deployment"] = "deployment"
    type_folder: ClassVar[str] = "deployment"


class MlemPackager(MlemObject):
    object_type: Literal["packager"] = "packager"
    type_folder: ClassVar[str] = "packager"


class MlemLink(MlemObject):
    """A link: `path` (repo-relative, folder-relative or a full URI), optional `repo`
    (a URI) and `rev`, and `link_type`, the type of the object at the end of the chain."""

    object_type: Literal["link"] = "link"
    type_folder: ClassVar[str] = "link"
    path: str
    repo: str | None = None
    rev: str | None = None
    link_type: str

    # Set by make_link: the object's location, from which `dump` computes `path`/`repo`.
    _points_to: Location | None = PrivateAttr(default=None)

    @property
    def resolved_type(self) -> str:
        return self.link_type

    @public
    def dump(
        self,
        path: str,
        repo: str | None = None,
        external: bool | None = None,
        absolute: bool = False,
        *,
        folder_relative: bool = False,
        storage_options: Mapping[str, Any] | None = None,
    ) -> Location:
        """Write the link (where MLEM writes it: see `link`). Unless `absolute`, a link to
        an object in its own repo is repo-relative; anything else is a full URI, unless
        `folder_relative` (outside repos: `./m.mlem`, which MLEM cannot read). Replacing
        another link is allowed; replacing any other object raises `ObjectExistsError`.

        >>> import tempfile, os
        >>> from mlemremote import MlemLink
        >>> folder = tempfile.mkdtemp()
        >>> MlemLink(path="s3://b/m.mlem", link_type="model").dump(folder + "/l").uri[-7:]
        '/l.mlem'
        """
        target = _links.target_location(
            path, repo, external, self.type_folder, build, storage_options=storage_options
        )
        _links.write_link(self, target, build, absolute=absolute, folder_relative=folder_relative)
        return target

    @public
    def load_link(
        self, follow_links: bool = True, force_type: type[MlemObject] | None = None
    ) -> MlemObject:
        """The object this link points at (the end of the chain when `follow_links`).

        >>> import tempfile, os
        >>> from mlemremote import MlemModel, link
        >>> folder = tempfile.mkdtemp()
        >>> _ = MlemModel().dump(os.path.join(folder, "rf"))
        >>> link(os.path.join(folder, "rf"), target=os.path.join(folder, "l")).load_link()
        MlemModel(object_type='model', artifacts=None, model_type=None, requirements=None)
        """
        return _links.follow(self, build, follow_links=follow_links, force_type=force_type)


AnyMlemObject = Annotated[
    Union[MlemModel, MlemData, MlemLink, MlemEnv, MlemDeployment, MlemPackager],  # noqa: UP007
    Field(discriminator="object_type"),
]
_ADAPTER: TypeAdapter[MlemObject] = TypeAdapter(AnyMlemObject)
OBJECT_TYPES = ("model", "dataset", "data", "link", "env", "deployment", "packager")


def build(content: Mapping[str, Any], uri: str) -> MlemObject:
    """An object from a metafile's content (a mapping); every problem names `uri` and
    none quotes what the file holds beyond a shortened `object_type`."""
    if not isinstance(content, Mapping):
        raise DeserializationError(
            f"{uri}: a metafile must be a YAML mapping, not {type(content).__name__}"
        )
    object_type = content.get("object_type")
    if object_type not in OBJECT_TYPES:
        raise DeserializationError(
            f"{uri}: unknown object_type {_yaml.describe_value(object_type)} "
            f"(expected one of {', '.join(OBJECT_TYPES)})"
        )
    try:
        return _ADAPTER.validate_python(dict(content))
    except DeserializationError as exc:  # from MlemObject.__init__, which pydantic calls
        raise DeserializationError(f"{uri}: {exc}") from None
    except ValidationError as exc:
        raise DeserializationError(
            f"{uri}: invalid {object_type} metafile: {_problems(exc)}"
        ) from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise DeserializationError(
            f"{uri}: invalid {object_type} metafile ({type(exc).__name__})"
        ) from None


def parse(data: bytes, uri: str) -> MlemObject:
    """Build an object from a metafile's bytes; every problem names `uri`."""
    return build(_yaml.load(data, uri), uri)


def _problems(exc: ValidationError, skip: int = 1) -> str:
    """Where the fields are wrong and how, never the values themselves (`skip`: the
    leading parts of each error's location that name the union's member)."""
    # Only the field's own name: the keys below it come from the file (they may be
    # anything, a secret included).
    return "; ".join(
        dict.fromkeys(
            f"{err['loc'][skip] if len(err['loc']) > skip else 'object'}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)[:10]
        )
    )


__all__ = [
    "MlemData",
    "MlemDeployment",
    "MlemEnv",
    "MlemLink",
    "MlemModel",
    "MlemObject",
    "MlemPackager",
]
