//! Hashes: xxh3-128 for content identity (fast; inputs are not adversarial and
//! the hash only names content) and sha256 for file checksums.
//! Digests are big-endian bytes, as python's `xxhash.xxh3_128_digest` gives.

use crate::codec::write::Sink;
use sha2::{Digest, Sha256};
use twox_hash::XxHash3_128;

/// xxh3-128 of `data` as 16 big-endian bytes.
pub fn xxh3_128_digest(data: &[u8]) -> [u8; 16] {
    XxHash3_128::oneshot(data).to_be_bytes()
}

/// sha256 of `data`.
pub fn sha256_digest(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Bytes gathered before they are fed to the hasher: small msgpack writes are
/// batched so the streaming hasher sees large blocks.
const HASH_BLOCK: usize = 64 * 1024;
/// Payloads at least this long bypass the block buffer.
const HASH_DIRECT_FROM: usize = 512;

/// A [`Sink`] that hashes what is written with xxh3-128, holding at most one
/// block: a content hash never needs the whole encoding in memory.
pub struct Xxh3Sink {
    hasher: XxHash3_128,
    buf: Vec<u8>,
}

impl Default for Xxh3Sink {
    fn default() -> Self {
        Self::new()
    }
}

impl Xxh3Sink {
    /// An empty hashing sink.
    pub fn new() -> Self {
        Xxh3Sink {
            hasher: XxHash3_128::new(),
            buf: Vec::with_capacity(HASH_BLOCK),
        }
    }

    /// The xxh3-128 digest of everything written, as 16 big-endian bytes.
    pub fn finish(mut self) -> [u8; 16] {
        self.hasher.write(&self.buf);
        self.hasher.finish_128().to_be_bytes()
    }
}

impl Sink for Xxh3Sink {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        if self.buf.len() + bytes.len() > HASH_BLOCK {
            self.hasher.write(&self.buf);
            self.buf.clear();
            if bytes.len() >= HASH_BLOCK {
                self.hasher.write(bytes);
                return;
            }
        }
        self.buf.extend_from_slice(bytes);
    }
    #[inline]
    fn put_marked(&mut self, marker: u8, value: u64, width: usize) {
        if self.buf.len() + 9 > HASH_BLOCK {
            self.hasher.write(&self.buf);
            self.buf.clear();
        }
        crate::codec::write::push_marked(&mut self.buf, marker, value, width);
    }
    /// Large payloads go straight to the hasher (after what is buffered), so
    /// the bulk of a state's text is read once and never copied.
    #[inline]
    unsafe fn put_payload(&mut self, bytes: &[u8]) {
        if bytes.len() < HASH_DIRECT_FROM {
            self.put(bytes);
            return;
        }
        self.hasher.write(&self.buf);
        self.buf.clear();
        self.hasher.write(bytes);
    }
    #[inline]
    fn put_u8(&mut self, byte: u8) {
        if self.buf.len() == HASH_BLOCK {
            self.hasher.write(&self.buf);
            self.buf.clear();
        }
        self.buf.push(byte);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_equals_one_shot() {
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut sink = Xxh3Sink::new();
        let mut i = 0;
        let mut step = 1;
        while i < data.len() {
            let end = (i + step).min(data.len());
            sink.put(&data[i..end]);
            i = end;
            step = (step * 7 + 3) % 100_003;
        }
        assert_eq!(sink.finish(), xxh3_128_digest(&data));
    }

    #[test]
    fn payloads_hash_like_puts() {
        let big = vec![3u8; 5000];
        let mut a = Xxh3Sink::new();
        let mut b = Xxh3Sink::new();
        for _ in 0..3 {
            a.put(b"header");
            b.put(b"header");
            a.put(&big);
            // SAFETY: the sink does not keep the pointer.
            unsafe { b.put_payload(&big) };
            a.put(b"x");
            // SAFETY: as above.
            unsafe { b.put_payload(b"x") };
        }
        assert_eq!(a.finish(), b.finish());
    }

    #[test]
    fn known_digests() {
        // Values from python: xxhash.xxh3_128_digest(b"abc"), hashlib.sha256(b"abc").
        assert_eq!(
            xxh3_128_digest(b"abc"),
            [
                0x06, 0xb0, 0x5a, 0xb6, 0x73, 0x3a, 0x61, 0x85, 0x78, 0xaf, 0x5f, 0x94, 0x89, 0x2f,
                0x39, 0x50
            ]
        );
        assert_eq!(sha256_digest(b"abc")[..4], [0xba, 0x78, 0x16, 0xbf]);
    }
}
