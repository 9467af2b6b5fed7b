"""The original Ruby design's layout ("format 1.0.0") and its migration to ours.

A 1.0.0 document is ``{version, metadata, program: {class, modules: [{name, class,
signature: "question -> answer", demonstrations, parameters: {temperature, max_tokens,
instruction_template, custom}, metadata}], configuration, custom_data}, timestamp}``,
written as json, yaml (Ruby's YAML.dump writes symbol keys as ``:version``) or msgpack.
Two registered steps bring it forward:

- 1.0.0 -> 1.1.0, the design's own example: every module gets
  ``parameters.streaming_enabled = false``.
- 1.1.0 -> 2.0.0: the envelope and state tree of docs/STATE.md. Ruby class names map
  through the registry (``Desiru::Modules::Predict`` -> ``desiru.Predict``); signature
  strings are parsed; ``instruction_template`` becomes the signature's instructions;
  ``custom`` parameters are merged into the parameters; ``demonstrations`` become
  ``demos``; a legacy checksum is checked, and ours is computed on the new state.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from desiru import registry
from desiru.errors import CorruptDataError, DesiruError, UnknownClassError
from desiru.module import REASONING, ChainOfThought, Module, Predict
from desiru.program import Program
from desiru.serialization import envelope
from desiru.serialization.migrations import current_context, register_migration
from desiru.signature import Signature

Tree = dict[str, Any]

#: Ruby class names of the original design and the classes they load as (through registry aliases)
RUBY_CLASSES: dict[str, type] = {
    "Desiru::Module": Module,
    "Desiru::Modules::Predict": Predict,
    "Desiru::Predict": Predict,
    "Desiru::Modules::ChainOfThought": ChainOfThought,
    "Desiru::ChainOfThought": ChainOfThought,
    "Desiru::Program": Program,
}
for _name, _cls in RUBY_CLASSES.items():
    registry.alias(_name, _cls)

#: parameters the Ruby design always wrote; a nil among them means "not set"
_NIL_MEANS_UNSET = ("temperature", "max_tokens", "instruction_template", "custom")
_SYMBOL_KEY = re.compile(r"^:[A-Za-z_][A-Za-z0-9_]*[?!]?$")
_SHA256 = re.compile(r"^(?:sha256:)?([0-9a-fA-F]{64})$")


# -- reading Ruby's yaml ---------------------------------------------------------------------------
def normalize_keys(tree: Any) -> Any:
    """Ruby's YAML.dump writes symbol keys as ``":name"``; a legacy tree gets plain ``"name"`` keys.

    Only trees whose top level has such keys are touched (ours never do), so this is
    cheap to call on every decoded document before its version is read.
    """
    if not isinstance(tree, dict) or not any(isinstance(k, str) and _SYMBOL_KEY.match(k) for k in tree):
        return tree
    return _strip_symbols(tree)


def _strip_symbols(value: Any) -> Any:
    if isinstance(value, dict):
        return {(k[1:] if isinstance(k, str) and _SYMBOL_KEY.match(k) else k): _strip_symbols(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_symbols(v) for v in value]
    return value


# -- the legacy checksum ---------------------------------------------------------------------------
def program_checksum(program: Any) -> str:
    """sha256 hex of the program section as Ruby's JSON.generate writes it: compact, keys in order."""
    try:
        text = json.dumps(program, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CorruptDataError(
            f"the legacy checksum cannot be checked: the program holds a value JSON cannot write ({exc})",
            hint="load with verify=False to skip the legacy checksum",
        ) from None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_checksum(tree: Tree) -> bool:
    """Check ``metadata.checksum`` when it is a sha256 the design could have written; True if it was one."""
    meta = tree.get("metadata")
    claimed = meta.get("checksum") if isinstance(meta, dict) else None
    m = _SHA256.match(claimed) if isinstance(claimed, str) else None
    if m is None:  # no checksum, or one of a kind we cannot recompute: nothing to check
        return False
    if not current_context().verify:
        return True
    program = tree.get("program")
    want = m.group(1).lower()
    got = program_checksum(program)
    if got != want and _sorted_checksum(program) != want:
        raise CorruptDataError(
            f"legacy checksum mismatch: the file says sha256 {want}, its program section hashes to {got}",
            hint="the file was altered or damaged; restore it from a backup (or load with verify=False)",
        )
    return True


def _sorted_checksum(program: Any) -> str | None:
    try:
        text = json.dumps(program, separators=(",", ":"), ensure_ascii=False, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- 1.0.0 -> 1.1.0 --------------------------------------------------------------------------------
def _legacy_modules(program: Any) -> list[Any]:
    if not isinstance(program, dict):
        raise CorruptDataError("the legacy document has no 'program' section",
                               hint="a format 1.x file holds {version, metadata, program, timestamp}")
    modules = program.get("modules")
    if modules is None:
        return []
    if not isinstance(modules, list):
        raise CorruptDataError(f"program.modules must be a list, got {type(modules).__name__}")
    return modules


def _add_streaming(program: Any) -> None:
    for m in _legacy_modules(program):
        if not isinstance(m, dict):
            continue  # reported with its place by the 2.0.0 step
        if "modules" in m and "signature" not in m:
            _add_streaming(m)
            continue
        params = m.get("parameters")
        if params is None:
            params = m["parameters"] = {}
        if isinstance(params, dict):
            params.setdefault("streaming_enabled", False)


@register_migration("1.0.0", "1.1.0")
def add_streaming_enabled(tree: Tree) -> Tree:
    """The Ruby design's own example step: modules gain ``parameters.streaming_enabled = false``."""
    had_checksum = _check_checksum(tree)
    _add_streaming(tree.get("program"))
    if had_checksum:  # the step changed the program section, so its checksum is restated
        tree["metadata"]["checksum"] = program_checksum(tree["program"])
    return tree


# -- 1.1.0 -> 2.0.0 --------------------------------------------------------------------------------
@register_migration("1.1.0", "2.0.0")
def to_envelope(tree: Tree) -> Tree:
    """The legacy layout as our envelope around a docs/STATE.md state tree."""
    _check_checksum(tree)
    state = _program_state(tree.get("program"), "program")
    meta = tree.get("metadata")
    meta = dict(meta) if isinstance(meta, dict) else {}
    meta.pop("checksum", None)  # it covered the legacy program section; ours covers the new state
    created = tree.get("timestamp") or meta.get("created_at")
    first = current_context().original
    origin: Tree = {"layout": "desiru-ruby", "format_version": str(first or tree.get("version")),
                    "metadata": meta}
    if tree.get("timestamp") is not None:
        origin["timestamp"] = tree["timestamp"]
    return {
        "format": envelope.FORMAT_NAME,
        "format_version": "2.0.0",
        "kind": "program",
        "class": state["class"],
        "library_version": str(meta["desiru_version"]) if meta.get("desiru_version") is not None else None,
        "created_at": str(created) if created is not None else None,
        "python_version": None,
        "migrated_from": origin,
        "checksum": envelope.checksum_of(state),
        "state": state,
    }


def _program_state(program: Any, where: str) -> Tree:
    modules = _legacy_modules(program)
    assert isinstance(program, dict)
    entries: list[Tree] = []
    seen: set[str] = set()
    for i, m in enumerate(modules):
        here = f"{where}.modules[{i}]"
        if not isinstance(m, dict):
            raise CorruptDataError(f"{here} must be a mapping, got {type(m).__name__}")
        name = m.get("name")
        name = f"module_{i}" if name is None else str(name)
        if name in seen:
            raise CorruptDataError(f"{here}: two modules are named {name!r}",
                                   hint="module names must be unique")
        seen.add(name)
        if "modules" in m and "signature" not in m:  # a nested program
            entries.append({"name": name, **_program_state(m, here)})
        else:
            entries.append({"name": name, **_module_state(m, name, here)})
    configuration = program.get("configuration")
    if configuration is None:
        configuration = {}
    if not isinstance(configuration, dict):
        raise CorruptDataError(f"{where}.configuration must be a mapping, got {type(configuration).__name__}")
    metadata = program.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise CorruptDataError(f"{where}.metadata must be a mapping, got {type(metadata).__name__}")
    return {
        "kind": "program",
        "class": _program_class(program.get("class")),
        "modules": entries,
        "configuration": configuration,
        "custom_data": program.get("custom_data"),
        "metadata": metadata,
    }


def _program_class(name: Any) -> str:
    """Our name for a legacy program class: through the registry when it knows it, else kept as it is.

    An unregistered name still loads with ``YourProgram.load(path)``; ``ds.load`` then
    names it in an UnknownClassError.
    """
    if name is None:
        return registry.class_name(Program)
    try:
        return registry.class_name(registry.resolve(name, base=Program))
    except UnknownClassError:
        return str(name)


def _module_class(name: Any, module: str, where: str) -> type:
    if not isinstance(name, str):
        raise CorruptDataError(f"{where}: module {module!r} has no class name",
                               hint="legacy modules name their class")
    try:
        return registry.resolve(name, base=Module)
    except UnknownClassError:
        raise UnknownClassError(
            f"{where}: module {module!r} has the Ruby class {name!r}, which desiru has no equivalent for",
            hint="define a desiru Module subclass for it and call "
            f"desiru.registry.alias({name!r}, YourModule) before loading",
        ) from None


def _module_state(m: Tree, name: str, where: str) -> Tree:
    cls = _module_class(m.get("class"), name, where)
    params = m.get("parameters")
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise CorruptDataError(f"{where}.parameters must be a mapping, got {type(params).__name__}")
    params = dict(params)
    for key in _NIL_MEANS_UNSET:
        if key in params and params[key] is None:
            del params[key]
    try:
        signature = _signature(m.get("signature"))
    except DesiruError as exc:
        raise CorruptDataError(f"{where}: module {name!r} has a signature desiru cannot read: {exc.message}",
                               hint=exc.hint) from None
    template = params.pop("instruction_template", None)
    if isinstance(template, str) and template.strip():
        signature = signature.with_instructions(template)
    elif template is not None:  # not text: keep it where it was rather than guess
        params["instruction_template"] = template
    custom = params.pop("custom", None)
    if isinstance(custom, dict) and not (custom.keys() & params.keys()):
        params.update(custom)
    elif custom not in (None, {}):  # a clash with a named parameter, or not a mapping: keep it apart
        params["custom"] = custom
    if issubclass(cls, ChainOfThought) and REASONING.name not in signature.outputs:
        signature = signature.prepend_output(REASONING)
    demos = m.get("demonstrations", m.get("demos"))
    demos = [] if demos is None else demos
    if not isinstance(demos, list):
        raise CorruptDataError(f"{where}.demonstrations must be a list, got {type(demos).__name__}")
    for j, d in enumerate(demos):
        if not isinstance(d, dict):
            raise CorruptDataError(f"{where}.demonstrations[{j}] must be a mapping, got {type(d).__name__}")
    metadata = m.get("metadata")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict):
        raise CorruptDataError(f"{where}.metadata must be a mapping, got {type(metadata).__name__}")
    return {
        "kind": "module",
        "class": registry.class_name(cls),
        "signature": signature.to_state(),
        "demos": demos,
        "parameters": params,
        "metadata": metadata,
    }


def _signature(spec: Any) -> Signature:
    if isinstance(spec, str):
        return Signature(spec)
    if isinstance(spec, dict):  # already in our shape
        return Signature.from_state(spec)
    raise DesiruError(f"expected a string such as 'question -> answer', got {type(spec).__name__}")
