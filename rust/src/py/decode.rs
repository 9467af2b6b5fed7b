//! msgpack -> Python objects: the core decoding walk with a builder that makes
//! CPython objects directly (lists sized up front, since the reader caps every
//! count by the bytes left).

use pyo3::ffi;
use pyo3::prelude::*;

use crate::codec::read::{decode, utf8_error, Build};

/// Map keys repeat a lot in a state tree ("question", "answer", ... once per
/// demo): short keys are made once per decode and shared. Sharing also keeps
/// the str's cached hash, which makes each dict insert cheaper.
const KEY_CACHE_SLOTS: usize = 512;
const KEY_CACHE_MAX_LEN: usize = 24;
/// Inputs smaller than this decode without a key cache (not worth setting up).
const KEY_CACHE_FROM: usize = 4096;

struct CachedKey {
    len: usize,
    bytes: [u8; KEY_CACHE_MAX_LEN],
    obj: Py<PyAny>,
}

/// Builds Python objects for [`decode`].
pub(crate) struct PyBuilder<'py> {
    py: Python<'py>,
    keys: Vec<Option<CachedKey>>,
    use_cache: bool,
}

#[inline]
fn key_slot(k: &[u8]) -> usize {
    // FNV-1a: short keys, good spread, no allocation
    let mut h: u32 = 0x811c_9dc5;
    for &b in k {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    (h as usize) & (KEY_CACHE_SLOTS - 1)
}

impl<'py> PyBuilder<'py> {
    pub(crate) fn new(py: Python<'py>) -> Self {
        PyBuilder {
            py,
            keys: Vec::new(),
            use_cache: false,
        }
    }

    /// Decode one value from `data` (see [`decode`] for the rules).
    pub(crate) fn decode(&mut self, data: &[u8], max_depth: usize) -> PyResult<Bound<'py, PyAny>> {
        self.use_cache = data.len() >= KEY_CACHE_FROM;
        decode(data, max_depth, self)
    }

    #[inline]
    fn cached_key(&mut self, v: &[u8], offset: usize) -> PyResult<Bound<'py, PyAny>> {
        if self.keys.is_empty() {
            self.keys.resize_with(KEY_CACHE_SLOTS, || None);
        }
        let slot = key_slot(v);
        if let Some(Some(hit)) = self.keys.get(slot) {
            if hit.bytes.get(..hit.len) == Some(v) {
                return Ok(hit.obj.bind(self.py).clone());
            }
        }
        let obj = self.make_str(v, offset)?;
        let mut bytes = [0u8; KEY_CACHE_MAX_LEN];
        match bytes.get_mut(..v.len()) {
            Some(dst) => dst.copy_from_slice(v),
            None => return Ok(obj), // too long to cache (callers check first)
        }
        if let Some(entry) = self.keys.get_mut(slot) {
            *entry = Some(CachedKey {
                len: v.len(),
                bytes,
                obj: obj.clone().unbind(),
            });
        }
        Ok(obj)
    }

    #[inline]
    fn own(&self, ptr: *mut ffi::PyObject) -> PyResult<Bound<'py, PyAny>> {
        // SAFETY: ptr is a new reference (or NULL with an exception set).
        unsafe { Bound::from_owned_ptr_or_err(self.py, ptr) }
    }

    #[inline]
    fn make_str(&self, v: &[u8], offset: usize) -> PyResult<Bound<'py, PyAny>> {
        // SAFETY: v is a valid slice; CPython validates the UTF-8.
        let ptr = unsafe {
            ffi::PyUnicode_DecodeUTF8(
                v.as_ptr().cast(),
                v.len() as ffi::Py_ssize_t,
                c"strict".as_ptr(),
            )
        };
        if ptr.is_null() {
            let err = PyErr::fetch(self.py);
            if std::str::from_utf8(v).is_err() {
                return Err(utf8_error(v, offset).into());
            }
            return Err(err);
        }
        self.own(ptr)
    }
}

impl<'py> Build for PyBuilder<'py> {
    type Value = Bound<'py, PyAny>;
    type Key = Bound<'py, PyAny>;
    type Array = Bound<'py, PyAny>;
    type Map = Bound<'py, PyAny>;
    type Error = PyErr;

    #[inline]
    fn nil(&mut self) -> PyResult<Self::Value> {
        Ok(self.py.None().into_bound(self.py))
    }
    #[inline]
    fn bool(&mut self, v: bool) -> PyResult<Self::Value> {
        // SAFETY: Py_True/Py_False are immortal singletons; we take a new reference.
        unsafe {
            let ptr = if v { ffi::Py_True() } else { ffi::Py_False() };
            Ok(Bound::from_borrowed_ptr(self.py, ptr))
        }
    }
    #[inline]
    fn int(&mut self, v: i64) -> PyResult<Self::Value> {
        // SAFETY: plain constructor call.
        self.own(unsafe { ffi::PyLong_FromLongLong(v) })
    }
    #[inline]
    fn uint(&mut self, v: u64) -> PyResult<Self::Value> {
        // SAFETY: plain constructor call.
        self.own(unsafe { ffi::PyLong_FromUnsignedLongLong(v) })
    }
    #[inline]
    fn float(&mut self, v: f64) -> PyResult<Self::Value> {
        // SAFETY: plain constructor call.
        self.own(unsafe { ffi::PyFloat_FromDouble(v) })
    }
    #[inline]
    fn str(&mut self, v: &[u8], offset: usize) -> PyResult<Self::Value> {
        self.make_str(v, offset)
    }
    #[inline]
    fn bin(&mut self, v: &[u8]) -> PyResult<Self::Value> {
        // SAFETY: v is a valid slice; CPython copies it.
        self.own(unsafe {
            ffi::PyBytes_FromStringAndSize(v.as_ptr().cast(), v.len() as ffi::Py_ssize_t)
        })
    }
    #[inline]
    fn key(&mut self, v: &[u8], offset: usize) -> PyResult<Self::Key> {
        if self.use_cache && v.len() <= KEY_CACHE_MAX_LEN {
            return self.cached_key(v, offset);
        }
        self.make_str(v, offset)
    }
    #[inline]
    fn begin_array(&mut self, len: usize) -> PyResult<Self::Array> {
        // SAFETY: len is capped by the input's remaining bytes; the slots start
        // NULL, which list deallocation tolerates if we fail half way.
        self.own(unsafe { ffi::PyList_New(len as ffi::Py_ssize_t) })
    }
    #[inline]
    fn push(&mut self, array: &mut Self::Array, index: usize, v: Self::Value) -> PyResult<()> {
        // SAFETY: index < len of the list made by begin_array; SetItem steals v.
        let rc =
            unsafe { ffi::PyList_SetItem(array.as_ptr(), index as ffi::Py_ssize_t, v.into_ptr()) };
        if rc != 0 {
            return Err(PyErr::fetch(self.py));
        }
        Ok(())
    }
    #[inline]
    fn end_array(&mut self, array: Self::Array) -> PyResult<Self::Value> {
        Ok(array)
    }
    #[inline]
    fn begin_map(&mut self, _len: usize) -> PyResult<Self::Map> {
        // SAFETY: plain constructor call.
        self.own(unsafe { ffi::PyDict_New() })
    }
    #[inline]
    fn insert(&mut self, map: &mut Self::Map, k: Self::Key, v: Self::Value) -> PyResult<()> {
        // SAFETY: all three are live; SetItem takes its own references.
        let rc = unsafe { ffi::PyDict_SetItem(map.as_ptr(), k.as_ptr(), v.as_ptr()) };
        if rc != 0 {
            return Err(PyErr::fetch(self.py));
        }
        Ok(())
    }
    #[inline]
    fn end_map(&mut self, map: Self::Map) -> PyResult<Self::Value> {
        Ok(map)
    }
}
