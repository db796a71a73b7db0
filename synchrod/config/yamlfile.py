"""Reading the YAML file: a strict loader (a key given twice in one mapping
is an error) and the errors of a file that cannot be read, each one
:class:`ConfigError` naming the file."""
from __future__ import annotations

from typing import Any

import yaml

from .validator import ConfigError


class _DuplicateKey(Exception):
    """A key given twice in one YAML mapping (1-based lines)."""

    def __init__(self, key: Any, line: int, first_line: int):
        super().__init__(key, line, first_line)
        self.key, self.line, self.first_line = key, line, first_line


# `<<` (merge) and `=` (value) keys are flatten_mapping's to resolve
_SPECIAL_KEY_TAGS = ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value")


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping: PyYAML would
    silently keep the last one, and an operator's edit of the first would
    then do nothing."""

    def __init__(self, stream: Any):
        super().__init__(stream)
        self._unique_checked: set[int] = set()

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        """PyYAML's merge of ``<<`` keys, after raising :class:`_DuplicateKey`
        for an explicit key given twice in ``node``."""
        # checked before the merge (<<) copies keys in, which an explicit key
        # may override; a node is flattened again when merged or aliased
        if id(node) not in self._unique_checked:
            self._unique_checked.add(id(node))
            first: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag in _SPECIAL_KEY_TAGS:
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in first:
                        raise _DuplicateKey(key, line, first[key])
                    first[key] = line
                except TypeError:
                    continue  # an unhashable key: construct_mapping reports it
        super().flatten_mapping(node)


def read_yaml(path: str, loader: type = _StrictLoader) -> Any:
    """The data of the YAML file at ``path`` (never None), read with
    ``loader``; a missing, unreadable, invalid or empty file, or a key given
    twice, is one :class:`ConfigError` with an empty path."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.load(fh, Loader=loader)  # noqa: S506 - a SafeLoader
    except _DuplicateKey as exc:
        raise ConfigError("", f"{path}: line {exc.line}: key {exc.key!r} is given twice "
                              f"(first at line {exc.first_line})") from None
    except FileNotFoundError:
        raise ConfigError("", f"configuration file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError("", f"cannot read configuration file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError("", f"{path} is not valid YAML{where}: "
                              f"{getattr(exc, 'problem', None) or exc}") from None
    if raw is None:
        raise ConfigError("", f"{path} is empty")
    return raw
