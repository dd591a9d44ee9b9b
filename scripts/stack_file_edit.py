"""Edit a stack file's config in place, keeping its comments, key order and list styles.

The tools that write reviewed values into `stacks/Pulumi.<stack>.yaml` (`scripts.pin_workload`,
`scripts.reference_values`) go through this one round trip, so a `--write` changes only the values it
names and the diff a reviewer reads is exactly those lines.

    edit = StackFileEdit.read(path)
    edit.set("workloads[0].args", ["/opt/nim/start_server.sh"])
    edit.append_unique("referenceValues.pcrs.pcr03", "3d45...")
    if edit.changed:
        edit.write()

Paths name a config key without the project prefix (`referenceValues`, not `confidential-ai:referenceValues`),
then map keys after dots and list positions in brackets, as config errors print them.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from scripts.offline import PROJECT
from scripts.offline.stackfile import StackFileError

_PATH = re.compile(r"[^.\[\]]+(?:\.[^.\[\]]+|\[\d+\])*")
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
# A new list of scalars is written inline (`[a, b]`) when it fits this many columns, as the examples do.
_INLINE_LIST_COLUMNS = 100


def _yaml() -> YAML:
    yaml = YAML()  # round-trip mode: comments, order, quotes and flow styles survive
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long value (a PEM line, a digest) onto a second line
    yaml.indent(mapping=2, sequence=4, offset=2)  # the stack files' layout: `  - name: ...`
    return yaml


def parse_path(path: str) -> list[str | int]:
    """`workloads[0].args` -> ["workloads", 0, "args"]."""
    if not _PATH.fullmatch(path):
        raise ValueError(f"{path!r} is not a config key path like workloads[0].args")
    return [name if name else int(index) for name, index in _SEGMENT.findall(path)]


class StackFileEdit:
    """One stack file, parsed for editing; `write()` saves it when a value changed."""

    def __init__(self, path: Path, text: str, document: CommentedMap) -> None:
        self.path = path
        self._original = text
        self._document = document

    @classmethod
    def read(cls, path: Path) -> StackFileEdit:
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise StackFileError(f"{path}: no such stack file") from None
        except (OSError, UnicodeDecodeError) as err:
            raise StackFileError(f"{path}: cannot read it: {getattr(err, 'strerror', None) or err}") from None
        try:
            document = _yaml().load(text)
        except YAMLError as err:
            raise StackFileError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
        if not isinstance(document, CommentedMap) or not isinstance(document.get("config"), CommentedMap):
            raise StackFileError(f"{path}: must be a mapping with a 'config' section")
        return cls(path, text, document)

    def get(self, path: str) -> Any:
        """The plain value at `path` (dicts, lists, scalars), or None where it is absent."""
        node: Any = self._config
        for i, part in enumerate(parse_path(path)):
            key = self._key(part) if i == 0 else part
            if isinstance(key, int) and isinstance(node, list) and key < len(node):
                node = node[key]
            elif isinstance(key, str) and isinstance(node, dict) and key in node:
                node = node[key]
            else:
                return None
        return _plain(node)

    def set(self, path: str, value: Any) -> None:
        """Put `value` at `path`, creating missing maps; a replaced list keeps its inline or block style."""
        parent, key = self._parent(path)
        old = parent[key] if _has(parent, key) else None
        new = _styled(value, like=old)
        if isinstance(key, int) and key == len(parent):
            parent.append(new)
        else:
            parent[key] = new

    def append_unique(self, path: str, value: Any) -> bool:
        """Append `value` to the list at `path` unless it is there already (a new list if absent); True when added."""
        current = self.get(path)
        if current is None:
            self.set(path, [value])
            return True
        if not isinstance(current, list):
            raise StackFileError(f"{self.path}: {path} is not a list")
        if value in current:
            return False
        parent, key = self._parent(path)
        parent[key].append(_quoted_like(parent[key], value))
        return True

    def text(self) -> str:
        stream = io.StringIO()
        _yaml().dump(self._document, stream)
        return stream.getvalue()

    @property
    def changed(self) -> bool:
        return self.text() != self._original

    def write(self) -> None:
        self.path.write_text(self.text())

    @property
    def _config(self) -> CommentedMap:
        return self._document["config"]

    def _key(self, name: str | int) -> str:
        """A config key as the file spells it: `confidential-ai:<name>` unless it names its own namespace."""
        assert isinstance(name, str)
        return name if ":" in name else f"{PROJECT}:{name}"

    def _parent(self, path: str) -> tuple[Any, str | int]:
        parts = parse_path(path)
        parts[0] = self._key(parts[0])
        node: Any = self._config
        for i, part in enumerate(parts[:-1]):
            if not _has(node, part):
                if isinstance(part, int):
                    raise StackFileError(f"{self.path}: {path}: no item {part} in {'.'.join(map(str, parts[:i]))}")
                node[part] = CommentedMap()
            node = node[part]
            if not isinstance(node, (dict, list)):
                raise StackFileError(f"{self.path}: {path}: {part} is not a map or a list")
        last = parts[-1]
        if isinstance(last, int) and not (isinstance(node, list) and last <= len(node)):
            raise StackFileError(f"{self.path}: {path}: no item {last} to replace")
        if isinstance(last, str) and not isinstance(node, dict):
            raise StackFileError(f"{self.path}: {path}: the parent is not a map")
        return node, last


def _has(node: Any, key: str | int) -> bool:
    if isinstance(key, int):
        return isinstance(node, list) and key < len(node)
    return isinstance(node, dict) and key in node


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)  # drop ruamel's quoted-string subclasses
    return node


def _quoted_like(sequence: Any, value: Any) -> Any:
    """A string item double-quoted when the list it joins quotes its strings (`["3d45..."]`)."""
    quoted = isinstance(sequence, list) and any(isinstance(item, DoubleQuotedScalarString) for item in sequence)
    return DoubleQuotedScalarString(value) if quoted and isinstance(value, str) else value


def _styled(value: Any, like: Any) -> Any:
    """`value` as ruamel nodes; a list inline when the list it replaces was, or when it is short and flat."""
    if isinstance(value, dict):
        mapping = CommentedMap()
        for k, v in value.items():
            mapping[k] = _styled(v, like=like.get(k) if isinstance(like, dict) else None)
        return mapping
    if isinstance(value, list):
        sequence = CommentedSeq(_quoted_like(like, _styled(v, like=None)) for v in value)
        if isinstance(like, CommentedSeq):
            inline = like.fa.flow_style()
        else:
            flat = all(isinstance(v, (str, int, float, bool)) for v in value)
            inline = flat and len(", ".join(map(str, value))) + 2 <= _INLINE_LIST_COLUMNS
        if inline:
            sequence.fa.set_flow_style()
        else:
            sequence.fa.set_block_style()
        return sequence
    return value
