//! Tree helpers shared by the diff and the apply: strict equality, copies,
//! small conversions. Mirrors `strict_equal` and `copy_tree` of
//! `desiru/_pure/diff.py`.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyList, PyString, PyTuple};

use crate::codec::MAX_DEPTH;
use crate::py::error::named_error;

pub(super) fn too_deep(py: Python<'_>) -> PyErr {
    named_error(
        py,
        "SerializationError",
        format!("containers nest deeper than {MAX_DEPTH} levels (is there a cycle?)"),
        "a state tree is plain nested dicts and lists of bounded depth",
    )
}

pub(super) fn type_name(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(obj.get_type().name()?.to_string())
}

pub(super) fn pyrepr(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(obj.repr()?.to_string())
}

pub(super) fn str_repr(py: Python<'_>, s: &str) -> PyResult<String> {
    pyrepr(PyString::new(py, s).as_any())
}

/// The Python str for one of the state tree's fixed keys, interned once per process.
///
/// A dict lookup or insert with a `&str` makes a new str and hashes it every
/// time; an interned str carries its hash, and the dict finds its own interned
/// keys by identity. Any other name is made as a plain str.
pub(super) fn key<'py>(py: Python<'py>, name: &str) -> Bound<'py, PyString> {
    macro_rules! interned {
        ($($lit:literal),* $(,)?) => {
            match name {
                $($lit => pyo3::intern!(py, $lit).clone(),)*
                _ => PyString::new(py, name),
            }
        };
    }
    interned!(
        "op",
        "path",
        "kind",
        "name",
        "modules",
        "demos",
        "parameters",
        "metadata",
        "signature",
        "configuration",
        "custom_data",
        "index",
        "demo",
        "state",
        "key",
        "value",
        "order",
    )
}

/// `(key, value)` pairs of a dict, as a snapshot safe against mutation.
pub(super) fn dict_items<'py>(
    d: &Bound<'py, PyDict>,
) -> PyResult<Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
    // Collected in one go: no Python code runs while the live iterator walks the
    // dict, so nothing can change its size midway (what would make it panic).
    Ok(d.iter().collect())
}

pub(super) fn exact_str<'a>(obj: &'a Bound<'_, PyAny>) -> Option<&'a Bound<'a, PyString>> {
    // A lifetime-narrowing downcast; exact str only, as the twin's `type(x) is str`.
    obj.downcast_exact::<PyString>().ok()
}

pub(super) fn str_eq(obj: &Bound<'_, PyAny>, want: &str) -> bool {
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
pub(super) fn dict_eq(
    da: &Bound<'_, PyDict>,
    db: &Bound<'_, PyDict>,
    depth: usize,
) -> PyResult<bool> {
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
pub(super) fn strict_eq(
    a: &Bound<'_, PyAny>,
    b: &Bound<'_, PyAny>,
    depth: usize,
) -> PyResult<bool> {
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
pub(super) fn copy_tree<'py>(x: &Bound<'py, PyAny>, depth: usize) -> PyResult<Bound<'py, PyAny>> {
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
