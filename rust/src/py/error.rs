//! The one place where core errors become desiru's Python exceptions.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::{import_exception, PyTypeInfo};

use crate::error::Error;

import_exception!(desiru.errors, CorruptDataError);
import_exception!(desiru.errors, SerializationError);

const CORRUPT_HINT: &str =
    "the bytes are damaged, truncated or not a desiru msgpack document; restore them from a good copy";
const UNSERIALIZABLE_HINT: &str =
    "a state tree holds only dict (str keys), list, tuple, str, int, float, \
     bool, None and bytes; convert the value (e.g. str() it or make it a dict) before saving";

/// Call a desiru exception class with its message and keyword arguments, so
/// Rust raises exactly what Python code would.
fn desiru_error(
    ty: &Bound<'_, pyo3::types::PyType>,
    message: String,
    kwargs: &[(&str, PyObject)],
) -> PyErr {
    let py = ty.py();
    let build = || -> PyResult<PyErr> {
        let kw = PyDict::new(py);
        for (k, v) in kwargs {
            kw.set_item(k, v)?;
        }
        Ok(PyErr::from_value(ty.call((message,), Some(&kw))?))
    };
    match build() {
        Ok(err) | Err(err) => err,
    }
}

/// Raise a desiru exception (by class name in `desiru.errors`) with a hint.
///
/// For the errors the core's `Error` enum does not carry (payload size limits
/// in `py::frame`, unfit edits in `py::diff`); everything else goes through
/// `From<Error> for PyErr` below.
pub(crate) fn named_error(py: Python<'_>, class: &str, message: String, hint: &str) -> PyErr {
    let make = || -> PyResult<PyErr> {
        let cls = py.import("desiru.errors")?.getattr(class)?;
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("hint", hint)?;
        Ok(PyErr::from_value(
            cls.call((message.clone(),), Some(&kwargs))?,
        ))
    };
    make().unwrap_or_else(|e| e)
}

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        Python::with_gil(|py| match e {
            Error::Corrupt { offset, message } => desiru_error(
                &CorruptDataError::type_object(py),
                message,
                &[
                    (
                        "offset",
                        offset
                            .into_pyobject(py)
                            .map_or_else(|_| py.None(), |o| o.into_any().unbind()),
                    ),
                    (
                        "hint",
                        CORRUPT_HINT
                            .into_pyobject(py)
                            .map_or_else(|_| py.None(), |o| o.into_any().unbind()),
                    ),
                ],
            ),
            Error::Unserializable { path, message } => {
                let text = if path.is_empty() {
                    format!("{message} at the root of the tree")
                } else {
                    format!("{message} at {path}")
                };
                desiru_error(
                    &SerializationError::type_object(py),
                    text,
                    &[(
                        "hint",
                        UNSERIALIZABLE_HINT
                            .into_pyobject(py)
                            .map_or_else(|_| py.None(), |o| o.into_any().unbind()),
                    )],
                )
            }
            Error::InvalidArgument(message) => PyValueError::new_err(message),
        })
    }
}
