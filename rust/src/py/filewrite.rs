//! `StreamWriter`: a document's state written at its place in a file while the
//! next module is encoded (see `crate::filewrite` and
//! python/desiru/serialization/stream_write.py).

use std::fs::File;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Mutex;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::encode::Encoder;
use crate::filewrite::{FileWriter, Role};

/// Writes pieces of a document's state to a file descriptor from `offset` on,
/// on a second thread, hashing them there; `finish()` waits and returns
/// `(bytes, whole, rest, [module, ...])`, the hashes as 16-byte XXH3-128.
#[pyclass(module = "desiru._native")]
pub struct StreamWriter {
    inner: Mutex<Option<FileWriter>>,
}

fn closed() -> PyErr {
    PyValueError::new_err("the StreamWriter is finished or closed")
}

impl StreamWriter {
    /// Queue one buffer (waiting, with the GIL released, while IN_FLIGHT wait);
    /// an OSError once a write has failed.
    fn send(&self, py: Python<'_>, buf: Vec<u8>, role: Role) -> PyResult<()> {
        let sender = {
            let guard = self.inner.lock().map_err(|_| closed())?;
            let writer = guard.as_ref().ok_or_else(closed)?;
            if writer.failed() {
                drop(guard);
                return Err(self.failure(py));
            }
            writer.sender().ok_or_else(closed)?
        };
        let sent = py.allow_threads(move || sender.send((buf, role)).is_ok());
        if sent {
            Ok(())
        } else {
            Err(self.failure(py))
        }
    }

    /// The writer's error, after stopping it.
    fn failure(&self, py: Python<'_>) -> PyErr {
        let writer = match self.inner.lock() {
            Ok(mut guard) => guard.take(),
            Err(_) => None,
        };
        match writer {
            Some(w) => match py.allow_threads(move || w.finish()) {
                Err(e) => e.into(),
                Ok(_) => PyOSError::new_err("the file writer stopped"),
            },
            None => closed(),
        }
    }

    fn buffer(&self) -> PyResult<Vec<u8>> {
        let guard = self.inner.lock().map_err(|_| closed())?;
        Ok(guard.as_ref().ok_or_else(closed)?.buffer())
    }
}

#[pymethods]
impl StreamWriter {
    /// A writer of a duplicate of `fd`, its first byte at `offset`.
    #[new]
    fn new(fd: RawFd, offset: u64) -> PyResult<Self> {
        if fd < 0 {
            return Err(PyValueError::new_err("fd must be an open file descriptor"));
        }
        // SAFETY: only borrowed for the dup below; the caller keeps `fd` open for this call.
        let owned = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
        let writer = FileWriter::new(File::from(owned), offset)?;
        Ok(StreamWriter {
            inner: Mutex::new(Some(writer)),
        })
    }

    /// Write `data` next (copied first); `role`: 0 outside the modules' span,
    /// 1 inside it but not a module, 2 a module.
    fn put(&self, py: Python<'_>, data: &Bound<'_, PyBytes>, role: u8) -> PyResult<()> {
        let role =
            Role::from_code(role).ok_or_else(|| PyValueError::new_err("role must be 0, 1 or 2"))?;
        let mut buf = self.buffer()?;
        buf.extend_from_slice(data.as_bytes());
        self.send(py, buf, role)
    }

    /// Encode `obj` canonically (the bytes of `packb(obj, canonical=True)`)
    /// into a reused buffer and write it next as a module; returns its length.
    fn put_module(&self, py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<usize> {
        let buf = self.buffer()?;
        let mut encoder = Encoder::new(py, buf, true);
        encoder.encode_root(obj)?;
        let buf = encoder.out;
        let n = buf.len();
        self.send(py, buf, Role::Module)?;
        Ok(n)
    }

    /// Wait until every piece is written: `(bytes, whole, rest, [module, ...])`,
    /// or the first write error as an OSError.
    #[allow(clippy::type_complexity)]
    fn finish<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(
        u64,
        Bound<'py, PyBytes>,
        Bound<'py, PyBytes>,
        Vec<Bound<'py, PyBytes>>,
    )> {
        let writer = self
            .inner
            .lock()
            .map_err(|_| closed())?
            .take()
            .ok_or_else(closed)?;
        let out = py.allow_threads(move || writer.finish())?;
        let modules = out.modules.iter().map(|d| PyBytes::new(py, d)).collect();
        Ok((
            out.bytes,
            PyBytes::new(py, &out.whole),
            PyBytes::new(py, &out.rest),
            modules,
        ))
    }

    /// Stop after what is queued and wait, discarding any error (after a failure elsewhere).
    fn close(&self, py: Python<'_>) {
        let writer = match self.inner.lock() {
            Ok(mut guard) => guard.take(),
            Err(_) => None,
        };
        if let Some(w) = writer {
            py.allow_threads(move || drop(w));
        }
    }
}

/// A container being walked by [`size_at_least`]: where its next child is.
enum Frame {
    List(*mut ffi::PyObject, ffi::Py_ssize_t),
    Tuple(*mut ffi::PyObject, ffi::Py_ssize_t),
    Dict(*mut ffi::PyObject, ffi::Py_ssize_t),
}

/// One value's share of the lower bound; a container is pushed to be walked.
///
/// # Safety
/// `obj` is a live object; the GIL is held.
unsafe fn visit(obj: *mut ffi::PyObject, stack: &mut Vec<Frame>) -> u64 {
    if ffi::PyUnicode_Check(obj) != 0 {
        let n = ffi::PyUnicode_GetLength(obj);
        if n < 0 {
            ffi::PyErr_Clear();
        }
        1 + n.max(0) as u64
    } else if ffi::PyBytes_Check(obj) != 0 {
        1 + ffi::PyBytes_Size(obj).max(0) as u64
    } else if ffi::PyDict_Check(obj) != 0 {
        stack.push(Frame::Dict(obj, 0));
        1
    } else if ffi::PyList_Check(obj) != 0 {
        stack.push(Frame::List(obj, 0));
        1
    } else if ffi::PyTuple_Check(obj) != 0 {
        stack.push(Frame::Tuple(obj, 0));
        1
    } else {
        1
    }
}

/// Whether `packb(obj)` is surely at least `need` bytes long. A lower bound
/// (every value takes a byte, a str one more per code point, bytes one per
/// byte, a dict key likewise) is summed only until it reaches `need`, so a
/// large value is decided from its first few items. No Python code runs.
#[pyfunction]
pub fn size_at_least(obj: &Bound<'_, PyAny>, need: u64) -> bool {
    let mut stack: Vec<Frame> = Vec::new();
    // SAFETY: the GIL is held for the whole walk and only C accessors run, so
    // every borrowed child stays alive; frames are at most `need` deep, since
    // each one added at least 1 to the total.
    unsafe {
        let mut total = visit(obj.as_ptr(), &mut stack);
        while total < need {
            let child = match stack.last_mut() {
                None => return false,
                Some(Frame::List(list, i)) => {
                    if *i >= ffi::PyList_Size(*list) {
                        None
                    } else {
                        *i += 1;
                        Some(ffi::PyList_GetItem(*list, *i - 1))
                    }
                }
                Some(Frame::Tuple(tuple, i)) => {
                    if *i >= ffi::PyTuple_Size(*tuple) {
                        None
                    } else {
                        *i += 1;
                        Some(ffi::PyTuple_GetItem(*tuple, *i - 1))
                    }
                }
                Some(Frame::Dict(dict, pos)) => {
                    let mut key: *mut ffi::PyObject = std::ptr::null_mut();
                    let mut value: *mut ffi::PyObject = std::ptr::null_mut();
                    if ffi::PyDict_Next(*dict, pos, &mut key, &mut value) == 0 {
                        None
                    } else {
                        total += 1;
                        if ffi::PyUnicode_Check(key) != 0 {
                            total += ffi::PyUnicode_GetLength(key).max(0) as u64;
                        }
                        Some(value)
                    }
                }
            };
            match child {
                None => {
                    stack.pop();
                }
                Some(item) if item.is_null() => ffi::PyErr_Clear(),
                Some(item) => total += visit(item, &mut stack),
            }
        }
        true
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<StreamWriter>()?;
    m.add_function(wrap_pyfunction!(size_at_least, m)?)
}
