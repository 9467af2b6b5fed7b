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
    /// Append the payload of a str or bin. A sink may keep a pointer to it
    /// instead of copying (see [`super::gather::Gather`]).
    ///
    /// # Safety
    /// `bytes` must stay alive and unchanged until the sink's output has been
    /// assembled or the sink is cleared.
    #[inline]
    unsafe fn put_payload(&mut self, bytes: &[u8]) {
        self.put(bytes);
    }
    /// Append a marker byte and the low `width` (1, 2, 4 or 8) bytes of
    /// `value`, big-endian: every fixed-size msgpack item.
    #[inline]
    fn put_marked(&mut self, marker: u8, value: u64, width: usize) {
        let b = value.to_be_bytes();
        let mut out = [0u8; 9];
        out[0] = marker;
        out[1..=width].copy_from_slice(&b[8 - width..]);
        self.put(&out[..=width]);
    }
}

/// [`Sink::put_marked`] for a Vec: written in place, not through a temporary
/// array (reading back a just-built array stalls store forwarding).
#[inline(always)]
pub fn push_marked(v: &mut Vec<u8>, marker: u8, value: u64, width: usize) {
    v.reserve(9);
    // SAFETY: 9 bytes of room after `len`; we write 1 + width <= 9 of them.
    unsafe {
        let dst = v.as_mut_ptr().add(v.len());
        *dst = marker;
        let body = dst.add(1);
        match width {
            1 => *body = value as u8,
            2 => std::ptr::write_unaligned(body.cast::<u16>(), (value as u16).to_be()),
            4 => std::ptr::write_unaligned(body.cast::<u32>(), (value as u32).to_be()),
            _ => std::ptr::write_unaligned(body.cast::<u64>(), value.to_be()),
        }
        let width = if matches!(width, 1 | 2 | 4) { width } else { 8 };
        v.set_len(v.len() + 1 + width);
    }
}

/// Append `bytes` to `v`. Short copies (map keys, headers, short values are
/// most of a state tree's writes) are done inline with a few unaligned word
/// moves instead of a call to `memcpy`.
#[inline(always)]
pub fn push_bytes(v: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len();
    if n > 32 {
        v.extend_from_slice(bytes);
        return;
    }
    v.reserve(n);
    // SAFETY: `reserve` made room for `n` more bytes after `len`; every read
    // below stays inside `bytes` and every write inside that room.
    unsafe {
        let src = bytes.as_ptr();
        let dst = v.as_mut_ptr().add(v.len());
        if n >= 16 {
            let a = std::ptr::read_unaligned(src.cast::<u128>());
            let b = std::ptr::read_unaligned(src.add(n - 16).cast::<u128>());
            std::ptr::write_unaligned(dst.cast::<u128>(), a);
            std::ptr::write_unaligned(dst.add(n - 16).cast::<u128>(), b);
        } else if n >= 8 {
            let a = std::ptr::read_unaligned(src.cast::<u64>());
            let b = std::ptr::read_unaligned(src.add(n - 8).cast::<u64>());
            std::ptr::write_unaligned(dst.cast::<u64>(), a);
            std::ptr::write_unaligned(dst.add(n - 8).cast::<u64>(), b);
        } else if n >= 4 {
            let a = std::ptr::read_unaligned(src.cast::<u32>());
            let b = std::ptr::read_unaligned(src.add(n - 4).cast::<u32>());
            std::ptr::write_unaligned(dst.cast::<u32>(), a);
            std::ptr::write_unaligned(dst.add(n - 4).cast::<u32>(), b);
        } else if n > 0 {
            *dst = *src;
            *dst.add(n / 2) = *src.add(n / 2);
            *dst.add(n - 1) = *src.add(n - 1);
        }
        v.set_len(v.len() + n);
    }
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        push_bytes(self, bytes);
    }
    #[inline]
    fn put_u8(&mut self, byte: u8) {
        self.push(byte);
    }
    #[inline]
    fn put_marked(&mut self, marker: u8, value: u64, width: usize) {
        push_marked(self, marker, value, width);
    }
}

/// A str, bin, array or map longer than msgpack's 32-bit lengths allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong(pub usize);

#[inline]
fn marker_u8<S: Sink>(s: &mut S, marker: u8, v: u8) {
    s.put_marked(marker, u64::from(v), 1);
}
#[inline]
fn marker_u16<S: Sink>(s: &mut S, marker: u8, v: u16) {
    s.put_marked(marker, u64::from(v), 2);
}
#[inline]
fn marker_u32<S: Sink>(s: &mut S, marker: u8, v: u32) {
    s.put_marked(marker, u64::from(v), 4);
}
#[inline]
fn marker_u64<S: Sink>(s: &mut S, marker: u8, v: u64) {
    s.put_marked(marker, v, 8);
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
#[inline(always)]
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
#[inline(always)]
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
#[inline(always)]
pub fn write_f64<S: Sink>(s: &mut S, v: f64) {
    marker_u64(s, 0xcb, v.to_bits());
}

/// The header of a str of `len` UTF-8 bytes (str8 is used: `use_bin_type=True`).
#[inline(always)]
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

/// A whole str whose bytes the sink may reference instead of copying.
///
/// # Safety
/// As for [`Sink::put_payload`].
#[inline(always)]
pub unsafe fn write_str_payload<S: Sink>(s: &mut S, v: &[u8]) -> Result<(), TooLong> {
    write_str_header(s, v.len())?;
    s.put_payload(v);
    Ok(())
}

/// A whole bin.
#[inline]
pub fn write_bin<S: Sink>(s: &mut S, v: &[u8]) -> Result<(), TooLong> {
    write_bin_header(s, v.len())?;
    s.put(v);
    Ok(())
}

/// A whole bin whose bytes the sink may reference instead of copying.
///
/// # Safety
/// As for [`Sink::put_payload`].
#[inline(always)]
pub unsafe fn write_bin_payload<S: Sink>(s: &mut S, v: &[u8]) -> Result<(), TooLong> {
    write_bin_header(s, v.len())?;
    s.put_payload(v);
    Ok(())
}

/// The header of a bin of `len` bytes.
#[inline(always)]
pub fn write_bin_header<S: Sink>(s: &mut S, len: usize) -> Result<(), TooLong> {
    if len <= usize::from(u8::MAX) {
        marker_u8(s, 0xc4, len as u8);
    } else if len <= usize::from(u16::MAX) {
        marker_u16(s, 0xc5, len as u16);
    } else if len <= MAX_LEN {
        marker_u32(s, 0xc6, len as u32);
    } else {
        return Err(TooLong(len));
    }
    Ok(())
}

/// The header of an array of `len` items.
#[inline(always)]
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
#[inline(always)]
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
    fn push_bytes_all_short_lengths() {
        let src: Vec<u8> = (0..40u8).collect();
        for n in 0..=40 {
            let mut v = vec![0xee];
            push_bytes(&mut v, &src[..n]);
            assert_eq!(v.len(), n + 1);
            assert_eq!(&v[1..], &src[..n]);
        }
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
