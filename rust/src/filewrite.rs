//! Writing a document's pieces to a file on a second thread while the next
//! piece is encoded, hashing each byte once there (XXH3-128 of every piece for
//! the content checksum; of the pieces outside the modules' span; of each
//! module on its own), and asking the kernel to start the disk writeback every
//! [`WRITEBACK_STEP`] bytes so that the fsync that ends the save is short.
//!
//! The writer owns its own duplicate of the file descriptor, so whatever its
//! caller does with the original (closes it after a failure) can never make a
//! late write land in another file. Buffers go back to the encoder to be
//! reused (their pages are already touched), and at most [`IN_FLIGHT`] wait.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use twox_hash::XxHash3_128;

/// Writeback of written bytes is started every this many bytes.
pub const WRITEBACK_STEP: u64 = 8 << 20;
/// Pieces queued for the writer at most; the encoder waits beyond that.
pub const IN_FLIGHT: usize = 4;
/// A module is hashed twice (whole and its own) in blocks of this size.
const HASH_BLOCK: usize = 128 << 10;
/// Buffers larger than this are freed after use rather than kept for reuse.
const KEEP_BUFFER_UP_TO: usize = 256 << 20;

/// What a piece of the state is, for the hashes it goes into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Outside the modules' span: the whole checksum and the `rest` checksum.
    Rest,
    /// Inside the span but not a module (the "modules" key, the array header).
    Span,
    /// One module: the whole checksum and its own.
    Module,
}

impl Role {
    /// The role numbered as the Python layer numbers it (0, 1, 2).
    pub fn from_code(code: u8) -> Option<Role> {
        match code {
            0 => Some(Role::Rest),
            1 => Some(Role::Span),
            2 => Some(Role::Module),
            _ => None,
        }
    }
}

/// What the writer wrote: the byte count, XXH3-128 of everything, of the
/// `Rest` pieces, and of each `Module` piece in order (16 big-endian bytes each).
#[derive(Debug)]
pub struct Written {
    pub bytes: u64,
    pub whole: [u8; 16],
    pub rest: [u8; 16],
    pub modules: Vec<[u8; 16]>,
}

/// A writing thread fed with owned buffers; see the module docs.
pub struct FileWriter {
    tx: Option<SyncSender<(Vec<u8>, Role)>>,
    free: Receiver<Vec<u8>>,
    failed: Arc<AtomicBool>,
    handle: Option<JoinHandle<io::Result<Written>>>,
}

impl FileWriter {
    /// A writer of `file` (its own descriptor) whose first byte goes at `offset`.
    pub fn new(file: File, offset: u64) -> io::Result<FileWriter> {
        let (tx, rx) = sync_channel(IN_FLIGHT);
        let (free_tx, free) = channel();
        let failed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&failed);
        let handle = std::thread::Builder::new()
            .name("desiru-write".into())
            .spawn(move || run(file, offset, rx, free_tx, flag))?;
        Ok(FileWriter {
            tx: Some(tx),
            free,
            failed,
            handle: Some(handle),
        })
    }

    /// An empty buffer to encode into: a used one when there is one.
    pub fn buffer(&self) -> Vec<u8> {
        self.free.try_recv().unwrap_or_default()
    }

    /// Whether a write has failed (the error comes from [`FileWriter::finish`]).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// A handle to queue pieces with (cloned so it can be used without the writer).
    pub fn sender(&self) -> Option<SyncSender<(Vec<u8>, Role)>> {
        self.tx.clone()
    }

    /// Wait for every queued piece to be written; the first write error, if any.
    pub fn finish(mut self) -> io::Result<Written> {
        self.tx = None;
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the writing thread stopped unexpectedly")),
            None => Err(io::Error::other("the writer was already finished")),
        }
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        self.tx = None; // the thread drains what is queued and stops
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn run(
    file: File,
    base: u64,
    rx: Receiver<(Vec<u8>, Role)>,
    free: Sender<Vec<u8>>,
    failed: Arc<AtomicBool>,
) -> io::Result<Written> {
    let mut whole = XxHash3_128::new();
    let mut rest = XxHash3_128::new();
    let mut modules = Vec::new();
    let mut pos = 0u64;
    let mut synced = 0u64;
    let mut error = None;
    for (mut buf, role) in rx {
        if error.is_none() {
            match role {
                Role::Rest => {
                    whole.write(&buf);
                    rest.write(&buf);
                }
                Role::Span => whole.write(&buf),
                Role::Module => {
                    // both hashes block by block, the second pass over a block still in cache
                    let mut module = XxHash3_128::new();
                    for block in buf.chunks(HASH_BLOCK) {
                        whole.write(block);
                        module.write(block);
                    }
                    modules.push(module.finish_128().to_be_bytes());
                }
            }
            match file.write_all_at(&buf, base + pos) {
                Ok(()) => {
                    pos += buf.len() as u64;
                    if pos - synced >= WRITEBACK_STEP {
                        start_writeback(&file, base + synced, pos - synced);
                        synced = pos;
                    }
                }
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    error = Some(e);
                }
            }
        }
        buf.clear();
        if buf.capacity() <= KEEP_BUFFER_UP_TO {
            let _ = free.send(buf); // the encoder may be gone: then the buffer is simply freed
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(Written {
            bytes: pos,
            whole: whole.finish_128().to_be_bytes(),
            rest: rest.finish_128().to_be_bytes(),
            modules,
        }),
    }
}

/// sync_file_range(SYNC_FILE_RANGE_WRITE): start writing the range to disk,
/// without waiting. A hint; its failure changes nothing (the fsync decides).
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::unix::io::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a plain syscall on a descriptor this writer owns; no memory is passed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::xxh3_128_digest;
    use std::io::Read;

    #[test]
    fn writes_pieces_in_order_at_the_offset_and_hashes_them() {
        let path = std::env::temp_dir().join(format!("desiru-filewrite-{}", std::process::id()));
        let file = File::create(&path).unwrap();
        let writer = FileWriter::new(file.try_clone().unwrap(), 3).unwrap();
        let tx = writer.sender().unwrap();
        tx.send((b"ab".to_vec(), Role::Rest)).unwrap();
        tx.send((b"c".to_vec(), Role::Span)).unwrap();
        tx.send((b"def".to_vec(), Role::Module)).unwrap();
        tx.send((b"g".to_vec(), Role::Rest)).unwrap();
        drop(tx);
        let out = writer.finish().unwrap();
        let mut data = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut data).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(&data, b"\0\0\0abcdefg");
        assert_eq!(out.bytes, 7);
        assert_eq!(out.whole, xxh3_128_digest(b"abcdefg"));
        assert_eq!(out.rest, xxh3_128_digest(b"abg"));
        assert_eq!(out.modules, vec![xxh3_128_digest(b"def")]);
    }

    #[test]
    fn a_module_over_several_hash_blocks_hashes_as_in_one_go() {
        let path =
            std::env::temp_dir().join(format!("desiru-filewrite-big-{}", std::process::id()));
        let writer = FileWriter::new(File::create(&path).unwrap(), 0).unwrap();
        let module: Vec<u8> = (0..HASH_BLOCK * 2 + 12_345)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let tx = writer.sender().unwrap();
        tx.send((b"h".to_vec(), Role::Rest)).unwrap();
        tx.send((module.clone(), Role::Module)).unwrap();
        drop(tx);
        let out = writer.finish().unwrap();
        std::fs::remove_file(&path).unwrap();
        let mut whole = b"h".to_vec();
        whole.extend_from_slice(&module);
        assert_eq!(out.modules, vec![xxh3_128_digest(&module)]);
        assert_eq!(out.whole, xxh3_128_digest(&whole));
    }

    #[test]
    fn a_failed_write_is_reported_by_finish() {
        let path = std::env::temp_dir().join(format!("desiru-filewrite-ro-{}", std::process::id()));
        std::fs::write(&path, b"x").unwrap();
        let read_only = File::open(&path).unwrap();
        let writer = FileWriter::new(read_only, 0).unwrap();
        writer
            .sender()
            .unwrap()
            .send((b"abc".to_vec(), Role::Rest))
            .unwrap();
        assert!(writer.finish().is_err());
        std::fs::remove_file(&path).unwrap();
    }
}
