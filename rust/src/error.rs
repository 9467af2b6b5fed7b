//! The one error type of the core. It carries no PyO3 types; `py::error` is the
//! single place that turns it into desiru's Python exceptions.

use std::fmt;

/// Everything the core can fail with. Each variant says what and where; the
/// Python layer adds the hint of what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Bytes are malformed (truncated, bad marker, bad length, bad UTF-8, too
    /// deep, trailing data, checksum mismatch). `offset` is the byte offset in
    /// the input where the problem was found. -> `desiru.CorruptDataError`.
    Corrupt { offset: usize, message: String },
    /// A value cannot be written into a state tree. `path` locates it in the
    /// tree (e.g. `modules[0].demos[3].answer`, empty for the root).
    /// -> `desiru.SerializationError`.
    Unserializable { path: String, message: String },
    /// An argument is outside what the function accepts. -> `ValueError`.
    InvalidArgument(String),
}

impl Error {
    /// A malformed-bytes error at `offset`.
    pub fn corrupt(offset: usize, message: impl Into<String>) -> Self {
        Error::Corrupt {
            offset,
            message: message.into(),
        }
    }

    /// The byte offset of a `Corrupt` error, if it is one.
    pub fn offset(&self) -> Option<usize> {
        match self {
            Error::Corrupt { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Corrupt { offset, message } => write!(f, "offset {offset}: {message}"),
            Error::Unserializable { path, message } if path.is_empty() => f.write_str(message),
            Error::Unserializable { path, message } => write!(f, "{message} at {path}"),
            Error::InvalidArgument(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

/// Result type of the core.
pub type Result<T> = std::result::Result<T, Error>;
