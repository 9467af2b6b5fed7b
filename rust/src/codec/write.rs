//! msgpack writer primitives over any byte [`Sink`].

use super::MAX_LEN;

/// Where encoded bytes go: a `Vec<u8>`, or a hasher fed as we go (so a content
/// hash never needs the whole encoding in memory).
pub trait Sink {
    /// Append bytes.
    fn put(&mut self, bytes: &[u8]);
    /// Append one byte.
    #[inline]
    fn put_u8(&mut self, byte: u8) {
        self.put(&[byte]);
    }
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    #[inline]
    fn put_u8(&mut self, byte: u8) {
        self.push(byte);
    }
}

/// A str, bin, array or map longer than msgpack's 32-bit lengths allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong(pub usize);

#[inline]
fn marker_u8<S: Sink>(s: &mut S, marker: u8, v: u8) {
    s.put(&[marker, v]);
}
#[inline]
fn marker_u16<S: Sink>(s: &mut S, marker: u8, v: u16) {
    let b = v.to_be_bytes();
    s.put(&[marker, b[0], b[1]]);
}
#[inline]
fn marker_u32<S: Sink>(s: &mut S, marker: u8, v: u32) {
    let b = v.to_be_bytes();
    s.put(&[marker, b[0], b[1], b[2], b[3]]);
}
#[inline]
fn marker_u64<S: Sink>(s: &mut S, marker: u8, v: u64) {
    let b = v.to_be_bytes();
    s.put(&[marker, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
}

/// `nil`.
#[inline]
pub fn write_nil<S: Sink>(s: &mut S) {
    s.put_u8(0xc0);
}

/// `true` / `false`.
#[inline]
pub fn write_bool<S: Sink>(s: &mut S, v: bool) {
    s.put_u8(if v { 0xc3 } else { 0xc2 });
}

/// A non-negative int in its smallest unsigned form (as msgpack-python does).
#[inline]
pub fn write_uint<S: Sink>(s: &mut S, v: u64) {
    if v < 0x80 {
        s.put_u8(v as u8);
    } else if v <= u64::from(u8::MAX) {
        marker_u8(s, 0xcc, v as u8);
    } else if v <= u64::from(u16::MAX) {
        marker_u16(s, 0xcd, v as u16);
    } else if v <= u64::from(u32::MAX) {
        marker_u32(s, 0xce, v as u32);
    } else {
        marker_u64(s, 0xcf, v);
    }
}

/// A signed int: non-negative values take the unsigned forms, negative values
/// the smallest of negative fixint, int8, int16, int32, int64.
#[inline]
pub fn write_int<S: Sink>(s: &mut S, v: i64) {
    if v >= 0 {
        write_uint(s, v as u64);
    } else if v >= -32 {
        s.put_u8(v as u8);
    } else if v >= i64::from(i8::MIN) {
        marker_u8(s, 0xd0, v as u8);
    } else if v >= i64::from(i16::MIN) {
        marker_u16(s, 0xd1, v as u16);
    } else if v >= i64::from(i32::MIN) {
        marker_u32(s, 0xd2, v as u32);
    } else {
        marker_u64(s, 0xd3, v as u64);
    }
}

/// A float, always as float64 (bit-exact: -0.0 and NaN payloads are kept).
#[inline]
pub fn write_f64<S: Sink>(s: &mut S, v: f64) {
    marker_u64(s, 0xcb, v.to_bits());
}

/// The header of a str of `len` UTF-8 bytes (str8 is used: `use_bin_type=True`).
#[inline]
pub fn write_str_header<S: Sink>(s: &mut S, len: usize) -> Result<(), TooLong> {
    if len < 32 {
        s.put_u8(0xa0 | len as u8);
    } else if len <= usize::from(u8::MAX) {
        marker_u8(s, 0xd9, len as u8);
    } else if len <= usize::from(u16::MAX) {
        marker_u16(s, 0xda, len as u16);
    } else if len <= MAX_LEN {
        marker_u32(s, 0xdb, len as u32);
    } else {
        return Err(TooLong(len));
    }
    Ok(())
}

/// A whole str.
#[inline]
pub fn write_str<S: Sink>(s: &mut S, v: &[u8]) -> Result<(), TooLong> {
    write_str_header(s, v.len())?;
    s.put(v);
    Ok(())
}

/// A whole bin.
#[inline]
pub fn write_bin<S: Sink>(s: &mut S, v: &[u8]) -> Result<(), TooLong> {
    let len = v.len();
    if len <= usize::from(u8::MAX) {
        marker_u8(s, 0xc4, len as u8);
    } else if len <= usize::from(u16::MAX) {
        marker_u16(s, 0xc5, len as u16);
    } else if len <= MAX_LEN {
        marker_u32(s, 0xc6, len as u32);
    } else {
        return Err(TooLong(len));
    }
    s.put(v);
    Ok(())
}

/// The header of an array of `len` items.
#[inline]
pub fn write_array_header<S: Sink>(s: &mut S, len: usize) -> Result<(), TooLong> {
    if len < 16 {
        s.put_u8(0x90 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        marker_u16(s, 0xdc, len as u16);
    } else if len <= MAX_LEN {
        marker_u32(s, 0xdd, len as u32);
    } else {
        return Err(TooLong(len));
    }
    Ok(())
}

/// The header of a map of `len` entries.
#[inline]
pub fn write_map_header<S: Sink>(s: &mut S, len: usize) -> Result<(), TooLong> {
    if len < 16 {
        s.put_u8(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        marker_u16(s, 0xde, len as u16);
    } else if len <= MAX_LEN {
        marker_u32(s, 0xdf, len as u32);
    } else {
        return Err(TooLong(len));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut v = Vec::new();
        f(&mut v);
        v
    }

    #[test]
    fn int_forms() {
        assert_eq!(enc(|s| write_int(s, 0)), [0x00]);
        assert_eq!(enc(|s| write_int(s, 127)), [0x7f]);
        assert_eq!(enc(|s| write_int(s, 128)), [0xcc, 0x80]);
        assert_eq!(enc(|s| write_int(s, 256)), [0xcd, 0x01, 0x00]);
        assert_eq!(enc(|s| write_int(s, -32)), [0xe0]);
        assert_eq!(enc(|s| write_int(s, -33)), [0xd0, 0xdf]);
        assert_eq!(enc(|s| write_int(s, -129)), [0xd1, 0xff, 0x7f]);
        assert_eq!(enc(|s| write_int(s, i64::MIN))[0], 0xd3);
        assert_eq!(
            enc(|s| write_uint(s, u64::MAX)),
            [0xcf, 255, 255, 255, 255, 255, 255, 255, 255]
        );
    }

    #[test]
    fn length_forms() {
        assert_eq!(enc(|s| write_str(s, &[b'a'; 31]).unwrap_or(()))[0], 0xbf);
        assert_eq!(
            enc(|s| write_str(s, &[b'a'; 32]).unwrap_or(()))[..2],
            [0xd9, 32]
        );
        assert_eq!(enc(|s| write_bin(s, &[]).unwrap_or(())), [0xc4, 0]);
        assert_eq!(
            enc(|s| write_array_header(s, 16).unwrap_or(())),
            [0xdc, 0, 16]
        );
        assert_eq!(enc(|s| write_map_header(s, 15).unwrap_or(())), [0x8f]);
        assert_eq!(
            write_map_header(&mut Vec::new(), MAX_LEN + 1),
            Err(TooLong(MAX_LEN + 1))
        );
    }
}
