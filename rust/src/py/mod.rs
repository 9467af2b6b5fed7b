//! PyO3 bindings: conversion between Python objects and the core, nothing else.
//! `error` is the one place core errors become desiru's Python exceptions.

pub mod codec;
pub(crate) mod decode;
pub mod diff;
pub(crate) mod encode;
pub mod error;
#[cfg(unix)]
pub mod filewrite;
pub mod frame;
