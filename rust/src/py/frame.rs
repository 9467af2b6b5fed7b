//! Python bindings of the record framing: `frame_encode` and `frame_scan`.
//!
//! Scanning reads the bytes with the GIL released. A `bytes` object (immutable)
//! is scanned in place; any other buffer (bytearray, memoryview, mmap) is first
//! copied into one `bytes`, since another thread could change it meanwhile.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::error::Error;
use crate::frame::{self, HEADER_LEN, MAX_RECORD};
use crate::py::error::named_error;

fn to_pyerr(py: Python<'_>, e: Error) -> PyErr {
    match e {
        // Same text and hint as the Python twin (the shared mapping would add a tree path).
        Error::Unserializable { message, .. } => named_error(
            py,
            "SerializationError",
            message,
            "split the change into smaller events",
        ),
        other => other.into(),
    }
}

/// The bytes of any buffer object, as Python's `memoryview(obj).cast("B").tobytes()`.
/// `bytes` come back as they are; other buffers are copied once (the abi3 build
/// targets Python 3.10, whose limited API has no buffer protocol).
fn as_pybytes<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    if let Ok(b) = obj.downcast::<PyBytes>() {
        return Ok(b.clone());
    }
    let py = obj.py();
    let mv = py
        .import("builtins")?
        .getattr("memoryview")?
        .call1((obj,))?;
    let flat = mv.call_method1("cast", ("B",))?;
    Ok(flat.call_method0("tobytes")?.downcast_into::<PyBytes>()?)
}

/// Encode one record: 24-byte header, then the payload.
#[pyfunction]
fn frame_encode<'py>(
    py: Python<'py>,
    payload: &Bound<'py, PyAny>,
    seq: u64,
    salt: u64,
) -> PyResult<Bound<'py, PyBytes>> {
    let payload = as_pybytes(payload)?;
    let data = payload.as_bytes();
    let header = frame::encode_header(data, seq, salt).map_err(|e| to_pyerr(py, e))?;
    PyBytes::new_with(py, HEADER_LEN + data.len(), |out| {
        let (head, body) = out.split_at_mut(HEADER_LEN);
        head.copy_from_slice(&header);
        body.copy_from_slice(data);
        Ok(())
    })
}

type ScanOut<'py> = (Bound<'py, PyList>, usize, Option<(usize, &'static str)>);

/// Payload bytes checked per GIL-free batch before they are copied out: small
/// enough to still be in the CPU cache when copied, large enough that releasing
/// and taking back the GIL costs nothing measurable.
const BATCH_BYTES: usize = 1 << 20;

/// Scan a buffer of records from `offset`: `(records, good_end, fault)`.
#[pyfunction]
#[pyo3(signature = (buf, salt, offset = 0, max_record = 268_435_456))]
fn frame_scan<'py>(
    py: Python<'py>,
    buf: &Bound<'py, PyAny>,
    salt: u64,
    offset: i64,
    max_record: i64,
) -> PyResult<ScanOut<'py>> {
    let Ok(max_record) = u64::try_from(max_record) else {
        return Err(PyValueError::new_err(format!(
            "max_record must be non-negative, got {max_record}"
        )));
    };
    // Bytes are immutable, so they are scanned in place; any other buffer is
    // copied into one `bytes` first.
    let buf = as_pybytes(buf)?;
    let data = buf.as_bytes();
    let start = usize::try_from(offset)
        .map_err(|_| frame::offset_out_of_range(i128::from(offset), data.len()))
        .map_err(|e| to_pyerr(py, e))?;
    let mut scanner =
        frame::Scanner::new(data, salt, start, max_record).map_err(|e| to_pyerr(py, e))?;
    // Checksums are verified with the GIL released, one batch at a time; each
    // batch's payloads are then copied into `bytes` while still cache-hot.
    let mut items = Vec::new();
    let mut batch = Vec::new();
    loop {
        batch.clear();
        let more = py.allow_threads(|| scanner.next_batch(BATCH_BYTES, &mut batch));
        for r in &batch {
            let payload = data.get(r.payload.clone()).unwrap_or_default();
            items.push((r.seq, r.offset, PyBytes::new(py, payload)).into_pyobject(py)?);
        }
        if !more {
            break;
        }
    }
    let scan = scanner.finish(Vec::new());
    let fault = scan.fault.map(|(off, reason)| (off, reason.as_str()));
    Ok((PyList::new(py, items)?, scan.good_end, fault))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(frame_encode, m)?)?;
    m.add_function(wrap_pyfunction!(frame_scan, m)?)?;
    m.add("MAX_RECORD", MAX_RECORD)?;
    m.add("FRAME_HEADER_LEN", HEADER_LEN)?;
    Ok(())
}
