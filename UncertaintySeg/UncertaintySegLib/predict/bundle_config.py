"""Read a MONAI bundle's `configs/inference.json` without running any of it.

MONAI's `ConfigParser` evaluates `$` expressions (Python `eval`), instantiates any `_target_` and follows `@`
references and `%` macros: a downloaded bundle can run any code. `SafeBundleConfig` reads the same JSON as
plain data instead, along the paths the caller asks for and nowhere else:

- a plain reference `"@key"` (also `"@a::b"`, `"@a#b"` and MONAI's relative `"@#key"`) is followed to the value
  it names, and must lead to data too;
- a `$` expression, a `%` macro, or (inside a value read as literal data) a dict with `_target_`, found on a path
  that is read, is refused with a `ModelError` that names the key and the value found and says to pass
  `--trust-bundle` if the user trusts the bundle's code;
- top-level keys such as `"net::channels"` or `"+net"` override or merge as MONAI's `read_config` does, so the
  structure checked is the one MONAI would run;
- the network (`network()`) is built only from `{"_target_": <class of monai.networks.nets>, <literal args>}`:
  `_target_` is a name in `monai.networks.nets` (`"UNet"`, `"monai.networks.nets.UNet"`,
  `"monai.networks.nets.unet.UNet"`); besides `_desc_`, `_mode_: "default"` and `_disabled_: false` no other
  `_special_` key is taken.

Keys that are never read (postprocessing of a softmax bundle, `network`, `device`, datasets, handlers...) are
neither evaluated nor checked. See `bundle.py` for which paths the project reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..common.errors import ModelError
from ..common.json_output import json_text

ALLOWED_NETWORKS = "monai.networks.nets"
HARMLESS_SPECIAL_KEYS = {"_desc_": None, "_mode_": ("default",), "_disabled_": (False, "false", "False")}
ACCEPTED = (f"Loading safely accepts network_def = {{\"_target_\": <a class in {ALLOWED_NETWORKS}>, literal arguments}} and, "
            "on the keys read (network_def, inferer::roi_size, preprocessing's normalisation transform, postprocessing's "
            "sigmoid), literal values or plain '@key' references to them. If you trust this bundle's code, pass "
            "--trust-bundle (in the panel: tick 'Trust this bundle: its code will run') and MONAI's ConfigParser will run it")
_MISSING = object()


def refused(key: str, value: Any, what: str, source: Path, via: tuple[str, ...] = ()) -> ModelError:
    shown = json_text(value, default=repr, indent=None)
    if len(shown) > 120:
        shown = shown[:117] + "..."
    reached = f" (reached from {' -> '.join(repr(k) for k in via)})" if via else ""
    return ModelError(f"{source}: '{key}' is {shown}{reached}, {what}. {ACCEPTED}.")


def read_inference_json(path: Path) -> dict:
    """The JSON of `path` as MONAI's `read_config` sees it: duplicate keys refused, `a::b` / `+a` keys merged."""

    def no_duplicates(pairs):
        keys = [key for key, _ in pairs]
        duplicated = sorted({key for key in keys if keys.count(key) > 1})
        if duplicated:
            raise ModelError(f"'{path}' repeats the key(s) {duplicated}: MONAI refuses such a config; keep one of each.")
        return dict(pairs)

    try:
        content = json.loads(Path(path).read_text(), object_pairs_hook=no_duplicates)
    except (OSError, ValueError) as error:
        if isinstance(error, ModelError):
            raise
        raise ModelError(f"cannot read '{path}': {error}") from None
    if not isinstance(content, dict):
        raise ModelError(f"'{path}' holds a {type(content).__name__}, not a JSON object: not a MONAI bundle config.")
    config: dict = {}
    for key, value in content.items():
        _merge(config, str(key), value, path)
    return config


def _ids(key: str) -> list[str]:
    return key.replace("#", "::").split("::")


def _container_at(config, ids: list[str], path: Path, key: str):
    node = config
    for part in ids:
        try:
            node = node[part] if isinstance(node, dict) else node[int(part)]
        except (KeyError, IndexError, ValueError, TypeError):
            raise ModelError(f"'{path}': key '{key}' overrides '{part}', which is not in the config.") from None
    return node


def _merge(config: dict, key: str, value, path: Path) -> None:
    """`merge_kv` + `ConfigParser.__setitem__` of MONAI: `+id` extends a dict/list, `a::b` sets inside `a`."""
    if key.startswith("+"):
        ids = _ids(key[1:])
        try:
            target = _container_at(config, ids, path, key)
        except ModelError:
            target = _MISSING
        if target is _MISSING:
            _merge(config, key[1:], value, path)
        elif isinstance(target, dict) and isinstance(value, dict):
            target.update(value)
        elif isinstance(target, list) and isinstance(value, list):
            target.extend(value)
        else:
            raise ModelError(f"'{path}': '{key}' merges a {type(value).__name__} into a {type(target).__name__}.")
        return
    ids = _ids(key)
    parent = _container_at(config, ids[:-1], path, key)
    try:
        if isinstance(parent, dict):
            parent[ids[-1]] = value
        else:
            parent[int(ids[-1])] = value
    except (IndexError, ValueError, TypeError):
        raise ModelError(f"'{path}': key '{key}' cannot be set in the config.") from None


class SafeBundleConfig:
    """A bundle config read as data: `get(*keys)` navigates (following `@` references), `literal(*keys)` is a value
    with everything inside resolved, `network()` builds `network_def`. Nothing is evaluated; see the module docstring."""

    def __init__(self, config: dict, source: Path):
        self.config = config
        self.source = source

    # --- navigation ------------------------------------------------------------------------------
    def _walk(self, keys):
        """(node, its id, the references followed) at `keys`, references followed at every step; None where a key is absent."""
        node, node_id, via = self._resolve(self.config, "", ())
        for key in keys:
            child = self._child(node, key)
            if child is _MISSING:
                return None
            node, node_id, via = self._resolve(child, _join(node_id, key), via)
        return node, node_id, via

    def get(self, *keys, default=None):
        """The value at `keys` (references followed at every step); `default` where a key is absent."""
        found = self._walk(keys)
        return default if found is None else found[0]

    def literal(self, *keys, default=None):
        """The value at `keys` as plain data, every reference inside followed; refused if any of it is code."""
        found = self._walk(keys)
        return default if found is None else self._literal(*found)

    def _child(self, node, key):
        if isinstance(node, dict):
            return node.get(str(key), _MISSING)
        if isinstance(node, list):
            try:
                return node[int(key)]
            except (ValueError, IndexError):
                return _MISSING
        return _MISSING

    def _resolve(self, value, value_id: str, via: tuple[str, ...], seen: frozenset = frozenset()):
        """(value, its id, the ids that led here): a plain reference followed; `$` and `%` refused."""
        if not isinstance(value, str):
            return value, value_id, via
        from monai.bundle.config_parser import ConfigParser
        from monai.bundle.reference_resolver import ReferenceResolver

        text = ConfigParser.resolve_relative_ids(value_id, value) if value.startswith(("@", "%")) else value
        if text.startswith("$"):
            return self._expression(value, value_id, via)
        if text.startswith("%"):
            raise refused(value_id, value, "a '%' macro (content from another file or key)", self.source, via)
        refs = ReferenceResolver.match_refs_pattern(text)
        if not text.startswith("@") or not refs:
            return value, value_id, via  # a plain string (MONAI also keeps "a@b" or "@a-b" as text)
        target = next(iter(refs))
        if target in seen or target == value_id:
            raise ModelError(f"{self.source}: circular references through {' -> '.join(repr(k) for k in (*via, value_id, target))}.")
        node = self.config
        for part in (target.split("::") if target else []):
            node = self._child(node, part)
            if node is _MISSING:
                raise ModelError(f"{self.source}: '{value_id}' refers to '@{target}', which is not in the config.")
        return self._resolve(node, target, (*via, value_id), seen | {value_id, target})

    def _literal(self, value, value_id: str, via: tuple[str, ...], expanding: frozenset = frozenset()):
        if not isinstance(value, (dict, list)):
            return value
        if any(value_id == outer or outer.startswith(value_id + "::") for outer in expanding):
            raise ModelError(f"{self.source}: circular references: '{value_id}' contains a reference to itself.")
        if isinstance(value, dict) and "_target_" in value:
            return self._component(value, value_id, via)
        inner = expanding | {value_id}
        items = value.items() if isinstance(value, dict) else enumerate(value)
        resolved = {key: self._literal(*self._resolve(item, _join(value_id, key), via), inner) for key, item in items}
        return resolved if isinstance(value, dict) else list(resolved.values())

    def _expression(self, value: str, value_id: str, via: tuple[str, ...]):
        raise refused(value_id, value, "a Python expression, which MONAI would run", self.source, via)

    def _component(self, value: dict, value_id: str, via: tuple[str, ...]):
        raise refused(value_id, value, "a component (`_target_`) that MONAI would instantiate", self.source, via)

    # --- the network -----------------------------------------------------------------------------
    def network(self, key: str = "network_def"):
        """`monai.networks.nets.<class>(**literal args)` from `network_def`; anything else refused."""
        if key not in self.config:
            raise ModelError(f"'{self.source}' has no '{key}' entry: cannot build the network.")
        node, node_id, via = self._resolve(self.config[key], key, ())
        if not isinstance(node, dict) or "_target_" not in node:
            raise refused(node_id, node, f"not a {{\"_target_\": ...}} component naming a class in {ALLOWED_NETWORKS}",
                          self.source, via)
        target_id = _join(node_id, "_target_")
        target = self._literal(*self._resolve(node["_target_"], target_id, via))
        cls = network_class(target)
        if cls is None:
            raise refused(target_id, target, f"not a class in {ALLOWED_NETWORKS}", self.source, via)
        arguments = {}
        for name, value in node.items():
            if name == "_target_":
                continue
            argument_id = _join(node_id, name)
            if name.startswith("_") and name.endswith("_"):
                allowed = HARMLESS_SPECIAL_KEYS.get(name, ())
                if allowed is None or value in allowed:
                    continue
                raise refused(argument_id, value, "a MONAI special key that changes how the component is built",
                              self.source, via)
            arguments[name] = self._literal(*self._resolve(value, argument_id, via))
        try:
            return cls(**arguments)
        except Exception as error:  # a constructor's own check: a wrong argument, not code
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelError(f"cannot build '{key}' ({cls.__name__}) from '{self.source}': {first}") from None


class TrustedBundleConfig(SafeBundleConfig):
    """The same reads through MONAI's own `ConfigParser` (`--trust-bundle`): macros resolved by MONAI, `$` expressions
    evaluated by it, `network_def` instantiated by it, so the bundle's code runs as under MONAI."""

    def __init__(self, parser, source: Path):
        parser.parse()  # MONAI's own macro and relative-id resolution; evaluates nothing yet
        super().__init__(parser.get(), source)
        self.parser = parser

    def _parsed(self, key: str):
        try:
            return self.parser.get_parsed_content(key)
        except Exception as error:  # MONAI wraps any constructor or expression error in its own types
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelError(f"cannot build '{key}' from '{self.source}': {first}") from None

    def _expression(self, value: str, value_id: str, via: tuple[str, ...]):
        return self._parsed(value_id), value_id, via

    def _component(self, value: dict, value_id: str, via: tuple[str, ...]):
        return value  # read as its configuration (a literal is expected here), not instantiated

    def network(self, key: str = "network_def"):
        if key not in self.config:
            raise ModelError(f"'{self.source}' has no '{key}' entry: cannot build the network.")
        return self._parsed(key)


def network_class(target):
    """The class `target` names in `monai.networks.nets` (bare, `monai.networks.nets.X` or `...nets.<module>.X`), else None."""
    if not isinstance(target, str):
        return None
    import inspect

    import torch
    from monai.networks import nets

    prefix = ALLOWED_NETWORKS + "."
    module = None
    name = target
    if target.startswith(prefix):
        rest = target[len(prefix):].split(".")
        if len(rest) == 2:
            module, name = prefix + rest[0], rest[1]
        elif len(rest) == 1:
            name = rest[0]
        else:
            return None
    elif "." in target:
        return None
    cls = getattr(nets, name, None) if name.isidentifier() and not name.startswith("_") else None
    if not (inspect.isclass(cls) and issubclass(cls, torch.nn.Module)):
        return None
    if module is not None and cls.__module__ != module:
        return None
    return cls


def _join(parent: str, key) -> str:
    return f"{parent}::{key}" if parent else str(key)
