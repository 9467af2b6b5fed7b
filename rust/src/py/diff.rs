//! Python bindings of the structural diff: `diff_states` and `apply_edits`.
//!
//! Walks the Python state trees (docs/STATE.md), hashes demos with the codec's
//! canonical encoder, and leaves the list planning to `crate::diff`. Every rule,
//! edit and error message mirrors `desiru/_pure/diff.py` exactly; the tests
//! check that both give the same edits. Dicts are iterated through `items()`
//! snapshots: PyO3's live dict iterator panics if user code mutates the dict.

use std::collections::HashMap;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use xxhash_rust::xxh3::xxh3_128;

use super::encode::Encoder;
use super::frame::desiru_error;
use crate::codec::MAX_DEPTH;
use crate::diff::{is_permutation, plan_modules, plan_window};

const PROGRAM_KEYS: [&str; 4] = ["modules", "configuration", "custom_data", "metadata"];
const MODULE_KEYS: [&str; 4] = ["signature", "demos", "parameters", "metadata"];
/// Demo pairs compared per block when looking for the common suffix.
const SUFFIX_BLOCK: usize = 64;
const EDIT_HINT: &str =
    "the edits do not fit this state: apply them to the state they were computed from";

fn too_deep(py: Python<'_>) -> PyErr {
    desiru_error(
        py,
        "SerializationError",
        format!("containers nest deeper than {MAX_DEPTH} levels (is there a cycle?)"),
        "a state tree is plain nested dicts and lists of bounded depth",
    )
}

fn type_name(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(obj.get_type().name()?.to_string())
}

fn pyrepr(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(obj.repr()?.to_string())
}

fn str_repr(py: Python<'_>, s: &str) -> PyResult<String> {
    pyrepr(PyString::new(py, s).as_any())
}

/// `(key, value)` pairs of a dict, as a snapshot safe against mutation.
fn dict_items<'py>(
    d: &Bound<'py, PyDict>,
) -> PyResult<Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
    d.items().iter().map(|kv| kv.extract()).collect()
}

fn exact_str<'a>(obj: &'a Bound<'_, PyAny>) -> Option<&'a Bound<'a, PyString>> {
    // A lifetime-narrowing downcast; exact str only, as the twin's `type(x) is str`.
    obj.downcast_exact::<PyString>().ok()
}

fn str_eq(obj: &Bound<'_, PyAny>, want: &str) -> bool {
    obj.downcast::<PyString>()
        .ok()
        .and_then(|s| s.to_str().ok().map(|s| s == want))
        .unwrap_or(false)
}

/// `strict_eq` of two exact dicts of the same length.
///
/// The hot path of a diff: for str keys it looks values up with borrowed
/// pointers and skips identical values without touching them (no refcount
/// writes), which is what makes comparing two states that share their strings
/// cheap. Only values that differ by identity are compared in depth.
fn dict_eq(da: &Bound<'_, PyDict>, db: &Bound<'_, PyDict>, depth: usize) -> PyResult<bool> {
    let py = da.py();
    let mut pos: ffi::Py_ssize_t = 0;
    loop {
        let mut key: *mut ffi::PyObject = std::ptr::null_mut();
        let mut value: *mut ffi::PyObject = std::ptr::null_mut();
        // SAFETY: `da` and `db` are live dicts. PyDict_Next bounds-checks `pos`
        // against the dict as it is now. The borrowed `key` and `value` are used
        // only until Python code may run: lookups with an exact-str key run no
        // Python code (cached hash, C comparison); other keys, and any value
        // that is not the very same object, are turned into owned references
        // before anything else happens.
        unsafe {
            if ffi::PyDict_Next(da.as_ptr(), &mut pos, &mut key, &mut value) == 0 {
                return Ok(true);
            }
            let (v, w) = if ffi::PyUnicode_CheckExact(key) != 0 {
                let other = ffi::PyDict_GetItemWithError(db.as_ptr(), key);
                if other.is_null() {
                    return match PyErr::take(py) {
                        Some(err) => Err(err),
                        None => Ok(false),
                    };
                }
                if other == value {
                    continue;
                }
                (
                    Bound::from_borrowed_ptr(py, value),
                    Bound::from_borrowed_ptr(py, other),
                )
            } else {
                let k = Bound::from_borrowed_ptr(py, key);
                let v = Bound::from_borrowed_ptr(py, value);
                match db.get_item(&k)? {
                    Some(w) => (v, w),
                    None => return Ok(false),
                }
            };
            if !strict_eq(&v, &w, depth + 1)? {
                return Ok(false);
            }
        }
    }
}

/// Equality that sees types: `True`, `1` and `1.0` differ; floats compare by bits.
fn strict_eq(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>, depth: usize) -> PyResult<bool> {
    if a.is(b) {
        return Ok(true);
    }
    if a.get_type_ptr() != b.get_type_ptr() {
        return Ok(false);
    }
    let py = a.py();
    if let (Ok(da), Ok(db)) = (a.downcast_exact::<PyDict>(), b.downcast_exact::<PyDict>()) {
        if depth >= MAX_DEPTH {
            return Err(too_deep(py));
        }
        if da.len() != db.len() {
            return Ok(false);
        }
        return dict_eq(da, db, depth);
    }
    if let (Ok(la), Ok(lb)) = (a.downcast_exact::<PyList>(), b.downcast_exact::<PyList>()) {
        if depth >= MAX_DEPTH {
            return Err(too_deep(py));
        }
        if la.len() != lb.len() {
            return Ok(false);
        }
        for (x, y) in la.iter().zip(lb.iter()) {
            if !strict_eq(&x, &y, depth + 1)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    if let (Ok(ta), Ok(tb)) = (a.downcast_exact::<PyTuple>(), b.downcast_exact::<PyTuple>()) {
        if depth >= MAX_DEPTH {
            return Err(too_deep(py));
        }
        if ta.len() != tb.len() {
            return Ok(false);
        }
        for (x, y) in ta.iter().zip(tb.iter()) {
            if !strict_eq(&x, &y, depth + 1)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    if let (Ok(fa), Ok(fb)) = (a.downcast_exact::<PyFloat>(), b.downcast_exact::<PyFloat>()) {
        return Ok(fa.value().to_bits() == fb.value().to_bits());
    }
    // `bool(a == b)`, without building a bool object (this is the hot path for str).
    // SAFETY: both pointers are live objects for the duration of the call.
    match unsafe { ffi::PyObject_RichCompareBool(a.as_ptr(), b.as_ptr(), ffi::Py_EQ) } {
        -1 => Err(PyErr::fetch(py)),
        r => Ok(r == 1),
    }
}

/// A copy of the containers (dict, list, tuple) of a tree; leaves are shared.
fn copy_tree<'py>(x: &Bound<'py, PyAny>, depth: usize) -> PyResult<Bound<'py, PyAny>> {
    let py = x.py();
    if let Ok(d) = x.downcast_exact::<PyDict>() {
        if depth >= MAX_DEPTH {
            return Err(too_deep(py));
        }
        let out = PyDict::new(py);
        for (k, v) in dict_items(d)? {
            out.set_item(k, copy_tree(&v, depth + 1)?)?;
        }
        return Ok(out.into_any());
    }
    if let Ok(l) = x.downcast_exact::<PyList>() {
        if depth >= MAX_DEPTH {
            return Err(too_deep(py));
        }
        let items = l
            .iter()
            .map(|v| copy_tree(&v, depth + 1))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(PyList::new(py, items)?.into_any());
    }
    if let Ok(t) = x.downcast_exact::<PyTuple>() {
        if depth >= MAX_DEPTH {
            return Err(too_deep(py));
        }
        let items = t
            .iter()
            .map(|v| copy_tree(&v, depth + 1))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(PyTuple::new(py, items)?.into_any());
    }
    Ok(x.clone())
}

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
        let d = PyDict::new(self.py);
        d.set_item("op", op)?;
        d.set_item("path", path)?;
        for (k, v) in extra {
            d.set_item(k, v)?;
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
        (key, op, field): (&str, &str, &str),
        path: &str,
        out: &mut Edits<'py>,
    ) -> PyResult<bool> {
        if let Some(value) = new.get_item(key)? {
            let same = match old.get_item(key)? {
                Some(before) => strict_eq(&before, &value, 0)?,
                None => false,
            };
            if !same {
                out.push(self.edit(op, path, &[(field, &value)])?);
            }
            return Ok(true);
        }
        Ok(!old.contains(key)?)
    }

    fn diff_demos(
        &mut self,
        old: &Bound<'py, PyList>,
        new: &Bound<'py, PyList>,
        path: &str,
        out: &mut Edits<'py>,
    ) -> PyResult<bool> {
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
        for m in list.iter() {
            let Ok(d) = m.downcast_exact::<PyDict>() else {
                return Ok(None);
            };
            let Some(name) = d.get_item("name")? else {
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
        key: &str,
        path: &str,
        out: &mut Edits<'py>,
    ) -> PyResult<bool> {
        let (o, n) = match (old.get_item(key)?, new.get_item(key)?) {
            (None, None) => return Ok(true),
            (Some(o), Some(n)) => (o, n),
            _ => return Ok(false),
        };
        match key {
            "modules" | "demos" => {
                if let (Ok(ol), Ok(nl)) =
                    (o.downcast_exact::<PyList>(), n.downcast_exact::<PyList>())
                {
                    return if key == "modules" {
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
        let kind = new.get_item("kind")?;
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
    created.set_item("op", "program_created")?;
    created.set_item("path", "")?;
    created.set_item("state", new_d)?;
    PyList::new(py, [created])
}

// --------------------------------------------------------------------- apply

struct Applier<'py> {
    py: Python<'py>,
    root: Bound<'py, PyDict>,
    cache: HashMap<String, Bound<'py, PyDict>>,
}

impl<'py> Applier<'py> {
    fn fail(&self, n: usize, op: &str, message: &str) -> PyErr {
        desiru_error(
            self.py,
            "CorruptDataError",
            format!("edit {n} ({op}): {message}"),
            EDIT_HINT,
        )
    }

    fn field(
        &self,
        n: usize,
        op: &str,
        edit: &Bound<'py, PyDict>,
        key: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        edit.get_item(key)?
            .ok_or_else(|| self.fail(n, op, &format!("lacks the key '{key}'")))
    }

    /// The edit's index: an exact int, or an error. Returns the value when it
    /// fits an isize and its text (for messages) either way.
    fn index(
        &self,
        n: usize,
        op: &str,
        edit: &Bound<'py, PyDict>,
    ) -> PyResult<(Option<isize>, String)> {
        let index = self.field(n, op, edit, "index")?;
        if index.downcast_exact::<PyInt>().is_err() {
            return Err(self.fail(
                n,
                op,
                &format!("index must be an int, not '{}'", type_name(&index)?),
            ));
        }
        Ok((index.extract::<isize>().ok(), index.str()?.to_string()))
    }

    fn in_range(index: Option<isize>, upto: usize) -> Option<usize> {
        index
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i <= upto)
    }

    fn resolve(&mut self, n: usize, op: &str, path: &str) -> PyResult<Bound<'py, PyDict>> {
        if let Some(node) = self.cache.get(path) {
            return Ok(node.clone());
        }
        let mut node = self.root.clone();
        if path.is_empty() {
            return Ok(node);
        }
        for name in path.split('.') {
            let mut found = None;
            if let Some(modules) = node.get_item("modules")? {
                if let Ok(modules) = modules.downcast_exact::<PyList>() {
                    for m in modules.iter() {
                        if let Ok(d) = m.downcast_exact::<PyDict>() {
                            if d.get_item("name")?.is_some_and(|x| str_eq(&x, name)) {
                                found = Some(d.clone());
                                break;
                            }
                        }
                    }
                }
            }
            match found {
                Some(d) => node = d,
                None => {
                    return Err(desiru_error(
                        self.py,
                        "UnknownModuleError",
                        format!(
                            "edit {n} ({op}): no module at path {}",
                            str_repr(self.py, path)?
                        ),
                        EDIT_HINT,
                    ))
                }
            }
        }
        self.cache.insert(path.to_string(), node.clone());
        Ok(node)
    }

    fn list_field(
        &self,
        n: usize,
        op: &str,
        node: &Bound<'py, PyDict>,
        path: &str,
        key: &str,
    ) -> PyResult<Bound<'py, PyList>> {
        match node
            .get_item(key)?
            .and_then(|v| v.downcast_exact::<PyList>().ok().cloned())
        {
            Some(v) => Ok(v),
            _ => Err(self.fail(
                n,
                op,
                &format!("the node at {} has no {key} list", str_repr(self.py, path)?),
            )),
        }
    }

    fn dict_field(
        &self,
        n: usize,
        op: &str,
        node: &Bound<'py, PyDict>,
        path: &str,
        key: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        match node
            .get_item(key)?
            .and_then(|v| v.downcast_exact::<PyDict>().ok().cloned())
        {
            Some(v) => Ok(v),
            _ => Err(self.fail(
                n,
                op,
                &format!("the node at {} has no {key} dict", str_repr(self.py, path)?),
            )),
        }
    }

    fn need_kind(
        &self,
        n: usize,
        op: &str,
        node: &Bound<'py, PyDict>,
        path: &str,
        kind: &str,
    ) -> PyResult<()> {
        if node.get_item("kind")?.is_some_and(|k| str_eq(&k, kind)) {
            return Ok(());
        }
        Err(self.fail(
            n,
            op,
            &format!("the node at {} is not a {kind}", str_repr(self.py, path)?),
        ))
    }

    fn apply(&mut self, n: usize, edit: &Bound<'py, PyAny>) -> PyResult<()> {
        let Ok(edit) = edit.downcast_exact::<PyDict>() else {
            return Err(desiru_error(
                self.py,
                "CorruptDataError",
                format!("edit {n} is not a dict but '{}'", type_name(edit)?),
                EDIT_HINT,
            ));
        };
        let op_obj = edit.get_item("op")?;
        let op = op_obj
            .as_ref()
            .and_then(exact_str)
            .and_then(|s| s.to_str().ok())
            .filter(|op| OPS.contains(op));
        let Some(op) = op else {
            let shown = match &op_obj {
                Some(o) => pyrepr(o)?,
                None => "None".to_string(),
            };
            return Err(desiru_error(
                self.py,
                "CorruptDataError",
                format!("edit {n} has an unknown op {shown}"),
                EDIT_HINT,
            ));
        };
        let path = match edit.get_item("path")? {
            Some(p) => match exact_str(&p) {
                Some(s) => s.to_str()?.to_string(),
                None => return Err(self.fail(n, op, "path must be a str")),
            },
            None => return Err(self.fail(n, op, "path must be a str")),
        };
        self.dispatch(n, op, &path, edit)
    }

    fn dispatch(
        &mut self,
        n: usize,
        op: &str,
        path: &str,
        edit: &Bound<'py, PyDict>,
    ) -> PyResult<()> {
        match op {
            "program_created" => self.program_created(n, op, path, edit),
            "module_added" => self.module_added(n, op, path, edit),
            "module_removed" => self.module_removed(n, op, path),
            "signature_set" => {
                let node = self.resolve(n, op, path)?;
                self.need_kind(n, op, &node, path, "module")?;
                node.set_item(
                    "signature",
                    copy_tree(&self.field(n, op, edit, "signature")?, 0)?,
                )
            }
            "demo_added" => {
                let node = self.resolve(n, op, path)?;
                let (index, shown) = self.index(n, op, edit)?;
                let demo = self.field(n, op, edit, "demo")?;
                let demos = self.list_field(n, op, &node, path, "demos")?;
                let Some(i) = Self::in_range(index, demos.len()) else {
                    let len = demos.len();
                    return Err(self.fail(
                        n,
                        op,
                        &format!("index {shown} is out of range for {len} demos"),
                    ));
                };
                demos.insert(i, copy_tree(&demo, 0)?)
            }
            "demo_removed" => {
                let node = self.resolve(n, op, path)?;
                let (index, shown) = self.index(n, op, edit)?;
                let demos = self.list_field(n, op, &node, path, "demos")?;
                match Self::in_range(index, demos.len()).filter(|&i| i < demos.len()) {
                    Some(i) => demos.del_item(i),
                    None => {
                        let len = demos.len();
                        Err(self.fail(
                            n,
                            op,
                            &format!("index {shown} is out of range for {len} demos"),
                        ))
                    }
                }
            }
            "demos_reordered" => self.demos_reordered(n, op, path, edit),
            "parameter_set" => {
                let node = self.resolve(n, op, path)?;
                let key = self.field(n, op, edit, "key")?;
                let value = self.field(n, op, edit, "value")?;
                let params = self.dict_field(n, op, &node, path, "parameters")?;
                params.set_item(key, copy_tree(&value, 0)?)
            }
            "parameter_unset" => {
                let node = self.resolve(n, op, path)?;
                let key = self.field(n, op, edit, "key")?;
                let params = self.dict_field(n, op, &node, path, "parameters")?;
                if !params.contains(&key)? {
                    let msg = format!(
                        "no parameter {} at {}",
                        pyrepr(&key)?,
                        str_repr(self.py, path)?
                    );
                    return Err(self.fail(n, op, &msg));
                }
                params.del_item(key)
            }
            "metadata_set" => self.set(n, op, path, edit, "metadata", None),
            "configuration_set" => self.set(n, op, path, edit, "configuration", Some("program")),
            _ => self.set(n, op, path, edit, "custom_data", Some("program")),
        }
    }

    fn program_created(
        &mut self,
        n: usize,
        op: &str,
        path: &str,
        edit: &Bound<'py, PyDict>,
    ) -> PyResult<()> {
        if !path.is_empty() {
            return Err(self.fail(n, op, "path must be '' (the root)"));
        }
        let state = self.field(n, op, edit, "state")?;
        let Ok(state) = state.downcast_exact::<PyDict>() else {
            return Err(self.fail(
                n,
                op,
                &format!("state must be a dict, not '{}'", type_name(&state)?),
            ));
        };
        let fresh = copy_tree(state.as_any(), 0)?;
        self.root.clear();
        self.root.update(fresh.downcast::<PyDict>()?.as_mapping())?;
        self.cache.clear();
        Ok(())
    }

    fn module_added(
        &mut self,
        n: usize,
        op: &str,
        path: &str,
        edit: &Bound<'py, PyDict>,
    ) -> PyResult<()> {
        let (parent_path, name) = match path.rfind('.') {
            Some(i) => (path.get(..i).unwrap_or(""), path.get(i + 1..).unwrap_or("")),
            None => ("", path),
        };
        if name.is_empty() {
            return Err(self.fail(
                n,
                op,
                &format!("{} does not name a module", str_repr(self.py, path)?),
            ));
        }
        let (index, shown) = self.index(n, op, edit)?;
        let state = self.field(n, op, edit, "state")?;
        let named = match state.downcast_exact::<PyDict>() {
            Ok(d) => d.get_item("name")?.is_some_and(|x| str_eq(&x, name)),
            Err(_) => false,
        };
        if !named {
            let msg = format!("state must be a dict named {}", str_repr(self.py, name)?);
            return Err(self.fail(n, op, &msg));
        }
        let parent = self.resolve(n, op, parent_path)?;
        let modules = self.list_field(n, op, &parent, parent_path, "modules")?;
        for m in modules.iter() {
            if let Ok(d) = m.downcast_exact::<PyDict>() {
                if d.get_item("name")?.is_some_and(|x| str_eq(&x, name)) {
                    let msg = format!(
                        "a module named {} already exists at {}",
                        str_repr(self.py, name)?,
                        str_repr(self.py, parent_path)?
                    );
                    return Err(self.fail(n, op, &msg));
                }
            }
        }
        let Some(i) = Self::in_range(index, modules.len()) else {
            let len = modules.len();
            return Err(self.fail(
                n,
                op,
                &format!("index {shown} is out of range for {len} modules"),
            ));
        };
        modules.insert(i, copy_tree(&state, 0)?)?;
        self.cache.clear();
        Ok(())
    }

    fn module_removed(&mut self, n: usize, op: &str, path: &str) -> PyResult<()> {
        if path.is_empty() {
            return Err(self.fail(n, op, "the root cannot be removed"));
        }
        let node = self.resolve(n, op, path)?;
        let parent_path = path.rfind('.').and_then(|i| path.get(..i)).unwrap_or("");
        let parent = self.resolve(n, op, parent_path)?;
        let modules = self.list_field(n, op, &parent, parent_path, "modules")?;
        let at = modules.iter().position(|m| m.is(&node));
        if let Some(k) = at {
            modules.del_item(k)?;
        }
        self.cache.clear();
        Ok(())
    }

    fn demos_reordered(
        &mut self,
        n: usize,
        op: &str,
        path: &str,
        edit: &Bound<'py, PyDict>,
    ) -> PyResult<()> {
        let node = self.resolve(n, op, path)?;
        let order = self.field(n, op, edit, "order")?;
        let demos = self.list_field(n, op, &node, path, "demos")?;
        let size = demos.len();
        let mut idx: Vec<usize> = Vec::with_capacity(size);
        let mut ok = false;
        if let Ok(order) = order.downcast_exact::<PyList>() {
            if order.len() == size {
                ok = true;
                for i in order.iter() {
                    match i
                        .downcast_exact::<PyInt>()
                        .ok()
                        .and_then(|i| i.extract::<usize>().ok())
                    {
                        Some(v) if v < size => idx.push(v),
                        _ => {
                            ok = false;
                            break;
                        }
                    }
                }
            }
        }
        if !ok || !is_permutation(&idx, size) {
            return Err(self.fail(
                n,
                op,
                &format!("order is not a permutation of the {size} demos"),
            ));
        }
        let items = idx
            .iter()
            .map(|&i| demos.get_item(i))
            .collect::<PyResult<Vec<_>>>()?;
        let reordered = PyList::new(self.py, items)?;
        demos.set_slice(0, size, reordered.as_any())
    }

    fn set(
        &mut self,
        n: usize,
        op: &str,
        path: &str,
        edit: &Bound<'py, PyDict>,
        key: &str,
        kind: Option<&str>,
    ) -> PyResult<()> {
        let node = self.resolve(n, op, path)?;
        if let Some(kind) = kind {
            self.need_kind(n, op, &node, path, kind)?;
        }
        let value = self.field(n, op, edit, "value")?;
        node.set_item(key, copy_tree(&value, 0)?)
    }
}

const OPS: [&str; 12] = [
    "program_created",
    "module_added",
    "module_removed",
    "signature_set",
    "demo_added",
    "demo_removed",
    "demos_reordered",
    "parameter_set",
    "parameter_unset",
    "metadata_set",
    "configuration_set",
    "custom_data_set",
];

/// Apply `edits` in order to `state` in place and return it.
#[pyfunction]
fn apply_edits<'py>(
    py: Python<'py>,
    state: &Bound<'py, PyAny>,
    edits: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let Ok(root) = state.downcast_exact::<PyDict>() else {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "apply_edits() needs a dict as the state, not '{}'",
            type_name(state)?
        )));
    };
    let Ok(edits) = edits.downcast_exact::<PyList>() else {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "apply_edits() needs a list of edits, not '{}'",
            type_name(edits)?
        )));
    };
    let mut applier = Applier {
        py,
        root: root.clone(),
        cache: HashMap::new(),
    };
    for (n, edit) in edits.iter().enumerate() {
        applier.apply(n, &edit)?;
    }
    Ok(state.clone())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(diff_states, m)?)?;
    m.add_function(wrap_pyfunction!(apply_edits, m)?)?;
    Ok(())
}
