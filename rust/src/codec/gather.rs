//! An output sink that copies each large payload only once.
//!
//! Encoding into a buffer and then copying the buffer into the final `bytes`
//! object moves every byte twice. [`Gather`] copies small writes (headers,
//! numbers, short strings) into its buffer but only records where large str
//! and bin payloads live; [`Gather::copy_to`] then assembles the output in one
//! pass, copying each large payload straight from its source (large outputs
//! in chunks shared by two threads).

use std::sync::atomic::{AtomicUsize, Ordering};

use super::write::Sink;

/// Payloads at least this long are referenced, not copied, until assembly.
pub const GATHER_FROM: usize = 128;

/// Outputs at least this long are advised to use huge pages.
pub const ADVISE_FROM: usize = 4 << 20;
const HUGE_PAGE: usize = 2 << 20;

/// Hint that the `len` bytes at `ptr`, about to be filled for the first time,
/// be backed by transparent huge pages (`madvise(MADV_HUGEPAGE)`): one page
/// fault per 2 MiB instead of per 4 KiB. Filling fresh memory is otherwise
/// dominated by page faults (measured: 112 MB in 60 ms plain, 21-35 ms
/// advised, on the benchmark machine). Only whole 2 MiB pages inside the range
/// are advised, so neighbouring allocations are untouched. A hint: ignored
/// where unsupported, a no-op off Linux and for small ranges.
pub fn advise_huge(ptr: *const u8, len: usize) {
    if len < ADVISE_FROM {
        return;
    }
    let start = (ptr as usize).saturating_add(HUGE_PAGE - 1) & !(HUGE_PAGE - 1);
    let end = (ptr as usize).saturating_add(len) & !(HUGE_PAGE - 1);
    if end <= start {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: [start, end) lies inside the caller's allocation and is page
    // aligned; MADV_HUGEPAGE changes no contents, only how faults are served.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
    }
}

/// A large payload: it goes at `at` in the buffer's byte stream.
#[derive(Clone, Copy)]
struct Piece {
    at: usize,
    ptr: *const u8,
    len: usize,
}

/// Outputs at least this long are assembled by two threads.
pub const PARALLEL_FROM: usize = 16 << 20;
/// The unit of work of the parallel assembly.
const CHUNK: usize = 4 << 20;

/// A chunk of the output, filled by whichever thread takes it.
#[derive(Clone, Copy)]
struct RawDst {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the chunks of the output are disjoint; each is written by the one
// thread that took it.
unsafe impl Send for RawDst {}
// SAFETY: shared only to be read (copied); see Send.
unsafe impl Sync for RawDst {}

impl RawDst {
    /// # Safety
    /// `ptr..ptr+len` must be valid and written by nobody else meanwhile.
    unsafe fn slice<'a>(self) -> &'a mut [u8] {
        std::slice::from_raw_parts_mut(self.ptr, self.len)
    }
}

/// A run of the output: the buffer from `buf_from` to its end, with `pieces`
/// spliced in at their positions.
#[derive(Clone, Copy)]
struct Part<'a> {
    buf: &'a [u8],
    pieces: &'a [Piece],
    buf_from: usize,
}

// SAFETY: a Part only reads: the buffer, and the payloads its pieces point
// to, which the caller of `copy_to` keeps alive and unchanged (the GIL stays
// held, so no Python code can touch them) until both threads are done.
unsafe impl Send for Part<'_> {}
// SAFETY: as for Send: a Part is only read.
unsafe impl Sync for Part<'_> {}

impl Part<'_> {
    /// Copy this run into `dst` (exactly its length).
    ///
    /// # Safety
    /// As for [`Gather::copy_to`].
    unsafe fn copy(&self, dst: &mut [u8]) {
        let mut src_at = self.buf_from;
        let mut dst_at = 0;
        for piece in self.pieces {
            let small = piece.at - src_at;
            dst[dst_at..dst_at + small].copy_from_slice(&self.buf[src_at..piece.at]);
            dst_at += small;
            src_at = piece.at;
            let payload = std::slice::from_raw_parts(piece.ptr, piece.len);
            dst[dst_at..dst_at + piece.len].copy_from_slice(payload);
            dst_at += piece.len;
        }
        dst[dst_at..].copy_from_slice(&self.buf[src_at..]);
    }
}

/// See the module docs. Holds raw pointers between [`Sink::put_payload`] and
/// [`Gather::copy_to`]; [`Gather::clear`] forgets them.
#[derive(Default)]
pub struct Gather {
    buf: Vec<u8>,
    pieces: Vec<Piece>,
    total: usize,
}

impl Gather {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget everything written (keeps the allocations for reuse).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.pieces.clear();
        self.total = 0;
    }

    /// Length of the assembled output.
    pub fn len(&self) -> usize {
        self.total
    }

    /// True if nothing was written.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Capacity held by the internal buffers, in bytes.
    pub fn capacity(&self) -> usize {
        self.buf.capacity() + self.pieces.capacity() * std::mem::size_of::<Piece>()
    }

    /// Assemble the output into `dst`, which must be exactly [`Gather::len`]
    /// bytes long (returns false, writing nothing, otherwise). Large outputs
    /// are assembled by two threads, each filling one half: filling fresh
    /// memory is bound by page faults, which two cores serve in parallel.
    ///
    /// # Safety
    /// Every payload given to [`Sink::put_payload`] since the last
    /// [`Gather::clear`] must still be alive and unchanged until this returns.
    pub unsafe fn copy_to(&self, dst: &mut [u8]) -> bool {
        if dst.len() != self.total {
            return false;
        }
        if self.total < PARALLEL_FROM || self.pieces.len() < 2 {
            let whole = Part {
                buf: &self.buf,
                pieces: &self.pieces,
                buf_from: 0,
            };
            whole.copy(dst);
            return true;
        }
        // Cut the output into chunks of about CHUNK bytes, at piece starts;
        // both threads take the next chunk until none is left, so a helper
        // that starts late (a busy machine) only does less of the work.
        let mut chunks: Vec<(Part<'_>, RawDst)> = Vec::new();
        let mut piece_from = 0; // first piece of the current chunk
        let mut buf_from = 0; // buffer position where the current chunk starts
        let mut out_from = 0; // output position where the current chunk starts
        let mut out_at = 0; // output bytes of the pieces before piece `i`
        let base = dst.as_mut_ptr();
        for (i, piece) in self.pieces.iter().enumerate() {
            let starts_at = out_at + piece.at;
            if i > piece_from && starts_at - out_from >= CHUNK {
                chunks.push((
                    Part {
                        buf: &self.buf[..piece.at],
                        pieces: &self.pieces[piece_from..i],
                        buf_from,
                    },
                    RawDst {
                        ptr: base.add(out_from),
                        len: starts_at - out_from,
                    },
                ));
                piece_from = i;
                buf_from = piece.at;
                out_from = starts_at;
            }
            out_at += piece.len;
        }
        chunks.push((
            Part {
                buf: &self.buf,
                pieces: &self.pieces[piece_from..],
                buf_from,
            },
            RawDst {
                ptr: base.add(out_from),
                len: self.total - out_from,
            },
        ));
        let next = AtomicUsize::new(0);
        let work = || {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((part, out)) = chunks.get(i) else {
                    break;
                };
                // SAFETY: as for this function; chunk `i` is taken by exactly
                // one thread and the chunks' output ranges are disjoint.
                unsafe { part.copy(out.slice()) };
            }
        };
        std::thread::scope(|scope| {
            // spawn_scoped, unlike spawn, reports a failure to start a thread
            // instead of panicking: then this thread simply does every chunk
            let helper = std::thread::Builder::new().spawn_scoped(scope, work);
            work();
            match helper {
                // a panic in the helper would be a bug in `copy`; the bytes
                // are then incomplete, which we report rather than unwind
                Ok(helper) => helper.join().is_ok(),
                Err(_) => true,
            }
        })
    }

    /// The assembled output as a new Vec (for tests and small outputs).
    ///
    /// # Safety
    /// As for [`Gather::copy_to`].
    pub unsafe fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.total];
        self.copy_to(&mut out);
        out
    }
}

impl Sink for Gather {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        super::write::push_bytes(&mut self.buf, bytes);
        self.total += bytes.len();
    }
    #[inline(always)]
    fn put_u8(&mut self, byte: u8) {
        self.buf.push(byte);
        self.total += 1;
    }
    #[inline(always)]
    fn put_marked(&mut self, marker: u8, value: u64, width: usize) {
        let before = self.buf.len();
        super::write::push_marked(&mut self.buf, marker, value, width);
        self.total += self.buf.len() - before;
    }
    #[inline(always)]
    unsafe fn put_payload(&mut self, bytes: &[u8]) {
        if bytes.len() < GATHER_FROM {
            self.put(bytes);
            return;
        }
        self.pieces.push(Piece {
            at: self.buf.len(),
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        });
        self.total += bytes.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembles_large_outputs_in_two_halves() {
        let payloads: Vec<Vec<u8>> = (0..200u32)
            .map(|i| vec![(i % 251) as u8; 100_000 + i as usize])
            .collect();
        let mut g = Gather::new();
        let mut plain = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            for s in [&mut g as &mut dyn Sink, &mut plain as &mut dyn Sink] {
                s.put(&(i as u32).to_be_bytes());
                // SAFETY: payloads outlive the assembly below.
                unsafe { s.put_payload(p) };
            }
        }
        assert!(g.len() >= PARALLEL_FROM);
        // SAFETY: payloads still alive.
        assert!(unsafe { g.to_vec() } == plain);
        // every piece before the middle: the split falls on the last piece
        let mut g = Gather::new();
        let mut plain = Vec::new();
        let tail = vec![5u8; PARALLEL_FROM];
        for s in [&mut g as &mut dyn Sink, &mut plain as &mut dyn Sink] {
            // SAFETY: payloads outlive the assembly below.
            unsafe { s.put_payload(&payloads[0]) };
            s.put(b"mid");
            // SAFETY: as above.
            unsafe { s.put_payload(&tail[..200]) };
            s.put(&tail);
        }
        // SAFETY: payloads still alive.
        assert!(unsafe { g.to_vec() } == plain);
    }

    #[test]
    fn assembles_in_order() {
        let big1 = vec![7u8; 300];
        let big2 = vec![9u8; GATHER_FROM];
        let mut g = Gather::new();
        let mut plain = Vec::new();
        for s in [&mut g as &mut dyn Sink, &mut plain as &mut dyn Sink] {
            s.put(b"ab");
            // SAFETY: big1 and big2 outlive the assembly below.
            unsafe {
                s.put_payload(&big1);
                s.put_payload(b"short");
                s.put_payload(&big2);
            }
            s.put_u8(b'z');
        }
        assert_eq!(g.len(), plain.len());
        // SAFETY: payloads still alive.
        assert_eq!(unsafe { g.to_vec() }, plain);
        let mut wrong = vec![0u8; 3];
        // SAFETY: as above.
        assert!(!unsafe { g.copy_to(&mut wrong) });
        g.clear();
        assert!(g.is_empty());
    }
}
