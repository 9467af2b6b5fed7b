//! `desiru._native`: the hot paths of desiru (msgpack codec, canonical hashing,
//! record framing, structural diff, writing a document while it is encoded).
//!
//! The core modules (`codec`, `hash`, `frame`, `diff`, `error`) hold the logic;
//! `py` is the thin PyO3 layer that converts between Python objects and the core
//! and maps core errors to desiru's Python exceptions in one place.

// Input-derived data must never panic across FFI: no unwrap/expect outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod codec;
pub mod diff;
pub mod error;
#[cfg(unix)]
pub mod filewrite;
pub mod frame;
pub mod hash;
mod py;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    py::codec::register(m)?;
    py::frame::register(m)?;
    py::diff::register(m)?;
    #[cfg(unix)]
    py::filewrite::register(m)?;
    Ok(())
}
