"""Reading YAML that someone else wrote: metafiles, history entries, repo configs.

Safe loading only, and no aliases either (an alias bomb would expand exponentially;
MLEM never writes them). A document is first scanned by libyaml's parser (in C, no
objects built): one with an alias, or with more than `MAX_NODES` nodes, is refused
before anything is constructed, so a 1 MiB metafile costs milliseconds, never seconds.
Integers are bounded too: no base-60 integers (`1:2:3:...`,
whose conversion takes quadratic time) and no integer of more than 4,300 digits in any
base (Python refuses to print one, so no message or `dump` could show it). Every
problem is a `DeserializationError` that says where (line and column) and what kind of
problem it is, never what the file says: a file a hostile link names may be a
credentials file, so quoted text in a parser's message is left out.

>>> load(b"object_type: model\\n", "m.mlem")
{'object_type': 'model'}
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from mlemremote.core.errors import DeserializationError

MAX_INT_BITS = 14_000  # about 4,200 decimal digits: Python's str() refuses past 4,300
MAX_NODES = 100_000  # MLEM's metafiles hold hundreds; a list of 500,000 items is an attack
# What a parser quotes from the file (a tag, a value, a directive): more than a
# punctuation mark between quotes or angle brackets.
_QUOTED = re.compile(r"'[^']{4,}'|\"[^\"]{4,}\"|<[^>]{4,}>")


def _construct_int(loader: Any, node: Any) -> int:
    text = str(loader.construct_scalar(node))
    if ":" in text:
        raise yaml.constructor.ConstructorError(
            None, None, "base-60 integers are not allowed", node.start_mark
        )
    value = yaml.constructor.SafeConstructor.construct_yaml_int(loader, node)
    if abs(value).bit_length() > MAX_INT_BITS:
        raise yaml.constructor.ConstructorError(
            None, None, "an integer has more than 4,200 digits", node.start_mark
        )
    return int(value)


class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's safe loader (the pure-Python one where libyaml is missing), with
    bounded integers; used only on documents that `_scan` let through."""


Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_NODES = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)


def _scan(text: str) -> None:
    """Refuse aliases and documents of more than `MAX_NODES` nodes, from the parser's
    events alone (nothing is constructed)."""
    nodes = 0
    for event in yaml.parse(text, Loader=Loader):
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None,
                None,
                "YAML aliases (*name) are not allowed",
                event.start_mark,  # type: ignore[arg-type]
            )
        if isinstance(event, _NODES):
            nodes += 1
            if nodes > MAX_NODES:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"more than {MAX_NODES} YAML nodes",
                    event.start_mark,  # type: ignore[arg-type]
                )


def load(data: bytes, uri: str) -> Any:
    """The YAML document in `data`; `DeserializationError` naming `uri` otherwise."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DeserializationError(f"{uri}: not UTF-8 text (byte {exc.start})") from None
    try:
        if "&" in text or "*" in text or len(text) > 2 * MAX_NODES:
            # Only such text can hold an alias, or that many nodes: scan it first.
            _scan(text)
        return yaml.load(text, Loader=Loader)
    except yaml.YAMLError as exc:
        problem = f"malformed YAML ({where(exc)})"
    except RecursionError:
        problem = "cannot be read as YAML (nested too deeply)"
    except Exception as exc:  # the constructors raise KeyError, ValueError, ... too
        problem = f"cannot be read as YAML ({type(exc).__name__})"
    raise DeserializationError(f"{uri}: {problem}")


def where(exc: yaml.YAMLError) -> str:
    """What kind of YAML error, and where: never the text of the line, nor anything the
    parser quotes from it (a tag, a value)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or "cannot parse"
    problem = _short_text(_QUOTED.sub("'...'", str(problem)))
    if mark is None:
        return problem
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"


def _short_text(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_value(value: object, limit: int = 60) -> str:
    """A value read from a file, for an error message: its repr, shortened (escaped)."""
    try:
        text = repr(value)
    except Exception:  # an object that cannot even be shown (a huge integer, ...)
        return f"<a {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 4] + "...'"
