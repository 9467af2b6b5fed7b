//! PyO3 bindings: conversion between Python objects and the core, nothing else.

pub mod codec;
pub mod diff;
pub mod frame;
