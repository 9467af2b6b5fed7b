//! A bounds-checked msgpack reader and the one decoding walk that enforces the
//! state-tree rules (depth, str keys, no ext, no trailing bytes). What gets
//! built is up to a [`Build`] implementation: Python objects in `py::decode`,
//! [`super::value::Value`] in Rust.

use crate::error::{Error, Result};

/// One msgpack item: a scalar, or the header of a container.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Token<'a> {
    Nil,
    Bool(bool),
    /// Any int that fits i64 (whatever its wire form).
    Int(i64),
    /// An int above `i64::MAX`.
    UInt(u64),
    /// float64, or float32 widened.
    Float(f64),
    /// The raw bytes of a str (not yet validated as UTF-8).
    Str(&'a [u8]),
    Bin(&'a [u8]),
    /// An array header with its item count.
    Array(usize),
    /// A map header with its entry count.
    Map(usize),
}

/// Reads tokens from a byte slice; never reads past the end and never trusts a
/// length beyond the bytes that are left.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    /// Offset of the next byte to read.
    #[inline]
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left after the current position.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// Take `n` bytes of the item that started at `start`.
    #[inline]
    fn take(&mut self, n: usize, start: usize, what: &str) -> Result<&'a [u8]> {
        let left = self.remaining();
        if n > left {
            return Err(Error::corrupt(
                start,
                format!(
                    "truncated {what}: needs {n} more bytes, only {left} left before the end at {}",
                    self.data.len()
                ),
            ));
        }
        let bytes = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    #[inline]
    fn fixed<const N: usize>(&mut self, start: usize, what: &str) -> Result<[u8; N]> {
        let bytes = self.take(N, start, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    #[inline]
    fn len8(&mut self, start: usize, what: &str) -> Result<usize> {
        Ok(usize::from(self.fixed::<1>(start, what)?[0]))
    }
    #[inline]
    fn len16(&mut self, start: usize, what: &str) -> Result<usize> {
        Ok(usize::from(u16::from_be_bytes(self.fixed(start, what)?)))
    }
    #[inline]
    fn len32(&mut self, start: usize, what: &str) -> Result<usize> {
        Ok(u32::from_be_bytes(self.fixed(start, what)?) as usize)
    }

    /// A container header: its count must be coverable by the bytes left
    /// (`min_item` bytes per entry), so a tiny input cannot make us allocate.
    #[inline]
    fn container(&mut self, n: usize, min_item: usize, start: usize, what: &str) -> Result<usize> {
        let left = self.remaining();
        if n.saturating_mul(min_item) > left {
            return Err(Error::corrupt(
                start,
                format!("{what} claims {n} entries but only {left} bytes are left"),
            ));
        }
        Ok(n)
    }

    /// The next token. On error the reader's position is unspecified.
    #[inline]
    pub fn next_token(&mut self) -> Result<Token<'a>> {
        let start = self.pos;
        let Some(&marker) = self.data.get(start) else {
            return Err(Error::corrupt(
                start,
                "unexpected end of data: a value was expected",
            ));
        };
        self.pos += 1;
        let tok = match marker {
            0x00..=0x7f => Token::Int(i64::from(marker)),
            0x80..=0x8f => {
                Token::Map(self.container(usize::from(marker & 0x0f), 2, start, "map")?)
            }
            0x90..=0x9f => {
                Token::Array(self.container(usize::from(marker & 0x0f), 1, start, "array")?)
            }
            0xa0..=0xbf => Token::Str(self.take(usize::from(marker & 0x1f), start, "str")?),
            0xc0 => Token::Nil,
            0xc2 => Token::Bool(false),
            0xc3 => Token::Bool(true),
            0xc4 => {
                let n = self.len8(start, "bin8 header")?;
                Token::Bin(self.take(n, start, "bin")?)
            }
            0xc5 => {
                let n = self.len16(start, "bin16 header")?;
                Token::Bin(self.take(n, start, "bin")?)
            }
            0xc6 => {
                let n = self.len32(start, "bin32 header")?;
                Token::Bin(self.take(n, start, "bin")?)
            }
            0xca => Token::Float(f64::from(f32::from_be_bytes(self.fixed(start, "float32")?))),
            0xcb => Token::Float(f64::from_be_bytes(self.fixed(start, "float64")?)),
            0xcc => Token::Int(i64::from(self.fixed::<1>(start, "uint8")?[0])),
            0xcd => Token::Int(i64::from(u16::from_be_bytes(self.fixed(start, "uint16")?))),
            0xce => Token::Int(i64::from(u32::from_be_bytes(self.fixed(start, "uint32")?))),
            0xcf => {
                let v = u64::from_be_bytes(self.fixed(start, "uint64")?);
                match i64::try_from(v) {
                    Ok(i) => Token::Int(i),
                    Err(_) => Token::UInt(v),
                }
            }
            0xd0 => Token::Int(i64::from(i8::from_be_bytes(self.fixed(start, "int8")?))),
            0xd1 => Token::Int(i64::from(i16::from_be_bytes(self.fixed(start, "int16")?))),
            0xd2 => Token::Int(i64::from(i32::from_be_bytes(self.fixed(start, "int32")?))),
            0xd3 => Token::Int(i64::from_be_bytes(self.fixed(start, "int64")?)),
            0xd9 => {
                let n = self.len8(start, "str8 header")?;
                Token::Str(self.take(n, start, "str")?)
            }
            0xda => {
                let n = self.len16(start, "str16 header")?;
                Token::Str(self.take(n, start, "str")?)
            }
            0xdb => {
                let n = self.len32(start, "str32 header")?;
                Token::Str(self.take(n, start, "str")?)
            }
            0xdc => {
                let n = self.len16(start, "array16 header")?;
                Token::Array(self.container(n, 1, start, "array")?)
            }
            0xdd => {
                let n = self.len32(start, "array32 header")?;
                Token::Array(self.container(n, 1, start, "array")?)
            }
            0xde => {
                let n = self.len16(start, "map16 header")?;
                Token::Map(self.container(n, 2, start, "map")?)
            }
            0xdf => {
                let n = self.len32(start, "map32 header")?;
                Token::Map(self.container(n, 2, start, "map")?)
            }
            0xe0..=0xff => Token::Int(i64::from(marker as i8)),
            0xc1 => {
                return Err(Error::corrupt(
                    start,
                    "reserved marker 0xc1 is never valid msgpack",
                ))
            }
            // 0xc7..=0xc9 and 0xd4..=0xd8: ext types.
            _ => {
                return Err(Error::corrupt(
                    start,
                    format!(
                        "msgpack ext type (marker 0x{marker:02x}) is not allowed in a state tree"
                    ),
                ))
            }
        };
        Ok(tok)
    }
}

/// What a decoding walk builds. `Error` lets a builder add its own failures
/// (e.g. Python's MemoryError) beside the core's.
pub trait Build {
    type Value;
    type Key;
    type Array;
    type Map;
    type Error: From<Error>;

    fn nil(&mut self) -> std::result::Result<Self::Value, Self::Error>;
    fn bool(&mut self, v: bool) -> std::result::Result<Self::Value, Self::Error>;
    fn int(&mut self, v: i64) -> std::result::Result<Self::Value, Self::Error>;
    fn uint(&mut self, v: u64) -> std::result::Result<Self::Value, Self::Error>;
    fn float(&mut self, v: f64) -> std::result::Result<Self::Value, Self::Error>;
    /// A str value; `offset` is where its UTF-8 bytes start (for error offsets).
    fn str(&mut self, v: &[u8], offset: usize) -> std::result::Result<Self::Value, Self::Error>;
    fn bin(&mut self, v: &[u8]) -> std::result::Result<Self::Value, Self::Error>;
    /// A map key (always a msgpack str); `offset` as for [`Build::str`].
    fn key(&mut self, v: &[u8], offset: usize) -> std::result::Result<Self::Key, Self::Error>;
    fn begin_array(&mut self, len: usize) -> std::result::Result<Self::Array, Self::Error>;
    fn push(
        &mut self,
        array: &mut Self::Array,
        index: usize,
        v: Self::Value,
    ) -> std::result::Result<(), Self::Error>;
    fn end_array(&mut self, array: Self::Array) -> std::result::Result<Self::Value, Self::Error>;
    fn begin_map(&mut self, len: usize) -> std::result::Result<Self::Map, Self::Error>;
    fn insert(
        &mut self,
        map: &mut Self::Map,
        k: Self::Key,
        v: Self::Value,
    ) -> std::result::Result<(), Self::Error>;
    fn end_map(&mut self, map: Self::Map) -> std::result::Result<Self::Value, Self::Error>;
}

/// The error for invalid UTF-8 in the str whose bytes start at `offset`.
pub fn utf8_error(bytes: &[u8], offset: usize) -> Error {
    let at = match std::str::from_utf8(bytes) {
        Ok(_) => 0,
        Err(e) => e.valid_up_to(),
    };
    Error::corrupt(offset + at, "invalid UTF-8 in a str")
}

/// An open container of the decoding walk.
enum Frame<B: Build> {
    Array {
        array: B::Array,
        len: usize,
        next: usize,
    },
    Map {
        map: B::Map,
        left: usize,
        key: Option<B::Key>,
    },
}

/// Decode exactly one value from `data` with `builder`. Containers nest at most
/// `max_depth` deep (the root container is depth 1); map keys must be str; ext
/// types and bytes after the value are errors.
///
/// The walk keeps its open containers on a heap stack, not the call stack, so
/// no input and no thread stack size can make it overflow.
pub fn decode<B: Build>(
    data: &[u8],
    max_depth: usize,
    b: &mut B,
) -> std::result::Result<B::Value, B::Error> {
    let mut r = Reader::new(data);
    let mut stack: Vec<Frame<B>> = Vec::new();
    let value = 'next: loop {
        // inside a map, a key comes before each value
        if let Some(Frame::Map { key, .. }) = stack.last_mut() {
            let key_at = r.pos();
            match r.next_token()? {
                Token::Str(k) => *key = Some(b.key(k, r.pos() - k.len())?),
                _ => {
                    return Err(Error::corrupt(
                        key_at,
                        "map key is not a str (state-tree keys are str)",
                    )
                    .into())
                }
            }
        }
        let start = r.pos();
        let mut value = match r.next_token()? {
            Token::Nil => b.nil()?,
            Token::Bool(v) => b.bool(v)?,
            Token::Int(v) => b.int(v)?,
            Token::UInt(v) => b.uint(v)?,
            Token::Float(v) => b.float(v)?,
            Token::Str(v) => b.str(v, r.pos() - v.len())?,
            Token::Bin(v) => b.bin(v)?,
            Token::Array(len) => {
                if stack.len() >= max_depth {
                    return Err(too_deep(start, max_depth).into());
                }
                let array = b.begin_array(len)?;
                if len > 0 {
                    stack.push(Frame::Array {
                        array,
                        len,
                        next: 0,
                    });
                    continue 'next;
                }
                b.end_array(array)?
            }
            Token::Map(left) => {
                if stack.len() >= max_depth {
                    return Err(too_deep(start, max_depth).into());
                }
                let map = b.begin_map(left)?;
                if left > 0 {
                    stack.push(Frame::Map {
                        map,
                        left,
                        key: None,
                    });
                    continue 'next;
                }
                b.end_map(map)?
            }
        };
        // hand the value to its container, closing every container it completes
        loop {
            match stack.last_mut() {
                None => break 'next value,
                Some(Frame::Array { array, len, next }) => {
                    b.push(array, *next, value)?;
                    *next += 1;
                    if *next < *len {
                        continue 'next;
                    }
                }
                Some(Frame::Map { map, left, key }) => {
                    let Some(k) = key.take() else {
                        return Err(Error::corrupt(r.pos(), "map value without a key").into());
                    };
                    b.insert(map, k, value)?;
                    *left -= 1;
                    if *left > 0 {
                        continue 'next;
                    }
                }
            }
            value = match stack.pop() {
                Some(Frame::Array { array, .. }) => b.end_array(array)?,
                Some(Frame::Map { map, .. }) => b.end_map(map)?,
                None => return Err(Error::corrupt(r.pos(), "decoder stack underflow").into()),
            };
        }
    };
    if r.pos() != data.len() {
        return Err(Error::corrupt(
            r.pos(),
            format!(
                "{} trailing bytes after the msgpack value",
                data.len() - r.pos()
            ),
        )
        .into());
    }
    Ok(value)
}

fn too_deep(start: usize, max_depth: usize) -> Error {
    Error::corrupt(
        start,
        format!("containers nest deeper than max_depth={max_depth}"),
    )
}
