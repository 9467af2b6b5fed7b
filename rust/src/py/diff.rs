//! Python bindings of the structural diff: `diff_states` here, `apply_edits`
//! in `apply`, the shared tree helpers in `tree`.
//!
//! Walks the Python state trees (docs/STATE.md), hashes demos with the codec's
//! canonical encoder, and leaves the list planning to `crate::diff`. Every rule,
//! edit and error message mirrors `desiru/_pure/diff.py` exactly; the tests
//! check that both give the same edits. PyO3's live dict iterator is never
//! used: it panics if user code (a custom `__eq__`) mutates the dict, so dicts
//! are walked through `items()` snapshots or `PyDict_Next` with owned values.

mod apply;
mod tree;

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use xxhash_rust::xxh3::xxh3_128;

use self::tree::{dict_items, exact_str, key, strict_eq, type_name};
use super::encode::Encoder;
use crate::diff::{plan_modules, plan_window};

const PROGRAM_KEYS: [&str; 4] = ["modules", "configuration", "custom_data", "metadata"];
const MODULE_KEYS: [&str; 4] = ["signature", "demos", "parameters", "metadata"];
/// Demo pairs compared per block when looking for the common suffix.
const SUFFIX_BLOCK: usize = 64;

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn is_managed(key: &Bound<'_, PyAny>, managed: &[&str]) -> bool {
    key.downcast::<PyString>()
        .ok()
        .and_then(|s| s.to_str().ok().map(|s| managed.contains(&s)))
        .unwrap_or(false)
}

// ---------------------------------------------------------------------- diff

struct Differ<'py> {
    py: Python<'py>,
    /// Canonical encoder whose reused buffer feeds one xxh3-128 per demo.
    enc: Encoder<'py, Vec<u8>>,
}

type Edits<'py> = Vec<Bound<'py, PyDict>>;

impl<'py> Differ<'py> {
    fn edit(
        &self,
        op: &str,
        path: &str,
        extra: &[(&str, &Bound<'py, PyAny>)],
    ) -> PyResult<Bound<'py, PyDict>> {
        let py = self.py;
        let d = PyDict::new(py);
        d.set_item(key(py, "op"), op)?; // a value: looked at, never hashed
        d.set_item(key(py, "path"), path)?;
        for (k, v) in extra {
            d.set_item(key(py, k), v)?;
        }
        Ok(d)
    }

    fn content_hash(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<u128> {
        self.enc.out.clear();
        self.enc.encode_root(obj)?;
        Ok(xxh3_128(&self.enc.out))
    }

    fn diff_set(
        &self,
        old: &Bound<'py, PyDict>,
        new: &Bound<'py, PyDict>,
        (name, op, field): (&str, &str, &str),
        path: &str,
        out: &mut Edits<'py>,
    ) -> PyResult<bool> {
        let name = key(self.py, name);
        if let Some(value) = new.get_item(&name)? {
            let same = match old.get_item(&name)? {
                Some(before) => strict_eq(&before, &value, 0)?,
                None => false,
            };
            if !same {
                out.push(self.edit(op, path, &[(field, &value)])?);
            }
            return Ok(true);
        }
        Ok(!old.contains(name)?)
    }

    fn diff_demos(
        &mut self,
        old: &Bound<'py, PyList>,
        new: &Bound<'py, PyList>,
        path: &str,
        out: &mut Edits<'py>,
    ) -> PyResult<bool> {
        if old.is(new) {
            return Ok(true); // the journal's own list, handed back by the state builder: unchanged
        }
        // Unchanged ends are found by strict equality (which implies equal
        // hashes), so a small change in a long list hashes only the middle.
        let (lo, ln) = (old.len(), new.len());
        let lim = lo.min(ln);
        let mut p = 0;
        while p < lim && strict_eq(&old.get_item(p)?, &new.get_item(p)?, 0)? {
            p += 1;
        }
        // The common suffix, found block by block from the end but compared in
        // ascending order inside each block: walking the heap backwards one demo
        // at a time runs about 1.8x slower. The result is the same `s` as a plain
        // backward walk (the twin's); at most a block of extra pairs is compared.
        let mut s = 0;
        while s < lim - p {
            let block = (lim - p - s).min(SUFFIX_BLOCK);
            let mut last_mismatch = None;
            for t in 0..block {
                let (i, j) = (lo - s - block + t, ln - s - block + t);
                if !strict_eq(&old.get_item(i)?, &new.get_item(j)?, 0)? {
                    last_mismatch = Some(t);
                }
            }
            match last_mismatch {
                None => s += block,
                Some(t) => {
                    s += block - 1 - t;
                    break;
                }
            }
        }
        let mut old_h = Vec::with_capacity(lo - p - s);
        for i in p..lo - s {
            old_h.push(self.content_hash(&old.get_item(i)?)?);
        }
        let mut new_h = Vec::with_capacity(ln - p - s);
        for j in p..ln - s {
            new_h.push(self.content_hash(&new.get_item(j)?)?);
        }
        let plan = plan_window(&old_h, &new_h, p, s);
        for &i in &plan.removed {
            out.push(self.edit(
                "demo_removed",
                path,
                &[("index", &i.into_pyobject(self.py)?.into_any())],
            )?);
        }
        if let Some(order) = plan.order {
            let order = PyList::new(self.py, order)?.into_any();
            out.push(self.edit("demos_reordered", path, &[("order", &order)])?);
        }
        for &j in &plan.added {
            let demo = new.get_item(j)?;
            let index = j.into_pyobject(self.py)?.into_any();
            out.push(self.edit("demo_added", path, &[("index", &index), ("demo", &demo)])?);
        }
        Ok(true)
    }

    fn diff_parameters(
        &self,
        old: &Bound<'py, PyDict>,
        new: &Bound<'py, PyDict>,
        path: &str,
        out: &mut Edits<'py>,
    ) -> PyResult<bool> {
        for (key, _) in dict_items(old)? {
            if !new.contains(&key)? {
                out.push(self.edit("parameter_unset", path, &[("key", &key)])?);
            }
        }
        for (key, value) in dict_items(new)? {
            let same = match old.get_item(&key)? {
                Some(before) => strict_eq(&before, &value, 0)?,
                None => false,
            };
            if !same {
                out.push(self.edit("parameter_set", path, &[("key", &key), ("value", &value)])?);
            }
        }
        Ok(true)
    }

    /// Names of a module list, or None if they cannot address it.
    fn module_names(list: &Bound<'py, PyList>) -> PyResult<Option<Vec<String>>> {
        let mut names: Vec<String> = Vec::with_capacity(list.len());
        let mut seen: HashMap<String, ()> = HashMap::with_capacity(list.len());
        let name_key = key(list.py(), "name");
        for m in list.iter() {
            let Ok(d) = m.downcast_exact::<PyDict>() else {
                return Ok(None);
            };
            let Some(name) = d.get_item(&name_key)? else {
                return Ok(None);
            };
            let Some(name) = exact_str(&name) else {
                return Ok(None);
            };
            let name = name.to_str()?.to_string();
            if name.is_empty() || name.contains('.') || seen.contains_key(&name) {
                return Ok(None);
            }
            seen.insert(name.clone(), ());
            names.push(name);
        }
        Ok(Some(names))
    }

    fn diff_modules(
        &mut self,
        old: &Bound<'py, PyList>,
        new: &Bound<'py, PyList>,
        path: &str,
        out: &mut Edits<'py>,
    ) -> PyResult<bool> {
        let (Some(old_names), Some(new_names)) =
            (Self::module_names(old)?, Self::module_names(new)?)
        else {
            return strict_eq(old.as_any(), new.as_any(), 0);
        };
        let plan = plan_modules(&old_names, &new_names);
        let (mut removed, mut added) = (plan.removed, plan.added);
        let mut inner: Edits<'py> = Vec::new();
        let mut replaced = false;
        for &(i, j) in &plan.kept {
            let (Some(name), om, nm) = (old_names.get(i), old.get_item(i)?, new.get_item(j)?)
            else {
                continue;
            };
            let mut sub: Edits<'py> = Vec::new();
            let same_shape = match (om.downcast_exact::<PyDict>(), nm.downcast_exact::<PyDict>()) {
                (Ok(od), Ok(nd)) => self.diff_node(od, nd, &join(path, name), &mut sub)?,
                _ => false,
            };
            if same_shape {
                inner.append(&mut sub);
            } else {
                removed.push(i);
                added.push(j);
                replaced = true;
            }
        }
        if replaced {
            removed.sort_unstable();
            added.sort_unstable();
        }
        for &i in &removed {
            if let Some(name) = old_names.get(i) {
                out.push(self.edit("module_removed", &join(path, name), &[])?);
            }
        }
        out.append(&mut inner);
        for &j in &added {
            if let Some(name) = new_names.get(j) {
                let index = j.into_pyobject(self.py)?.into_any();
                let state = new.get_item(j)?;
                out.push(self.edit(
                    "module_added",
                    &join(path, name),
                    &[("index", &index), ("state", &state)],
                )?);
            }
        }
        Ok(true)
    }

    /// Diff a list/dict field with the matching method when both sides have it
    /// with the right type; otherwise it must be absent on both or strictly equal.
    fn diff_child(
        &mut self,
        old: &Bound<'py, PyDict>,
        new: &Bound<'py, PyDict>,
        name: &str,
        path: &str,
        out: &mut Edits<'py>,
    ) -> PyResult<bool> {
        let k = key(self.py, name);
        let (o, n) = match (old.get_item(&k)?, new.get_item(&k)?) {
            (None, None) => return Ok(true),
            (Some(o), Some(n)) => (o, n),
            _ => return Ok(false),
        };
        match name {
            "modules" | "demos" => {
                if let (Ok(ol), Ok(nl)) =
                    (o.downcast_exact::<PyList>(), n.downcast_exact::<PyList>())
                {
                    return if name == "modules" {
                        self.diff_modules(ol, nl, path, out)
                    } else {
                        self.diff_demos(ol, nl, path, out)
                    };
                }
            }
            _ => {
                if let (Ok(od), Ok(nd)) =
                    (o.downcast_exact::<PyDict>(), n.downcast_exact::<PyDict>())
                {
                    return self.diff_parameters(od, nd, path, out);
                }
            }
        }
        strict_eq(&o, &n, 0)
    }

    /// Append the edits from `old` to `new`; false if they must be replaced whole.
    fn diff_node(
        &mut self,
        old: &Bound<'py, PyDict>,
        new: &Bound<'py, PyDict>,
        path: &str,
        out: &mut Edits<'py>,
    ) -> PyResult<bool> {
        if old.is(new) {
            return Ok(true);
        }
        let kind = new.get_item(key(self.py, "kind"))?;
        let kind = kind
            .as_ref()
            .and_then(exact_str)
            .and_then(|s| s.to_str().ok());
        let (managed, is_program) = match kind {
            Some("program") => (&PROGRAM_KEYS, true),
            Some("module") => (&MODULE_KEYS, false),
            _ => return strict_eq(old.as_any(), new.as_any(), 0),
        };
        for (key, value) in dict_items(old)? {
            if !is_managed(&key, managed) {
                match new.get_item(&key)? {
                    Some(other) if strict_eq(&value, &other, 0)? => {}
                    _ => return Ok(false),
                }
            }
        }
        for (key, _) in dict_items(new)? {
            if !is_managed(&key, managed) && !old.contains(&key)? {
                return Ok(false);
            }
        }
        let mark = out.len();
        let ok = if is_program {
            self.diff_child(old, new, "modules", path, out)?
                && self.diff_set(
                    old,
                    new,
                    ("configuration", "configuration_set", "value"),
                    path,
                    out,
                )?
                && self.diff_set(
                    old,
                    new,
                    ("custom_data", "custom_data_set", "value"),
                    path,
                    out,
                )?
                && self.diff_set(old, new, ("metadata", "metadata_set", "value"), path, out)?
        } else {
            self.diff_set(
                old,
                new,
                ("signature", "signature_set", "signature"),
                path,
                out,
            )? && self.diff_child(old, new, "demos", path, out)?
                && self.diff_child(old, new, "parameters", path, out)?
                && self.diff_set(old, new, ("metadata", "metadata_set", "value"), path, out)?
        };
        if !ok {
            out.truncate(mark);
        }
        Ok(ok)
    }
}

/// The edits that turn `old` into `new` (`[program_created]` when old is None).
#[pyfunction]
fn diff_states<'py>(
    py: Python<'py>,
    old: &Bound<'py, PyAny>,
    new: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let Ok(new_d) = new.downcast_exact::<PyDict>() else {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "diff_states() needs a dict as the new state, not '{}'",
            type_name(new)?
        )));
    };
    if !old.is_none() {
        let Ok(old_d) = old.downcast_exact::<PyDict>() else {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "diff_states() needs a dict or None as the old state, not '{}'",
                type_name(old)?
            )));
        };
        let mut differ = Differ {
            py,
            enc: Encoder::new(py, Vec::new(), true),
        };
        let mut out: Edits<'py> = Vec::new();
        if differ.diff_node(old_d, new_d, "", &mut out)? {
            return PyList::new(py, out);
        }
    }
    let created = PyDict::new(py);
    created.set_item(key(py, "op"), "program_created")?;
    created.set_item(key(py, "path"), "")?;
    created.set_item(key(py, "state"), new_d)?;
    PyList::new(py, [created])
}

/// How many items two lists share at their start and, after that, at their end, by identity.
///
/// `(p, q)` with `p + q <= min(len(a), len(b))`: `a[:p]` and `b[:p]` are the very same objects,
/// and so are their last `q`. The state builder asks this of a module's demos on every commit
/// (unchanged: `p == len(a) == len(b)`; one replaced demo: all but one are covered).
#[pyfunction]
fn common_ends(a: &Bound<'_, PyList>, b: &Bound<'_, PyList>) -> (usize, usize) {
    let (la, lb) = (a.len(), b.len());
    let n = la.min(lb);
    if a.is(b) {
        return (n, 0);
    }
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    // Borrowed item pointers, compared and never dereferenced: taking a reference to each
    // item would touch every object's refcount (a cache miss per demo).
    let same = |i: usize, j: usize| {
        // SAFETY: the GIL is held and no Python code runs while this function does, so
        // neither list changes; i < la and j < lb. PyList_GetItem returns a borrowed
        // pointer (NULL only for a bad index, which cannot happen here), only compared.
        unsafe {
            pyo3::ffi::PyList_GetItem(pa, i as pyo3::ffi::Py_ssize_t)
                == pyo3::ffi::PyList_GetItem(pb, j as pyo3::ffi::Py_ssize_t)
        }
    };
    let mut p = 0;
    while p < n && same(p, p) {
        p += 1;
    }
    let mut q = 0;
    while q < n - p && same(la - 1 - q, lb - 1 - q) {
        q += 1;
    }
    (p, q)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(diff_states, m)?)?;
    m.add_function(wrap_pyfunction!(common_ends, m)?)?;
    m.add_function(wrap_pyfunction!(apply::apply_edits, m)?)?;
    Ok(())
}
