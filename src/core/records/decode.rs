//! From the stored bytes to the JSON bytes: gzip detection, size limits, and an optional
//! reader that decompresses on its own thread.

use super::{Limits, RecordsError};
use flate2::bufread::MultiGzDecoder;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread;

/// How an object's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    None,
}

/// A size limit was passed; carried inside an [`io::Error`].
#[derive(Debug, thiserror::Error)]
#[error("the {what} is larger than the {limit}-byte limit ({key})")]
pub struct LimitExceeded {
    pub what: &'static str,
    pub limit: u64,
    pub key: &'static str,
}

/// Turns stored bytes (gzip, possibly of several members, or plain JSON) into JSON bytes,
/// enforcing the compressed and decompressed size limits while streaming.
///
/// # Errors
/// [`RecordsError::NotGzipOrJson`] when the bytes are neither, or a read error while sniffing.
pub fn open<R: Read + Send + 'static>(
    src: R,
    limits: &Limits,
) -> Result<(Compression, Box<dyn Read + Send>), RecordsError> {
    let stored = Limited::new(
        src,
        limits.max_object_bytes,
        "compressed object",
        "records.max_object_bytes",
    );
    let (sniffed, stored) =
        sniff(stored).map_err(|source| RecordsError::Read { offset: 0, source })?;
    let mut buffered = BufReader::with_capacity(SNIFF, io::Cursor::new(sniffed).chain(stored));
    let head = buffered
        .fill_buf()
        .map_err(|source| RecordsError::Read { offset: 0, source })?;
    if head.starts_with(&[0x1f, 0x8b]) {
        let json = MultiGzDecoder::new(buffered);
        let limited = Limited::new(
            json,
            limits.max_decompressed_bytes,
            "decompressed document",
            "records.max_decompressed_bytes",
        );
        return Ok((Compression::Gzip, Box::new(limited)));
    }
    let body = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'{') | None) {
        if head.starts_with(b"\xEF\xBB\xBF") {
            buffered.consume(3);
        }
        let limit = limits.max_decompressed_bytes.min(limits.max_object_bytes);
        let limited = Limited::new(
            buffered,
            limit,
            "document",
            "records.max_decompressed_bytes",
        );
        return Ok((Compression::None, Box::new(limited)));
    }
    let prefix = head
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    Err(RecordsError::NotGzipOrJson {
        prefix: format!("bytes {prefix}"),
    })
}

/// Most bytes read to tell gzip from JSON (JSON may start with whitespace).
const SNIFF: usize = 64 * 1024;

/// Reads the first bytes of `src`, as many reads as it takes to tell gzip from JSON: a pipe or
/// a network stream may hand over one byte at a time. Returns them and the rest of the source.
fn sniff<R: Read>(mut src: R) -> io::Result<(Vec<u8>, R)> {
    let mut head = vec![0; SNIFF];
    let mut n = 0;
    while n < SNIFF && !decided(&head[..n]) {
        match src.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(n);
    Ok((head, src))
}

/// Whether `head` is enough to tell the format: the gzip magic, or a byte past an optional
/// UTF-8 byte-order mark and whitespace.
fn decided(head: &[u8]) -> bool {
    if head.len() < 2 {
        return false;
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        return true;
    }
    let body = match head {
        [0xEF, 0xBB, 0xBF, rest @ ..] => rest,
        [0xEF, 0xBB] | [0xEF] => return false,
        _ => head,
    };
    body.iter().any(|b| !b.is_ascii_whitespace())
}

/// A reader that fails once more than `limit` bytes went through it.
struct Limited<R> {
    inner: R,
    left: u64,
    limit: u64,
    what: &'static str,
    key: &'static str,
}

impl<R> Limited<R> {
    fn new(inner: R, limit: u64, what: &'static str, key: &'static str) -> Self {
        Limited {
            inner,
            left: limit,
            limit,
            what,
            key,
        }
    }
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Ask for one byte past the limit so an object of exactly `limit` bytes passes.
        let cap = usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX);
        let len = buf.len().min(cap);
        let n = self.inner.read(&mut buf[..len])?;
        if n as u64 > self.left {
            let e = LimitExceeded {
                what: self.what,
                limit: self.limit,
                key: self.key,
            };
            return Err(io::Error::other(e));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Size of the chunks handed from the decompressing thread to the parser.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight between the threads; bounds the memory of the pipeline.
const DEPTH: usize = 4;

/// Runs `src` on its own thread and returns a reader of its bytes, so decompression and
/// parsing use two cores. Memory stays bounded: at most `DEPTH + 2` chunks of 256 KiB exist.
/// The thread ends when `src` ends, fails, or the returned reader is dropped.
pub fn pipelined<R: Read + Send + 'static>(mut src: R) -> impl Read {
    let (full_tx, full_rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(DEPTH);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(DEPTH + 2);
    thread::spawn(move || loop {
        let mut chunk = empty_rx.try_recv().unwrap_or_else(|_| vec![0; CHUNK]);
        chunk.resize(CHUNK, 0);
        let (n, failure) = read_full(&mut src, &mut chunk);
        if n > 0 {
            chunk.truncate(n);
            if full_tx.send(Ok(chunk)).is_err() {
                return;
            }
        }
        match failure {
            Some(e) => {
                let _ = full_tx.send(Err(e));
                return;
            }
            None if n == 0 => return,
            None => {}
        }
    });
    ChannelReader {
        full: full_rx,
        empty: empty_tx,
        current: Vec::new(),
        at: 0,
        done: false,
    }
}

/// Reads until `buf` is full or the source ends; an error comes with the bytes read before it.
fn read_full<R: Read>(src: &mut R, buf: &mut [u8]) -> (usize, Option<io::Error>) {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

struct ChannelReader {
    full: Receiver<io::Result<Vec<u8>>>,
    empty: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
    done: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            if self.done {
                return Ok(0);
            }
            match self.full.recv() {
                Ok(Ok(next)) => {
                    let used = std::mem::replace(&mut self.current, next);
                    let _ = self.empty.try_send(used);
                    self.at = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
