"""Reading one configuration file: YAML that cannot surprise.

`read(path, rel)` returns the file's mapping and the line each key or list item was
written on, or raises one `ConfigError` naming the file (and line) when the file:

- is missing a file's shape (a folder, a device), is larger than `MAX_BYTES`, or is
  not UTF-8 text;
- is not YAML, holds several documents, or its top level is not a mapping;
- gives a key twice in one mapping (YAML says the last wins, silently: refused here,
  with both lines);
- uses a merge key (``<<``), or a non-scalar key;
- expands aliases past `MAX_NODES` values, or nests deeper than `MAX_DEPTH` (an
  "alias bomb" of a few hundred bytes otherwise expands to billions of values).

libyaml composes the node graph (aliases stay shared, so composing is linear in
the file's size); this module turns the graph into Python values itself, counting.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

MAX_BYTES = 1 << 20        # a configuration file is a few KB; a 5,000-node file is ~250 KB
MAX_NODES = 100_000        # values, composed and after alias expansion; 5,000 nodes are ~35,000
MAX_DEPTH = 64



class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """libyaml's safe loader, counting the values it composes (each is resolved once):
    a 1 MiB file of `[1,1,1,...` stops at MAX_NODES, well within a second."""

    composed = 0

    def resolve(self, kind, value, implicit):
        self.composed += 1
        if self.composed > MAX_NODES:
            raise _TooMany()
        return super().resolve(kind, value, implicit)


class _TooMany(Exception):
    pass


MERGE_TAG = "tag:yaml.org,2002:merge"
STR_TAG = "tag:yaml.org,2002:str"

Lines = dict[tuple, int]   # key path -> line (1-based) the value was written on


def read(path: Path, rel: str) -> tuple[dict[str, Any], Lines]:
    """The mapping in ``path`` (shown as ``rel``) and the line of every key path in it."""
    text = _text(path, rel)
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is not None and "&" in text:   # anchors, hence aliases: bound the expansion first
                _bounded(node, rel)
            return _Builder(loader, rel).top(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        raise ConfigError(rel, where, f"malformed YAML: {getattr(exc, 'problem', None) or exc}") from None
    except _TooMany:
        raise ConfigError(rel, "", f"holds more than {MAX_NODES} values") from None
    except RecursionError:
        raise ConfigError(rel, "", f"nested too deeply (more than {MAX_DEPTH} levels)") from None


def _text(path: Path, rel: str) -> str:
    try:
        if path.is_dir():
            raise ConfigError(rel, "", "is a folder; a YAML file belongs here")
        if not path.is_file():
            raise ConfigError(rel, "", "is not a regular file; a YAML file belongs here")
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(rel, "", f"is {size} bytes; a configuration file is at most {MAX_BYTES} bytes")
        data = path.read_bytes()[: MAX_BYTES + 1]
    except OSError as exc:
        raise ConfigError(rel, "", f"cannot be read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(rel, f"line {line}", f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def _bounded(top, rel: str) -> None:
    """Refuse a graph that expands past MAX_NODES values or MAX_DEPTH levels, before
    expanding anything: each node's expanded size is computed once (aliases share nodes)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise ConfigError(rel, f"line {node.start_mark.line + 1}", f"nested more than {MAX_DEPTH} levels deep")
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in active:
            raise ConfigError(rel, f"line {node.start_mark.line + 1}", "an alias refers to the value it is part of")
        active.add(id(node))
        if isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(item, depth + 1) for item in node.value)
        else:
            total = 1
        active.discard(id(node))
        if total > MAX_NODES:
            raise ConfigError(rel, f"line {node.start_mark.line + 1}",
                              f"expands to more than {MAX_NODES} values (aliases referring to aliases?)")
        sizes[id(node)] = total
        return total

    size(top, 0)


class _Builder:
    def __init__(self, loader, rel: str):
        self.loader, self.rel = loader, rel
        self.lines: Lines = {}
        self.count = 0

    def top(self, node) -> tuple[dict[str, Any], Lines]:
        if node is None:
            return {}, {}
        if not isinstance(node, yaml.MappingNode):
            if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
                return {}, {}
            raise ConfigError(self.rel, f"line {node.start_mark.line + 1}", "the top level must be a mapping of keys")
        return self.value(node, (), 0), self.lines

    def value(self, node, path: tuple, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise ConfigError(self.rel, f"line {node.start_mark.line + 1}",
                              f"expands to more than {MAX_NODES} values (aliases referring to aliases?)")
        if depth > MAX_DEPTH:
            raise ConfigError(self.rel, f"line {node.start_mark.line + 1}", f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            out = []
            for i, item in enumerate(node.value):
                self.lines[path + (i,)] = item.start_mark.line + 1
                out.append(self.value(item, path + (i,), depth + 1))
            return out
        if node.tag == STR_TAG:
            return node.value
        return self.loader.construct_object(node)

    def mapping(self, node, path: tuple, depth: int) -> dict:
        out: dict = {}
        first: dict = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == MERGE_TAG:
                raise ConfigError(self.rel, f"line {line}", "merge keys (<<) are not supported: write the keys out")
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError(self.rel, f"line {line}", "a key must be a plain name, not a list or mapping")
            key = key_node.value if key_node.tag == STR_TAG else self.loader.construct_object(key_node)
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                key = str(key_node.value)   # `yes:` or `1.5:` are names here, not booleans or numbers
            if key in first:
                raise ConfigError(self.rel, format_key(path + (key,)), f"given twice, on line {first[key]} and line {line} (YAML would silently keep the last)", line)
            first[key] = line
            self.lines[path + (key,)] = line
            out[key] = self.value(value_node, path + (key,), depth + 1)
        return out


def format_key(loc: tuple) -> str:
    """('nodes', 1, 'ip') -> nodes[1].ip"""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
