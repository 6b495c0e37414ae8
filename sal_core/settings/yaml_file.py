"""YAML files our own code reads (`sal with-servers --config`), refusing alias bombs in a moment.

A "billion laughs" file is a few lines whose anchors and aliases expand to billions of values: PyYAML
loads it as shared objects quickly, but whatever walks the result (settings, JSON, a schema check)
would take forever. The file's node graph is measured first, each anchored node once, and refused
with one line when it would expand beyond MAX_VALUES.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sal_core.errors import ConfigError

#: values (scalars, lists, mappings) a config may expand to; real configs have a few thousand
MAX_VALUES = 1_000_000


def expanded_size(root: yaml.Node) -> int:
    """How many values the document would have with every alias expanded (capped at MAX_VALUES + 1)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # iterative post-order: deep nesting cannot exhaust the recursion limit
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if done or not children:
            total = 1 + sum(sizes.get(id(child), 0) for child in children)
            sizes[id(node)] = min(total, MAX_VALUES + 1)
        else:
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def load_yaml(path: str | Path, where: str) -> Any:
    """The YAML document in `path`; ConfigError naming `where` and the file when it is unreadable, not
    YAML, or an alias bomb."""
    try:
        text = Path(path).read_text()
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).replace("\n", " ")
        raise ConfigError(f"{where}: cannot read {path} ({reason or err.__class__.__name__})") from err
    if root is None:
        return None
    if expanded_size(root) > MAX_VALUES:
        raise ConfigError(f"{where}: {path} expands to more than {MAX_VALUES} values through its aliases (refused)")
    return yaml.SafeLoader("").construct_document(root)
