//! Record framing for the journal: a 24-byte checksummed header, then the payload.
//!
//! Layout (little-endian), documented in docs/FORMAT.md "Record framing":
//! `u32 payload length | u64 seq | u64 xxh3_64(payload, salt) | u32 low32(xxh3_64(header[..20], salt))`.
//! A length is trusted only after the header checksum holds, so a torn or stale
//! header can never make the scanner read (or allocate) past what is there.
//! This module is pure Rust (no PyO3); `py::frame` converts to Python objects.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::ops::Range;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::error::{Error, Result};

/// Size of a record header in bytes.
pub const HEADER_LEN: usize = 24;
/// Largest payload a record may carry (256 MiB); longer claimed lengths are faults.
pub const MAX_RECORD: u64 = 256 * 1024 * 1024;

/// Fault reasons, as reported to callers (same strings in the Python twin).
pub const TORN_HEADER: &str = "torn header";
pub const TORN_PAYLOAD: &str = "torn payload";
pub const BAD_HEADER_CHECKSUM: &str = "bad header checksum";
pub const BAD_PAYLOAD_CHECKSUM: &str = "bad payload checksum";
pub const LENGTH_OVER_LIMIT: &str = "length over limit";
pub const SEQ_NOT_INCREASING: &str = "seq not increasing";

/// Why a record could not be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultReason {
    TornHeader,
    TornPayload,
    BadHeaderChecksum,
    BadPayloadChecksum,
    LengthOverLimit,
    SeqNotIncreasing,
}

impl FaultReason {
    /// The stable text of the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultReason::TornHeader => TORN_HEADER,
            FaultReason::TornPayload => TORN_PAYLOAD,
            FaultReason::BadHeaderChecksum => BAD_HEADER_CHECKSUM,
            FaultReason::BadPayloadChecksum => BAD_PAYLOAD_CHECKSUM,
            FaultReason::LengthOverLimit => LENGTH_OVER_LIMIT,
            FaultReason::SeqNotIncreasing => SEQ_NOT_INCREASING,
        }
    }
}

/// One good record found by [`scan`]: its seq, where it starts, where its payload lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRef {
    pub seq: u64,
    pub offset: usize,
    pub payload: Range<usize>,
}

/// Result of [`scan`]; payloads are ranges into the scanned buffer (no copies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub records: Vec<RecordRef>,
    /// Offset just past the last good record (the start offset if there is none).
    pub good_end: usize,
    /// The first torn or corrupt record: its offset and why.
    pub fault: Option<(usize, FaultReason)>,
}

fn header_checksum(first20: &[u8], salt: u64) -> u32 {
    // Truncation is the documented checksum: the low 32 bits of xxh3_64.
    (xxh3_64_with_seed(first20, salt) & 0xFFFF_FFFF) as u32
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

/// The 24-byte header of a record carrying `payload`.
pub fn encode_header(payload: &[u8], seq: u64, salt: u64) -> Result<[u8; HEADER_LEN]> {
    let len = payload.len();
    if len as u64 > MAX_RECORD {
        return Err(Error::Unserializable {
            path: String::new(),
            message: format!(
                "record payload of {len} bytes exceeds MAX_RECORD ({MAX_RECORD} bytes)"
            ),
        });
    }
    let mut header = [0u8; HEADER_LEN];
    // MAX_RECORD < 2^32, so the length fits in the u32 field.
    header[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    header[4..12].copy_from_slice(&seq.to_le_bytes());
    header[12..20].copy_from_slice(&xxh3_64_with_seed(payload, salt).to_le_bytes());
    let hc = header_checksum(&header[0..20], salt);
    header[20..24].copy_from_slice(&hc.to_le_bytes());
    Ok(header)
}

/// Append one framed record (header + payload) to `out`.
pub fn encode_into(out: &mut Vec<u8>, payload: &[u8], seq: u64, salt: u64) -> Result<()> {
    let header = encode_header(payload, seq, salt)?;
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    Ok(())
}

/// One framed record (header + payload) as a new buffer.
pub fn encode(payload: &[u8], seq: u64, salt: u64) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    encode_into(&mut out, payload, seq, salt)?;
    Ok(out)
}

/// The error for a start offset outside the buffer (same text as the Python twin).
pub fn offset_out_of_range(offset: i128, len: usize) -> Error {
    Error::InvalidArgument(format!(
        "scan offset {offset} is out of range for a buffer of {len} bytes"
    ))
}

/// Outcome of checking the record that starts at one offset.
enum Step {
    End,
    Good(RecordRef),
    Fault(FaultReason),
}

fn check_record(buf: &[u8], pos: usize, salt: u64, max_record: u64) -> Step {
    let Some(rest) = buf.get(pos..) else {
        return Step::End;
    };
    if rest.is_empty() {
        return Step::End;
    }
    let (Some(head20), Some(stored_hc), Some(len), Some(seq), Some(stored_pc)) = (
        rest.get(0..20),
        read_u32(rest, 20),
        read_u32(rest, 0),
        read_u64(rest, 4),
        read_u64(rest, 12),
    ) else {
        return Step::Fault(FaultReason::TornHeader);
    };
    if header_checksum(head20, salt) != stored_hc {
        return Step::Fault(FaultReason::BadHeaderChecksum);
    }
    // Only now is the length trusted, and still capped.
    if u64::from(len) > max_record {
        return Step::Fault(FaultReason::LengthOverLimit);
    }
    let start = pos + HEADER_LEN;
    let Some(end) = start.checked_add(len as usize) else {
        return Step::Fault(FaultReason::TornPayload);
    };
    let Some(payload) = buf.get(start..end) else {
        return Step::Fault(FaultReason::TornPayload);
    };
    if xxh3_64_with_seed(payload, salt) != stored_pc {
        return Step::Fault(FaultReason::BadPayloadChecksum);
    }
    Step::Good(RecordRef {
        seq,
        offset: pos,
        payload: start..end,
    })
}

/// Scan `buf` from `offset` for consecutive records.
///
/// Stops at a clean end of buffer (no fault) or at the first torn or corrupt
/// record, whose offset and reason are returned; everything before it is good.
pub fn scan(buf: &[u8], salt: u64, offset: usize, max_record: u64) -> Result<Scan> {
    let mut scanner = Scanner::new(buf, salt, offset, max_record)?;
    let mut records: Vec<RecordRef> = Vec::new();
    while scanner.next_batch(usize::MAX, &mut records) {}
    Ok(scanner.finish(records))
}

/// A scan taken in batches, so a caller can use each batch's payloads while
/// they are still in the CPU cache (the bindings copy them out between batches).
pub struct Scanner<'a> {
    buf: &'a [u8],
    salt: u64,
    max_record: u64,
    pos: usize,
    last_seq: Option<u64>,
    fault: Option<(usize, FaultReason)>,
    done: bool,
}

impl<'a> Scanner<'a> {
    /// A scanner of `buf` from `offset` (which must lie within the buffer).
    pub fn new(buf: &'a [u8], salt: u64, offset: usize, max_record: u64) -> Result<Self> {
        if offset > buf.len() {
            return Err(offset_out_of_range(offset as i128, buf.len()));
        }
        Ok(Scanner {
            buf,
            salt,
            max_record,
            pos: offset,
            last_seq: None,
            fault: None,
            done: false,
        })
    }

    /// Append good records to `out` until they span at least `budget` bytes or
    /// the scan ends; returns whether there may be more.
    pub fn next_batch(&mut self, budget: usize, out: &mut Vec<RecordRef>) -> bool {
        let start = self.pos;
        while !self.done && self.pos - start < budget {
            match check_record(self.buf, self.pos, self.salt, self.max_record) {
                Step::End => self.done = true,
                Step::Fault(reason) => {
                    self.fault = Some((self.pos, reason));
                    self.done = true;
                }
                Step::Good(rec) => {
                    if self.last_seq.is_some_and(|prev| rec.seq <= prev) {
                        self.fault = Some((self.pos, FaultReason::SeqNotIncreasing));
                        self.done = true;
                    } else {
                        self.last_seq = Some(rec.seq);
                        self.pos = rec.payload.end;
                        out.push(rec);
                    }
                }
            }
        }
        !self.done
    }

    /// The result, given every record the batches produced.
    pub fn finish(self, records: Vec<RecordRef>) -> Scan {
        Scan {
            records,
            good_end: self.pos,
            fault: self.fault,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const SALT: u64 = 0x5EED_0000_1234_5678;

    fn journal(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            encode_into(&mut out, p, i as u64 + 1, SALT).unwrap();
        }
        out
    }

    #[test]
    fn round_trip() {
        let buf = journal(&[b"alpha", b"", b"gamma gamma"]);
        let s = scan(&buf, SALT, 0, MAX_RECORD).unwrap();
        assert_eq!(s.fault, None);
        assert_eq!(s.good_end, buf.len());
        let got: Vec<(u64, &[u8])> = s
            .records
            .iter()
            .map(|r| (r.seq, &buf[r.payload.clone()]))
            .collect();
        assert_eq!(
            got,
            vec![(1, &b"alpha"[..]), (2, &b""[..]), (3, &b"gamma gamma"[..])]
        );
    }

    #[test]
    fn truncation_at_every_offset_of_last_record() {
        let buf = journal(&[b"one", b"two two", b"three three three"]);
        let last = scan(&buf, SALT, 0, MAX_RECORD).unwrap().records[2].offset;
        for cut in last + 1..buf.len() {
            let s = scan(&buf[..cut], SALT, 0, MAX_RECORD).unwrap();
            assert_eq!(s.records.len(), 2);
            assert_eq!(s.good_end, last);
            let want = if cut - last < HEADER_LEN {
                FaultReason::TornHeader
            } else {
                FaultReason::TornPayload
            };
            assert_eq!(s.fault, Some((last, want)));
        }
    }

    #[test]
    fn every_bit_flip_is_caught() {
        let buf = journal(&[b"abc", b"defgh"]);
        for i in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let s = scan(&bad, SALT, 0, MAX_RECORD).unwrap();
            assert!(s.fault.is_some(), "flip of bit {i} went unnoticed");
            let good = scan(&buf, SALT, 0, MAX_RECORD).unwrap();
            for r in &s.records {
                assert!(good.records.contains(r));
            }
        }
    }

    #[test]
    fn other_salt_and_huge_length() {
        let buf = journal(&[b"x"]);
        let s = scan(&buf, SALT ^ 1, 0, MAX_RECORD).unwrap();
        assert_eq!(s.fault, Some((0, FaultReason::BadHeaderChecksum)));
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        h[4..12].copy_from_slice(&7u64.to_le_bytes());
        let hc = header_checksum(&h[0..20], SALT);
        h[20..24].copy_from_slice(&hc.to_le_bytes());
        let s = scan(&h, SALT, 0, MAX_RECORD).unwrap();
        assert_eq!(s.fault, Some((0, FaultReason::LengthOverLimit)));
    }

    #[test]
    fn seq_must_increase_and_offset_checked() {
        let mut buf = Vec::new();
        encode_into(&mut buf, b"a", 5, SALT).unwrap();
        let second = buf.len();
        encode_into(&mut buf, b"b", 5, SALT).unwrap();
        let s = scan(&buf, SALT, 0, MAX_RECORD).unwrap();
        assert_eq!(s.records.len(), 1);
        assert_eq!(s.fault, Some((second, FaultReason::SeqNotIncreasing)));
        let s = scan(&buf, SALT, second, MAX_RECORD).unwrap();
        assert_eq!(
            (s.records.len(), s.records[0].offset, s.fault),
            (1, second, None)
        );
        assert!(scan(&buf, SALT, buf.len() + 1, MAX_RECORD).is_err());
        assert_eq!(
            scan(&buf, SALT, buf.len(), MAX_RECORD).unwrap().good_end,
            buf.len()
        );
    }

    /// Random damage (flips, cuts, splices, forged lengths) never panics and never
    /// returns a record that was not written.
    #[test]
    fn random_damage_never_panics_or_invents_records() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move |m: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % m.max(1) as u64) as usize
        };
        let buf = journal(&[b"first", b"", b"third record", &[7u8; 300]]);
        let good = scan(&buf, SALT, 0, MAX_RECORD).unwrap();
        for _ in 0..5_000 {
            let mut bad = buf.clone();
            for _ in 0..1 + next(3) {
                match next(4) {
                    0 => {
                        let i = next(bad.len());
                        if let Some(b) = bad.get_mut(i) {
                            *b ^= 1 << next(8);
                        }
                    }
                    1 => bad.truncate(next(bad.len() + 1)),
                    2 => {
                        let at = next(bad.len() + 1);
                        let junk: Vec<u8> = (0..1 + next(40)).map(|_| next(256) as u8).collect();
                        bad.splice(at..at, junk);
                    }
                    _ => {
                        let at = next(bad.len());
                        let forged = [u32::MAX, 0, 1 << 31][next(3)].to_le_bytes();
                        for (k, b) in forged.iter().enumerate() {
                            if let Some(slot) = bad.get_mut(at + k) {
                                *slot = *b;
                            }
                        }
                    }
                }
            }
            let offset = next(bad.len() + 1);
            let s = scan(&bad, SALT, offset, MAX_RECORD).unwrap();
            assert!(s.good_end <= bad.len());
            for r in &s.records {
                let payload = &bad[r.payload.clone()];
                assert!(
                    good.records
                        .iter()
                        .any(|g| g.seq == r.seq && &buf[g.payload.clone()] == payload),
                    "a record that was never written came back"
                );
            }
        }
    }

    /// The shared vectors in tests/vectors/frames/, written by the Python twin and
    /// also checked by pytest: both implementations must agree on them.
    #[test]
    fn shared_vectors() {
        let manifest: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/vectors/frames/manifest.json")).unwrap();
        let bin: &[u8] = include_bytes!("../../tests/vectors/frames/records.bin");
        let cases = manifest["cases"].as_array().unwrap();
        assert!(cases.len() >= 5);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let n = |k: &str| case[k].as_u64().unwrap();
            let data = &bin[n("start") as usize..n("end") as usize];
            let s = scan(data, n("salt"), n("offset") as usize, n("max_record")).unwrap();
            let want = case["records"].as_array().unwrap();
            assert_eq!(s.records.len(), want.len(), "{name}");
            for (got, w) in s.records.iter().zip(want) {
                assert_eq!(got.seq, w["seq"].as_u64().unwrap(), "{name}");
                assert_eq!(got.offset as u64, w["offset"].as_u64().unwrap(), "{name}");
                let hex: String = data[got.payload.clone()]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert_eq!(hex, w["payload_hex"].as_str().unwrap(), "{name}");
            }
            assert_eq!(s.good_end as u64, n("good_end"), "{name}");
            let fault = s.fault.map(|(o, r)| (o as u64, r.as_str().to_string()));
            let want_fault = case["fault"]
                .as_array()
                .map(|f| (f[0].as_u64().unwrap(), f[1].as_str().unwrap().to_string()));
            assert_eq!(fault, want_fault, "{name}");
        }
    }
}
