"""Pure-Python twin of the structural diff (``rust/src/diff.rs``, ``rust/src/py/diff.rs``).

``diff_states(old, new)`` returns the list of edits (docs/STATE.md) that turns
``old`` into ``new``; ``apply_edits(state, edits)`` (``apply.py``, re-exported here) applies them. The Rust
extension gives the very same edits: both follow the rules below.

- Values compare *strictly*: same type (``True``, ``1`` and ``1.0`` differ),
  floats by their bits, lists in order, dicts by keys and values.
- Demos are matched by content hash (xxh3-128 of canonical msgpack). The
  common prefix and suffix are trimmed (compared strictly first, so unchanged
  demos are not even hashed, then by hash); the middle is matched as a
  multiset (the k-th copy of a demo in old pairs with its k-th copy in new).
  Unmatched old demos are removed (highest index first), a
  ``demos_reordered`` follows when the survivors' order differs from new's,
  then unmatched new demos are added (lowest index first). Two demos with the
  same canonical encoding are the same demo, even if one holds a tuple where
  the other holds a list (state trees hold lists).
- Modules are matched by name. A module that moved is removed and added again;
  the modules kept in place are those of the longest increasing run of new
  positions, so a reorder moves as few modules as possible. A kept module whose
  changes cannot be said by edits (its class, kind or any other key changed) is
  replaced (removed and added); at the root that is ``program_created``.
- Edits share values with ``new`` (no copies); ``apply_edits`` copies the
  containers it inserts, so the state never aliases the edits.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from typing import Any

from desiru._pure.apply import apply_edits
from desiru._pure.codec import content_hash
from desiru._pure.tree import MODULE_KEYS, PROGRAM_KEYS, Edit, State, copy_tree, strict_equal

# ------------------------------------------------------------------ planning
# These mirror the pure-Rust planners in rust/src/diff.rs step for step.


def lis_mask(seq: list[int]) -> list[bool]:
    """Mark one longest strictly increasing subsequence of distinct ints (patience sorting)."""
    tails: list[int] = []
    tail_vals: list[int] = []
    prev = [-1] * len(seq)
    for k, v in enumerate(seq):
        pos = bisect_left(tail_vals, v)
        if pos > 0:
            prev[k] = tails[pos - 1]
        if pos == len(tails):
            tails.append(k)
            tail_vals.append(v)
        else:
            tails[pos] = k
            tail_vals[pos] = v
    keep = [False] * len(seq)
    k = tails[-1] if tails else -1
    while k >= 0:
        keep[k] = True
        k = prev[k]
    return keep


def plan_list(
    old: list[Any], new: list[Any], prefix: int = 0, suffix: int = 0
) -> tuple[list[int], list[int] | None, list[int]]:
    """Plan the edits of a list of hashable keys: (removed, order, added).

    ``old`` and ``new`` may be the middles of two lists whose first ``prefix``
    and last ``suffix`` items are already known equal; indices refer to the
    whole lists. ``removed`` holds old indices, highest first; ``order`` is the
    permutation of the remaining items (or None when they are already in new's
    order); ``added`` holds new indices, lowest first.
    """
    lo, ln = len(old), len(new)
    lim = min(lo, ln)
    p = 0
    while p < lim and old[p] == new[p]:
        p += 1
    s = 0
    while s < lim - p and old[lo - 1 - s] == new[ln - 1 - s]:
        s += 1
    old_mid = old[p : lo - s]
    new_mid = new[p : ln - s]
    if not old_mid and not new_mid:
        return [], None, []
    p += prefix
    s += suffix
    where: dict[Any, deque[int]] = {}
    for j, key in enumerate(new_mid):
        where.setdefault(key, deque()).append(j)
    removed: list[int] = []
    survivors: list[int] = []  # new-mid positions of matched old items, in old order
    taken = [False] * len(new_mid)
    for i, key in enumerate(old_mid):
        spots = where.get(key)
        if spots:
            j = spots.popleft()
            taken[j] = True
            survivors.append(j)
        else:
            removed.append(p + i)
    removed.reverse()
    order: list[int] | None = None
    if any(survivors[k] > survivors[k + 1] for k in range(len(survivors) - 1)):
        ranked = sorted(range(len(survivors)), key=survivors.__getitem__)
        n_kept = p + len(survivors) + s
        order = [*range(p), *(p + r for r in ranked), *range(p + len(survivors), n_kept)]
    added = [p + j for j, t in enumerate(taken) if not t]
    return removed, order, added


def plan_modules(old_names: list[str], new_names: list[str]) -> tuple[list[int], list[tuple[int, int]], list[int]]:
    """Plan a module list matched by name: (removed old indices, kept (old, new) pairs, added new indices).

    Moved modules are removed and added; the kept ones stay in new's order.
    """
    new_index = {name: j for j, name in enumerate(new_names)}
    present = set(old_names)
    pairs = [(i, new_index[n]) for i, n in enumerate(old_names) if n in new_index]
    keep = lis_mask([j for _, j in pairs])
    removed = [i for i, n in enumerate(old_names) if n not in new_index]
    added = [j for j, n in enumerate(new_names) if n not in present]
    kept: list[tuple[int, int]] = []
    for (i, j), k in zip(pairs, keep):
        if k:
            kept.append((i, j))
        else:
            removed.append(i)
            added.append(j)
    removed.sort()
    added.sort()
    return removed, kept, added


# ---------------------------------------------------------------------- diff


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _module_names(modules: list[Any]) -> list[str] | None:
    """Names of a module list, or None if they cannot address it (missing, dotted, repeated)."""
    names: list[str] = []
    seen: set[str] = set()
    for m in modules:
        if type(m) is not dict:
            return None
        name = m.get("name")
        if type(name) is not str or not name or "." in name or name in seen:
            return None
        seen.add(name)
        names.append(name)
    return names


def _diff_set(old: State, new: State, key: str, op: str, field: str, path: str, out: list[Edit]) -> bool:
    if key in new:
        value = new[key]
        if key not in old or not strict_equal(old[key], value):
            out.append({"op": op, "path": path, field: value})
        return True
    return key not in old


def _diff_demos(old: list[Any], new: list[Any], path: str, out: list[Edit]) -> bool:
    if old is new:
        return True  # the journal's own list, handed back by the state builder: unchanged
    # Unchanged ends are found by strict equality (which implies equal hashes),
    # so a small change in a long list hashes only the demos around it.
    lo, ln = len(old), len(new)
    lim = min(lo, ln)
    p = 0
    while p < lim and strict_equal(old[p], new[p]):
        p += 1
    s = 0
    while s < lim - p and strict_equal(old[lo - 1 - s], new[ln - 1 - s]):
        s += 1
    old_keys = [content_hash(d) for d in old[p : lo - s]]
    new_keys = [content_hash(d) for d in new[p : ln - s]]
    removed, order, added = plan_list(old_keys, new_keys, p, s)
    for i in removed:
        out.append({"op": "demo_removed", "path": path, "index": i})
    if order is not None:
        out.append({"op": "demos_reordered", "path": path, "order": order})
    for j in added:
        out.append({"op": "demo_added", "path": path, "index": j, "demo": new[j]})
    return True


def _diff_parameters(old: State, new: State, path: str, out: list[Edit]) -> bool:
    for key in old:
        if key not in new:
            out.append({"op": "parameter_unset", "path": path, "key": key})
    for key, value in new.items():
        if key not in old or not strict_equal(old[key], value):
            out.append({"op": "parameter_set", "path": path, "key": key, "value": value})
    return True


def _diff_modules(old: list[Any], new: list[Any], path: str, out: list[Edit]) -> bool:
    old_names = _module_names(old)
    new_names = _module_names(new)
    if old_names is None or new_names is None:
        return strict_equal(old, new)
    removed, kept, added = plan_modules(old_names, new_names)
    inner: list[Edit] = []
    replaced_old: list[int] = []
    replaced_new: list[int] = []
    for i, j in kept:
        sub: list[Edit] = []
        if _diff_node(old[i], new[j], _join(path, old_names[i]), sub):
            inner.extend(sub)
        else:
            replaced_old.append(i)
            replaced_new.append(j)
    if replaced_old:
        removed = sorted(removed + replaced_old)
        added = sorted(added + replaced_new)
    for i in removed:
        out.append({"op": "module_removed", "path": _join(path, old_names[i])})
    out.extend(inner)
    for j in added:
        out.append({"op": "module_added", "path": _join(path, new_names[j]), "index": j, "state": new[j]})
    return True


def _diff_child(old: State, new: State, key: str, kind: type, fn: Any, path: str, out: list[Edit]) -> bool:
    """Diff a list/dict field with ``fn`` when both sides have it with the right type."""
    in_old, in_new = key in old, key in new
    if in_old and in_new and type(old[key]) is kind and type(new[key]) is kind:
        return bool(fn(old[key], new[key], path, out))
    if not in_old and not in_new:
        return True
    return in_old and in_new and strict_equal(old[key], new[key])


def _diff_node(old: State, new: State, path: str, out: list[Edit]) -> bool:
    """Append the edits from ``old`` to ``new`` (same path); False if they must be replaced whole."""
    if old is new:
        return True
    kind = new.get("kind")
    if type(kind) is str and kind == "program":
        managed = PROGRAM_KEYS
    elif type(kind) is str and kind == "module":
        managed = MODULE_KEYS
    else:
        return strict_equal(old, new)
    for key, value in old.items():
        if key not in managed and (key not in new or not strict_equal(value, new[key])):
            return False
    for key in new:
        if key not in managed and key not in old:
            return False
    mark = len(out)
    if managed is PROGRAM_KEYS:
        ok = (
            _diff_child(old, new, "modules", list, _diff_modules, path, out)
            and _diff_set(old, new, "configuration", "configuration_set", "value", path, out)
            and _diff_set(old, new, "custom_data", "custom_data_set", "value", path, out)
            and _diff_set(old, new, "metadata", "metadata_set", "value", path, out)
        )
    else:
        ok = (
            _diff_set(old, new, "signature", "signature_set", "signature", path, out)
            and _diff_child(old, new, "demos", list, _diff_demos, path, out)
            and _diff_child(old, new, "parameters", dict, _diff_parameters, path, out)
            and _diff_set(old, new, "metadata", "metadata_set", "value", path, out)
        )
    if not ok:
        del out[mark:]
    return ok


def common_ends(a: list[Any], b: list[Any]) -> tuple[int, int]:
    """How many items ``a`` and ``b`` share at their start and, after that, at their end, by identity."""
    n = min(len(a), len(b))
    if a is b:
        return n, 0
    p = 0
    while p < n and a[p] is b[p]:
        p += 1
    q = 0
    while q < n - p and a[-1 - q] is b[-1 - q]:
        q += 1
    return p, q


def diff_states(old: State | None, new: State) -> list[Edit]:
    """The edits that turn ``old`` into ``new`` (``[program_created]`` when old is None)."""
    if type(new) is not dict:
        raise TypeError(f"diff_states() needs a dict as the new state, not '{type(new).__name__}'")
    if old is not None and type(old) is not dict:
        raise TypeError(f"diff_states() needs a dict or None as the old state, not '{type(old).__name__}'")
    if old is not None:
        out: list[Edit] = []
        if _diff_node(old, new, "", out):
            return out
    return [{"op": "program_created", "path": "", "state": new}]


__all__ = ["PROGRAM_KEYS", "apply_edits", "common_ends", "copy_tree", "diff_states", "strict_equal"]
