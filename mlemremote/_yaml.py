"""Reading YAML that someone else wrote: metafiles, history entries, repo configs.

Safe loading only, and no aliases either (an alias bomb would expand exponentially;
MLEM never writes them). Every problem is a `DeserializationError` that says where
(line and column) and what kind of problem it is, never what the line says: a file a
hostile link names may be a credentials file.

>>> load(b"object_type: model\\n", "m.mlem")
{'object_type': 'model'}
"""

from __future__ import annotations

from typing import Any

import yaml

from mlemremote.core.errors import DeserializationError


class StrictLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` without aliases."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed", event.start_mark
            )
        return super().compose_node(parent, index)


_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(data: bytes, uri: str) -> Any:
    """The YAML document in `data`; `DeserializationError` naming `uri` otherwise."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DeserializationError(f"{uri}: not UTF-8 text (byte {exc.start})") from None
    try:
        # Text without '&' or '*' cannot hold an anchor or alias: libyaml's C loader is
        # then safe and several times faster (it matters for load_many).
        if "&" in text or "*" in text:
            return yaml.load(text, Loader=StrictLoader)
        return yaml.load(text, Loader=_FAST_LOADER)
    except yaml.YAMLError as exc:
        raise DeserializationError(f"{uri}: malformed YAML ({where(exc)})") from None
    except (ValueError, RecursionError, OverflowError, MemoryError) as exc:
        # An integer of more than 4300 digits, nesting deeper than the stack, ...
        kind = "nested too deeply" if isinstance(exc, RecursionError) else _short(exc)
        raise DeserializationError(f"{uri}: cannot be read as YAML ({kind})") from None


def where(exc: yaml.YAMLError) -> str:
    """What kind of YAML error, and where: never the text of the line."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or "cannot parse"
    problem = _short_text(str(problem))
    if mark is None:
        return problem
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_short_text(str(exc))}"


def _short_text(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_value(value: object, limit: int = 60) -> str:
    """A value read from a file, for an error message: its repr, shortened (escaped)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"
