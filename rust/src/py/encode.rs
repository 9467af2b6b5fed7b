//! Python object -> msgpack: a walk over the state tree with raw CPython calls
//! (exact type checks first, borrowed references, UTF-8 taken from the str
//! object without copying). Writes go to any core [`Sink`].

use std::ptr::addr_of_mut;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyAnyMethods;

use crate::codec::write::{self, Sink, TooLong};
use crate::codec::MAX_DEPTH;
use crate::error::Error;

/// One step from a container to a child, recorded only while an error unwinds.
enum Seg {
    Index(usize),
    Key(String),
}

/// An encoding failure and the path to it (innermost step first). Boxed so a
/// `Result<(), EncodeError>` is one word: every value of the walk returns one.
pub(crate) struct EncodeError(Box<Failure>);

struct Failure {
    message: String,
    rev_path: Vec<Seg>,
}

impl EncodeError {
    #[cold]
    fn new(message: impl Into<String>) -> Self {
        EncodeError(Box::new(Failure {
            message: message.into(),
            rev_path: Vec::new(),
        }))
    }

    #[cold]
    fn at(mut self, seg: Seg) -> Self {
        self.0.rev_path.push(seg);
        self
    }
}

impl From<EncodeError> for Error {
    fn from(e: EncodeError) -> Error {
        let e = *e.0;
        let mut path = String::new();
        for seg in e.rev_path.iter().rev() {
            match seg {
                Seg::Index(i) => path.push_str(&format!("[{i}]")),
                Seg::Key(k) if path.is_empty() => path.push_str(k),
                Seg::Key(k) => {
                    path.push('.');
                    path.push_str(k);
                }
            }
        }
        Error::Unserializable {
            path,
            message: e.message,
        }
    }
}

type EResult = Result<(), EncodeError>;

fn too_long(TooLong(n): TooLong) -> EncodeError {
    EncodeError::new(format!(
        "a value of length {n} exceeds msgpack's limit of 2^32-1"
    ))
}

/// Take and clear the pending Python exception; we report our own error.
unsafe fn clear_error() {
    if !ffi::PyErr_Occurred().is_null() {
        ffi::PyErr_Clear();
    }
}

/// `repr(obj)` for messages, never failing, at most 60 characters.
fn short_repr(py: Python<'_>, obj: *mut ffi::PyObject) -> String {
    // SAFETY: obj is a live borrowed reference held by its container.
    let bound = unsafe { Bound::from_borrowed_ptr(py, obj) };
    let text = match bound.repr() {
        Ok(r) => r.to_string(),
        Err(_) => "<unprintable>".to_owned(),
    };
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text
    }
}

fn type_name(py: Python<'_>, obj: *mut ffi::PyObject) -> String {
    // SAFETY: obj is a live borrowed reference held by its container.
    let bound = unsafe { Bound::from_borrowed_ptr(py, obj) };
    match bound.get_type().name() {
        Ok(n) => n.to_string(),
        Err(_) => "<unknown>".to_owned(),
    }
}

/// A dict entry waiting to be written (in sorted-key order when canonical).
#[derive(Clone, Copy)]
struct Entry {
    key: *const u8,
    key_len: usize,
    value: *mut ffi::PyObject,
}

/// Walks a Python state tree and writes msgpack to `out`.
pub(crate) struct Encoder<'py, S: Sink> {
    py: Python<'py>,
    pub(crate) out: S,
    canonical: bool,
    /// Entry buffers for canonical mode, one per depth, reused across dicts.
    scratch: Vec<Vec<Entry>>,
}

impl<'py, S: Sink> Encoder<'py, S> {
    pub(crate) fn new(py: Python<'py>, out: S, canonical: bool) -> Self {
        Encoder {
            py,
            out,
            canonical,
            scratch: Vec::new(),
        }
    }

    /// Encode one object (the root of a tree).
    pub(crate) fn encode_root(&mut self, obj: &Bound<'py, PyAny>) -> Result<(), Error> {
        // SAFETY: obj is alive for the whole call; no Python code runs during
        // the walk (only C-level accessors), so borrowed children stay alive.
        unsafe { self.encode(obj.as_ptr(), 0) }.map_err(Error::from)
    }

    /// UTF-8 of a str object, borrowed from the object's own cache.
    #[inline]
    unsafe fn utf8<'a>(obj: *mut ffi::PyObject) -> Result<&'a [u8], EncodeError> {
        let mut size: ffi::Py_ssize_t = 0;
        let data = ffi::PyUnicode_AsUTF8AndSize(obj, &mut size);
        if data.is_null() {
            clear_error();
            return Err(EncodeError::new(
                "a str holds lone surrogates and cannot be encoded as UTF-8",
            ));
        }
        Ok(std::slice::from_raw_parts(data.cast::<u8>(), size as usize))
    }

    #[inline]
    unsafe fn encode(&mut self, obj: *mut ffi::PyObject, depth: usize) -> EResult {
        let ty = ffi::Py_TYPE(obj);
        if ty == addr_of_mut!(ffi::PyUnicode_Type) {
            let s = Self::utf8(obj)?;
            write::write_str_payload(&mut self.out, s).map_err(too_long)
        } else if ty == addr_of_mut!(ffi::PyDict_Type) {
            self.dict(obj, depth + 1)
        } else if ty == addr_of_mut!(ffi::PyList_Type) {
            self.list(obj, depth + 1)
        } else if ty == addr_of_mut!(ffi::PyLong_Type) {
            self.int(obj)
        } else if ty == addr_of_mut!(ffi::PyFloat_Type) {
            write::write_f64(&mut self.out, ffi::PyFloat_AsDouble(obj));
            Ok(())
        } else if obj == ffi::Py_None() {
            write::write_nil(&mut self.out);
            Ok(())
        } else if obj == ffi::Py_True() {
            write::write_bool(&mut self.out, true);
            Ok(())
        } else if obj == ffi::Py_False() {
            write::write_bool(&mut self.out, false);
            Ok(())
        } else if ty == addr_of_mut!(ffi::PyBytes_Type) {
            self.bytes(obj)
        } else if ty == addr_of_mut!(ffi::PyTuple_Type) {
            self.tuple(obj, depth + 1)
        } else {
            self.other(obj, depth)
        }
    }

    /// Subclasses of the accepted types, bytearray, memoryview, and errors.
    /// Tuple subclasses are refused: msgpack packs its own `ExtType` (a
    /// namedtuple) as an ext, so accepting them would break byte equality.
    #[cold]
    unsafe fn other(&mut self, obj: *mut ffi::PyObject, depth: usize) -> EResult {
        if ffi::PyUnicode_Check(obj) != 0 {
            let s = Self::utf8(obj)?;
            write::write_str_payload(&mut self.out, s).map_err(too_long)
        } else if ffi::PyDict_Check(obj) != 0 {
            self.dict(obj, depth + 1)
        } else if ffi::PyList_Check(obj) != 0 {
            self.list(obj, depth + 1)
        } else if ffi::PyLong_Check(obj) != 0 {
            self.int(obj)
        } else if ffi::PyFloat_Check(obj) != 0 {
            let v = ffi::PyFloat_AsDouble(obj);
            if v == -1.0 && !ffi::PyErr_Occurred().is_null() {
                clear_error();
                return Err(EncodeError::new(
                    "a float subclass could not be read as a float",
                ));
            }
            write::write_f64(&mut self.out, v);
            Ok(())
        } else if ffi::PyBytes_Check(obj) != 0 {
            self.bytes(obj)
        } else if ffi::PyByteArray_Check(obj) != 0 {
            let data = ffi::PyByteArray_AsString(obj);
            let len = ffi::PyByteArray_Size(obj) as usize;
            let slice = if len == 0 || data.is_null() {
                &[][..]
            } else {
                std::slice::from_raw_parts(data.cast::<u8>(), len)
            };
            write::write_bin_payload(&mut self.out, slice).map_err(too_long)
        } else if ffi::PyMemoryView_Check(obj) != 0 {
            let view = Bound::from_borrowed_ptr(self.py, obj);
            // msgpack refuses non-contiguous views; so do we, to stay byte-equal
            let contiguous = view.getattr("c_contiguous").and_then(|c| c.is_truthy());
            if !matches!(contiguous, Ok(true)) {
                clear_error();
                return Err(EncodeError::new(
                    "a memoryview that is not C-contiguous cannot be written (pass bytes(view))",
                ));
            }
            let copy = view.call_method0("tobytes").map_err(|_| {
                clear_error();
                EncodeError::new("a memoryview could not be read as contiguous bytes")
            })?;
            // `copy` dies here: its bytes must be copied, not referenced
            let data = copy.downcast::<pyo3::types::PyBytes>().map_err(|_| {
                EncodeError::new("a memoryview could not be read as contiguous bytes")
            })?;
            write::write_bin(&mut self.out, data.as_bytes()).map_err(too_long)
        } else {
            let name = type_name(self.py, obj);
            Err(EncodeError::new(format!(
                "cannot serialize a value of type '{name}'"
            )))
        }
    }

    #[inline]
    unsafe fn bytes(&mut self, obj: *mut ffi::PyObject) -> EResult {
        let data = ffi::PyBytes_AsString(obj);
        let len = ffi::PyBytes_Size(obj) as usize;
        if data.is_null() {
            clear_error();
            return Err(EncodeError::new("a bytes object could not be read"));
        }
        write::write_bin_payload(
            &mut self.out,
            std::slice::from_raw_parts(data.cast::<u8>(), len),
        )
        .map_err(too_long)
    }

    #[inline]
    unsafe fn int(&mut self, obj: *mut ffi::PyObject) -> EResult {
        let mut overflow: std::os::raw::c_int = 0;
        let v = ffi::PyLong_AsLongLongAndOverflow(obj, &mut overflow);
        if overflow == 0 {
            if v == -1 && !ffi::PyErr_Occurred().is_null() {
                clear_error();
                return Err(EncodeError::new("an int could not be read"));
            }
            write::write_int(&mut self.out, v);
            return Ok(());
        }
        if overflow > 0 {
            let u = ffi::PyLong_AsUnsignedLongLong(obj);
            if u != u64::MAX || ffi::PyErr_Occurred().is_null() {
                write::write_uint(&mut self.out, u);
                return Ok(());
            }
            clear_error();
        }
        Err(EncodeError::new(format!(
            "int {} is outside msgpack's range [-2**63, 2**64-1]",
            short_repr(self.py, obj)
        )))
    }

    #[inline]
    fn check_depth(depth: usize) -> EResult {
        if depth > MAX_DEPTH {
            return Err(EncodeError::new(format!(
                "containers nest deeper than {MAX_DEPTH} levels (is there a cycle?)"
            )));
        }
        Ok(())
    }

    unsafe fn list(&mut self, obj: *mut ffi::PyObject, depth: usize) -> EResult {
        Self::check_depth(depth)?;
        let n = ffi::PyList_Size(obj).max(0) as usize;
        write::write_array_header(&mut self.out, n).map_err(too_long)?;
        for i in 0..n {
            let item = ffi::PyList_GetItem(obj, i as ffi::Py_ssize_t);
            if item.is_null() {
                clear_error();
                return Err(
                    EncodeError::new("a list changed size while it was encoded").at(Seg::Index(i))
                );
            }
            self.encode(item, depth).map_err(|e| e.at(Seg::Index(i)))?;
        }
        Ok(())
    }

    unsafe fn tuple(&mut self, obj: *mut ffi::PyObject, depth: usize) -> EResult {
        Self::check_depth(depth)?;
        let n = ffi::PyTuple_Size(obj).max(0) as usize;
        write::write_array_header(&mut self.out, n).map_err(too_long)?;
        for i in 0..n {
            let item = ffi::PyTuple_GetItem(obj, i as ffi::Py_ssize_t);
            if item.is_null() {
                clear_error();
                return Err(EncodeError::new("a tuple item could not be read").at(Seg::Index(i)));
            }
            self.encode(item, depth).map_err(|e| e.at(Seg::Index(i)))?;
        }
        Ok(())
    }

    /// The path step for a dict key: the str itself, or `[repr]` for others.
    unsafe fn key_seg(&self, key: *mut ffi::PyObject) -> Seg {
        if ffi::PyUnicode_Check(key) != 0 {
            if let Ok(s) = Self::utf8(key) {
                return Seg::Key(String::from_utf8_lossy(s).into_owned());
            }
        }
        Seg::Key(format!("[{}]", short_repr(self.py, key)))
    }

    unsafe fn dict(&mut self, obj: *mut ffi::PyObject, depth: usize) -> EResult {
        Self::check_depth(depth)?;
        let n = ffi::PyDict_Size(obj).max(0) as usize;
        write::write_map_header(&mut self.out, n).map_err(too_long)?;
        if self.canonical {
            return self.dict_sorted(obj, n, depth);
        }
        let mut pos: ffi::Py_ssize_t = 0;
        let mut key: *mut ffi::PyObject = std::ptr::null_mut();
        let mut value: *mut ffi::PyObject = std::ptr::null_mut();
        let mut seen = 0usize;
        while ffi::PyDict_Next(obj, &mut pos, &mut key, &mut value) != 0 {
            seen += 1;
            self.encode(key, depth)
                .map_err(|e| e.at(self.key_seg(key)))?;
            self.encode(value, depth)
                .map_err(|e| e.at(self.key_seg(key)))?;
        }
        if seen != n {
            return Err(EncodeError::new("a dict changed size while it was encoded"));
        }
        Ok(())
    }

    /// The reusable entry buffer for containers at `depth`, emptied.
    #[inline]
    fn take_scratch(&mut self, depth: usize, n: usize) -> Vec<Entry> {
        if self.scratch.len() <= depth {
            self.scratch.resize_with(depth + 1, Vec::new);
        }
        let mut entries = std::mem::take(&mut self.scratch[depth]);
        entries.clear();
        entries.reserve(n);
        entries
    }

    unsafe fn dict_sorted(&mut self, obj: *mut ffi::PyObject, n: usize, depth: usize) -> EResult {
        let mut entries = self.take_scratch(depth, n);
        let mut pos: ffi::Py_ssize_t = 0;
        let mut key: *mut ffi::PyObject = std::ptr::null_mut();
        let mut value: *mut ffi::PyObject = std::ptr::null_mut();
        while ffi::PyDict_Next(obj, &mut pos, &mut key, &mut value) != 0 {
            if ffi::PyUnicode_Check(key) == 0 {
                let name = type_name(self.py, key);
                return Err(EncodeError::new(format!(
                    "a dict key of type '{name}' cannot be encoded canonically: state-tree keys must be str"
                ))
                .at(self.key_seg(key)));
            }
            let k = Self::utf8(key).map_err(|e| e.at(self.key_seg(key)))?;
            entries.push(Entry {
                key: k.as_ptr(),
                key_len: k.len(),
                value,
            });
        }
        if entries.len() != n {
            return Err(EncodeError::new("a dict changed size while it was encoded"));
        }
        // SAFETY (for the slices below): each key's UTF-8 buffer is owned by
        // its str object, which the dict keeps alive during the walk.
        entries.sort_unstable_by(|a, b| {
            let ka = std::slice::from_raw_parts(a.key, a.key_len);
            let kb = std::slice::from_raw_parts(b.key, b.key_len);
            ka.cmp(kb)
        });
        for entry in &entries {
            let k = std::slice::from_raw_parts(entry.key, entry.key_len);
            write::write_str_payload(&mut self.out, k).map_err(too_long)?;
            self.encode(entry.value, depth)
                .map_err(|e| e.at(Seg::Key(String::from_utf8_lossy(k).into_owned())))?;
        }
        self.scratch[depth] = entries;
        Ok(())
    }
}
