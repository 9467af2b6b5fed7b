//! Python entry points of the codec and the hashes.

use std::cell::RefCell;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};

use super::decode::PyBuilder;
use super::encode::Encoder;
use crate::codec::gather::{advise_huge, Gather};
use crate::codec::{HARD_MAX_DEPTH, MAX_DEPTH};
use crate::error::Error;
use crate::hash::{sha256_digest, xxh3_128_digest, Xxh3Sink};

/// Inputs at least this long are hashed with the GIL released.
const RELEASE_GIL_AT: usize = 64 * 1024;
/// The reused encode buffer is kept between calls up to this capacity; larger
/// ones are freed so one huge save does not pin its memory for good.
const KEEP_BUFFER_UP_TO: usize = 64 * 1024 * 1024;

thread_local! {
    /// One output buffer per thread, reused: its pages are already touched,
    /// which is several times faster than writing into fresh memory.
    static PACK_BUF: RefCell<Gather> = RefCell::new(Gather::new());
}

/// Bytes of a bytes-like argument. `bytes` are borrowed; bytearray and
/// memoryview are copied once (they may change while the GIL is released).
enum ByteArg<'py> {
    Borrowed(Bound<'py, PyBytes>),
    Owned(Vec<u8>),
}

impl ByteArg<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            ByteArg::Borrowed(b) => b.as_bytes(),
            ByteArg::Owned(v) => v,
        }
    }
}

fn byte_arg<'py>(func: &str, data: &Bound<'py, PyAny>) -> PyResult<ByteArg<'py>> {
    if let Ok(b) = data.downcast::<PyBytes>() {
        return Ok(ByteArg::Borrowed(b.clone()));
    }
    if let Ok(b) = data.downcast::<PyByteArray>() {
        return Ok(ByteArg::Owned(b.to_vec()));
    }
    if data.downcast::<PyMemoryView>().is_ok() {
        // tobytes() makes a private, immutable copy (of any view, contiguous or not)
        let copy = data.call_method0("tobytes")?;
        return Ok(ByteArg::Borrowed(copy.downcast_into::<PyBytes>()?));
    }
    let name = data.get_type().name()?;
    Err(PyTypeError::new_err(format!(
        "{func}() needs bytes, bytearray or memoryview, not '{name}'"
    )))
}

/// msgpack encoding of a state tree (byte-identical to
/// `msgpack.packb(obj, use_bin_type=True)`); `canonical=True` sorts map keys.
#[pyfunction]
#[pyo3(signature = (obj, canonical = false))]
fn packb<'py>(
    py: Python<'py>,
    obj: &Bound<'py, PyAny>,
    canonical: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut buf = PACK_BUF.with(|cell| cell.take());
    buf.clear();
    let mut encoder = Encoder::new(py, buf, canonical);
    let result = encoder.encode_root(obj);
    let mut buf = encoder.out;
    let out = match result {
        // SAFETY: the payloads `buf` references belong to objects of `obj`'s
        // tree, alive and unchanged: no Python code has run since the walk.
        Ok(()) => unsafe { assemble(py, &buf) },
        Err(e) => Err(e.into()),
    };
    buf.clear(); // drop the payload pointers before the buffer is kept
    if buf.capacity() <= KEEP_BUFFER_UP_TO {
        PACK_BUF.with(|cell| cell.replace(buf));
    }
    out
}

/// A new bytes object holding the gathered output, written in one pass into
/// uninitialized memory (no zero-fill, no intermediate copy), advised to use
/// huge pages when large.
///
/// # Safety
/// As for [`Gather::copy_to`].
unsafe fn assemble<'py>(py: Python<'py>, buf: &Gather) -> PyResult<Bound<'py, PyBytes>> {
    let len = buf.len();
    let ptr = ffi::PyBytes_FromStringAndSize(std::ptr::null(), len as ffi::Py_ssize_t);
    let obj = Bound::from_owned_ptr_or_err(py, ptr)?;
    let data = ffi::PyBytes_AsString(obj.as_ptr());
    if data.is_null() {
        return Err(PyErr::fetch(py));
    }
    advise_huge(data.cast::<u8>(), len);
    let dst = std::slice::from_raw_parts_mut(data.cast::<u8>(), len);
    if !buf.copy_to(dst) {
        return Err(PyValueError::new_err(
            "internal error: encoded length changed",
        ));
    }
    Ok(obj.downcast_into_unchecked())
}

// The signature above spells MAX_DEPTH as a literal so Python sees `max_depth=512`.
const _: () = assert!(MAX_DEPTH == 512);

/// Decode one msgpack value of a state tree, with bounded depth and allocation.
#[pyfunction]
#[pyo3(signature = (data, *, max_depth = 512))]
fn unpackb<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    max_depth: i64,
) -> PyResult<Bound<'py, PyAny>> {
    let max_depth = match usize::try_from(max_depth) {
        Ok(d) if (1..=HARD_MAX_DEPTH).contains(&d) => d,
        _ => {
            return Err(Error::InvalidArgument(format!(
                "max_depth must be between 1 and {HARD_MAX_DEPTH}, not {max_depth}"
            ))
            .into())
        }
    };
    let arg = byte_arg("unpackb", data)?;
    PyBuilder::new(py).decode(arg.as_slice(), max_depth)
}

/// xxh3-128 (16 big-endian bytes) of the canonical encoding of a state tree,
/// streamed into the hasher without building the encoding.
#[pyfunction]
fn content_hash<'py>(py: Python<'py>, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let mut encoder = Encoder::new(py, Xxh3Sink::new(), true);
    encoder.encode_root(obj)?;
    Ok(PyBytes::new(py, &encoder.out.finish()))
}

fn digest_bytes<'py, const N: usize>(
    py: Python<'py>,
    func: &str,
    data: &Bound<'py, PyAny>,
    digest: fn(&[u8]) -> [u8; N],
) -> PyResult<Bound<'py, PyBytes>> {
    let arg = byte_arg(func, data)?;
    let slice = arg.as_slice();
    let out = if slice.len() >= RELEASE_GIL_AT {
        py.allow_threads(|| digest(slice))
    } else {
        digest(slice)
    };
    Ok(PyBytes::new(py, &out))
}

/// sha256 of bytes (32 bytes); releases the GIL for large inputs.
#[pyfunction]
fn sha256<'py>(py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    digest_bytes(py, "sha256", data, sha256_digest)
}

/// xxh3-128 of bytes (16 big-endian bytes); releases the GIL for large inputs.
#[pyfunction]
fn xxh3_128<'py>(py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    digest_bytes(py, "xxh3_128", data, xxh3_128_digest)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(packb, m)?)?;
    m.add_function(wrap_pyfunction!(unpackb, m)?)?;
    m.add_function(wrap_pyfunction!(content_hash, m)?)?;
    m.add_function(wrap_pyfunction!(sha256, m)?)?;
    m.add_function(wrap_pyfunction!(xxh3_128, m)?)?;
    Ok(())
}
