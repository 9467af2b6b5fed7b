//! msgpack for state trees: writer primitives, a bounds-checked reader and a
//! plain-Rust value tree used by the Rust tests and vectors.
//!
//! The bytes are exactly those of `msgpack.packb(obj, use_bin_type=True)`:
//! smallest int form (non-negative ints use the unsigned forms), floats always
//! as float64, str as fixstr/str8/str16/str32, bytes as bin8/16/32.
//! No PyO3 here: `py::encode` / `py::decode` walk Python objects with these.

pub mod gather;
pub mod read;
pub mod value;
pub mod write;

/// Default and largest nesting depth of containers (the root container is at
/// depth 1). The msgpack package's own limits are 1024, so every tree within
/// ours also round-trips through the pure-Python twin.
pub const MAX_DEPTH: usize = 512;
/// The largest `max_depth` a caller may ask `unpackb` for.
pub const HARD_MAX_DEPTH: usize = 1024;
/// Longest str, bin, array or map msgpack can describe (32-bit lengths).
pub const MAX_LEN: usize = u32::MAX as usize;
