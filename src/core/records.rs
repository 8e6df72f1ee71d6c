//! Streams CloudTrail records out of a `{"Records":[...]}` document, one at a time.
//!
//! The input is a byte stream (gzip or plain JSON, see [`open`]). The document is never held
//! whole: bytes go through a buffer that only needs to hold the record being parsed, and each
//! element of `Records` is parsed in place, borrowing its strings from the buffer. Only the
//! fields the filter and the mapping need are read; nested objects stay raw JSON
//! ([`RawValue`]) until a kept record needs them.
//!
//! A record of the wrong shape (not an object, no `eventID`, ...) is not an error here: it is
//! handed on and the [`filter`](crate::core::filter) counts it as malformed. Broken JSON, a truncated
//! stream or a limit overrun is an error that carries the byte offset; the records handed on
//! before it stay handed on (the caller decides their fate).
//!
//! This module must never panic on its input and never allocate in proportion to the file.

mod decode;
mod fields;

pub use decode::{open, pipelined, Compression};
pub use fields::{Lenient, Malformed, Presence, Record, RecordKey};

use serde::de::{Deserialize, DeserializeOwned, IgnoredAny};
use serde_json::Deserializer;
use std::io::{self, Read};

/// Limits that keep one object from taking unbounded time or memory (`[records]` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest compressed object accepted, in bytes.
    pub max_object_bytes: u64,
    /// Largest decompressed document accepted, in bytes (gzip bombs).
    pub max_decompressed_bytes: u64,
    /// Largest single record accepted, in bytes; also bounds the parse buffer.
    pub max_record_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_object_bytes: 1 << 30,
            max_decompressed_bytes: 8 << 30,
            max_record_bytes: 4 << 20,
        }
    }
}

/// Why a document could not be read to its end. Offsets count decompressed bytes.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// The byte stream failed: truncated or corrupt gzip, an I/O error, a size limit.
    #[error("reading failed at byte {offset} of the decompressed stream: {source}")]
    Read { offset: u64, source: io::Error },
    /// The JSON is not well formed.
    #[error("broken JSON at byte {offset}: {detail}")]
    Json { offset: u64, detail: String },
    /// The stream ended inside the document.
    #[error("the document ends early at byte {offset} (truncated file?)")]
    Truncated { offset: u64 },
    /// The JSON is well formed but is not a CloudTrail log document.
    #[error("not a CloudTrail log file at byte {offset}: {detail}")]
    NotCloudTrail { offset: u64, detail: String },
    /// One record is larger than `records.max_record_bytes`.
    #[error("record {index} at byte {offset} is larger than the {limit}-byte limit (records.max_record_bytes)")]
    RecordTooLarge {
        index: u64,
        offset: u64,
        limit: usize,
    },
    /// The stream is neither gzip nor JSON.
    #[error("neither gzip nor JSON (starts with {prefix})")]
    NotGzipOrJson { prefix: String },
}

impl RecordsError {
    /// Whether the error comes from the byte source (network, disk) rather than the content:
    /// such a failure may go away on a retry, a content error will not.
    pub fn is_source_failure(&self) -> bool {
        match self {
            RecordsError::Read { source, .. } => {
                !matches!(
                    source.kind(),
                    io::ErrorKind::InvalidData
                        | io::ErrorKind::InvalidInput
                        | io::ErrorKind::UnexpectedEof
                ) && !is_limit_error(source)
            }
            _ => false,
        }
    }
}

/// Whether an I/O error is one of our own size limits (see [`decode`]).
pub fn is_limit_error(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<decode::LimitExceeded>())
}

/// One element of the `Records` array, in document order.
// Not boxed: one element exists at a time and boxing would allocate once per record.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Element<'a> {
    /// A JSON object: a record, whose fields are not validated yet.
    Record(Record<'a>),
    /// Any other JSON value (string, number, array, ...): malformed.
    NotAnObject,
    /// Well-formed JSON whose fields the reader cannot take (a number beyond `f64` in a field
    /// the filter reads): malformed, and only this record is lost.
    Unreadable,
}

/// Where the reader is in the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the opening `{`.
    Start,
    /// Inside the top-level object, expecting a key or `}`; `first` before any member.
    Members { first: bool },
    /// Inside `Records`, expecting an element or `]`; `first` before any element.
    Elements { first: bool },
    /// After the closing `}`: only whitespace may follow.
    End,
}

/// Reads the elements of `Records` from decompressed bytes.
pub struct RecordReader<R> {
    src: R,
    buf: Vec<u8>,
    /// First unconsumed byte of `buf`.
    pos: usize,
    /// End of the filled part of `buf`.
    filled: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    eof: bool,
    state: State,
    seen_records: bool,
    index: u64,
    max_record: usize,
}

/// How much to read from the source at a time.
const CHUNK: usize = 256 * 1024;

impl<R: Read> RecordReader<R> {
    /// A reader over decompressed JSON bytes, with `max_record_bytes` bounding one element.
    pub fn new(src: R, max_record_bytes: usize) -> Self {
        RecordReader {
            src,
            buf: vec![0; CHUNK.min(max_record_bytes.max(1024)) * 2],
            pos: 0,
            filled: 0,
            base: 0,
            eof: false,
            state: State::Start,
            seen_records: false,
            index: 0,
            max_record: max_record_bytes,
        }
    }

    /// Decompressed bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Calls `each` with every element of `Records` and its index, in order, until the
    /// document ends or `each` returns an error.
    ///
    /// # Errors
    /// A [`RecordsError`] for a broken document; the elements before it were handed on.
    /// An error from `each` is returned as is.
    pub fn for_each<E, F>(&mut self, mut each: F) -> Result<(), E>
    where
        F: FnMut(u64, Element<'_>) -> Result<(), E>,
        E: From<RecordsError>,
    {
        loop {
            match self.state {
                State::Start => self.open_document()?,
                State::Members { first } => {
                    if first {
                        self.state = State::Members { first: false };
                    }
                    self.member(first)?;
                }
                State::Elements { first } => {
                    self.state = match self.element(first, &mut each)? {
                        true => State::Elements { first: false },
                        false => State::Members { first: false },
                    };
                }
                State::End => return Ok(self.finish()?),
            }
        }
    }

    fn open_document(&mut self) -> Result<(), RecordsError> {
        let b = self.peek_token()?;
        if b != Some(b'{') {
            return Err(self.not_cloudtrail("the document is not a JSON object"));
        }
        self.pos += 1;
        self.state = State::Members { first: true };
        Ok(())
    }

    /// Reads one top-level member: `Records` opens the array, anything else is skipped.
    fn member(&mut self, first: bool) -> Result<(), RecordsError> {
        match self.peek_token()? {
            Some(b'}') => {
                self.pos += 1;
                self.state = State::End;
                return Ok(());
            }
            Some(b',') if !first => self.pos += 1,
            Some(_) if first => {}
            Some(_) => return Err(self.json_error("expected `,` or `}` after a member")),
            None => return Err(self.truncated()),
        }
        let is_records = self.key()?;
        if is_records {
            match self.peek_token()? {
                Some(b'[') => {
                    self.pos += 1;
                    self.seen_records = true;
                    self.state = State::Elements { first: true };
                }
                Some(b'n') => {
                    // "Records": null holds no records.
                    self.seen_records = true;
                    self.skip_value()?;
                }
                Some(_) => return Err(self.not_cloudtrail("`Records` is not an array")),
                None => return Err(self.truncated()),
            }
        } else {
            self.skip_value()?;
        }
        Ok(())
    }

    /// Reads a member key and its `:`; true when the key is `Records`.
    fn key(&mut self) -> Result<bool, RecordsError> {
        if self.peek_token()? != Some(b'"') {
            return Err(self.json_error("expected a member name"));
        }
        let fields::IsRecords(key) = self.parse_owned()?;
        if self.peek_token()? != Some(b':') {
            return Err(self.json_error("expected `:` after a member name"));
        }
        self.pos += 1;
        Ok(key)
    }

    fn skip_value(&mut self) -> Result<(), RecordsError> {
        self.parse_owned::<IgnoredAny>().map(|_| ())
    }

    /// Hands on the next element; false at the closing `]`.
    fn element<E, F>(&mut self, first: bool, each: &mut F) -> Result<bool, E>
    where
        F: FnMut(u64, Element<'_>) -> Result<(), E>,
        E: From<RecordsError>,
    {
        match self.peek_token()? {
            Some(b']') => {
                self.pos += 1;
                return Ok(false);
            }
            Some(b',') if !first => {
                self.pos += 1;
                if self.peek_token()? == Some(b']') {
                    return Err(self.json_error("trailing `,` before `]`").into());
                }
            }
            Some(_) if first => {}
            Some(_) => return Err(self.json_error("expected `,` or `]` after a record").into()),
            None => return Err(self.truncated().into()),
        }
        let index = self.index;
        self.index += 1;
        loop {
            match parse_step::<Element<'_>>(&self.buf[self.pos..self.filled], self.eof) {
                Step::Value(element, used) => {
                    let handed = each(index, element);
                    self.pos += used;
                    return handed.map(|()| true);
                }
                Step::NeedMore => self.fill().map_err(|e| match e {
                    RecordsError::RecordTooLarge { offset, limit, .. } => {
                        RecordsError::RecordTooLarge {
                            index,
                            offset,
                            limit,
                        }
                    }
                    other => other,
                })?,
                Step::Truncated => return Err(self.truncated().into()),
                Step::Broken(e) => {
                    // Valid JSON that the record type refused costs only this record; bytes
                    // that are not JSON end the object.
                    let broken = self.serde_error(&e);
                    let Ok(()) = self.skip_value() else {
                        return Err(broken.into());
                    };
                    each(index, Element::Unreadable)?;
                    return Ok(true);
                }
            }
        }
    }

    /// After the document: only whitespace may follow.
    fn finish(&mut self) -> Result<(), RecordsError> {
        match self.peek_token()? {
            None if self.seen_records => Ok(()),
            None => Err(self.not_cloudtrail("the document has no `Records` array")),
            Some(_) => Err(self.json_error("unexpected bytes after the document")),
        }
    }

    /// Parses one owned value at `pos`, reading more input as needed.
    fn parse_owned<T: DeserializeOwned>(&mut self) -> Result<T, RecordsError> {
        loop {
            match parse_step::<T>(&self.buf[self.pos..self.filled], self.eof) {
                Step::Value(value, used) => {
                    self.pos += used;
                    return Ok(value);
                }
                Step::NeedMore => self.fill()?,
                Step::Truncated => return Err(self.truncated()),
                Step::Broken(e) => return Err(self.serde_error(&e)),
            }
        }
    }

    /// Skips whitespace and returns the next byte without consuming it (`None` at the end).
    fn peek_token(&mut self) -> Result<Option<u8>, RecordsError> {
        loop {
            while self.pos < self.filled {
                let b = self.buf[self.pos];
                if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                    return Ok(Some(b));
                }
                self.pos += 1;
            }
            if self.eof {
                return Ok(None);
            }
            self.fill()?;
        }
    }

    /// Reads more input into the buffer, making room by dropping consumed bytes or growing
    /// the buffer up to the record limit.
    fn fill(&mut self) -> Result<(), RecordsError> {
        if self.pos > 0 && self.filled - self.pos < self.buf.len() / 2 {
            self.buf.copy_within(self.pos..self.filled, 0);
            self.filled -= self.pos;
            self.base += self.pos as u64;
            self.pos = 0;
        }
        if self.filled == self.buf.len() {
            let pending = self.filled - self.pos;
            if pending > self.max_record {
                return Err(RecordsError::RecordTooLarge {
                    index: self.index,
                    offset: self.offset(),
                    limit: self.max_record,
                });
            }
            let grown = (self.buf.len() * 2)
                .min(self.max_record + CHUNK)
                .max(self.buf.len() + CHUNK);
            self.buf.resize(grown, 0);
        }
        let filled = self.filled;
        match read_retrying(&mut self.src, &mut self.buf[filled..]) {
            Ok(0) => self.eof = true,
            Ok(n) => self.filled += n,
            Err(source) => {
                return Err(RecordsError::Read {
                    offset: self.base + self.filled as u64,
                    source,
                })
            }
        }
        Ok(())
    }

    fn truncated(&self) -> RecordsError {
        RecordsError::Truncated {
            offset: self.base + self.filled as u64,
        }
    }

    fn json_error(&self, detail: &str) -> RecordsError {
        RecordsError::Json {
            offset: self.offset(),
            detail: detail.to_owned(),
        }
    }

    fn not_cloudtrail(&self, detail: &str) -> RecordsError {
        RecordsError::NotCloudTrail {
            offset: self.offset(),
            detail: detail.to_owned(),
        }
    }

    /// Turns a serde error inside the window at `pos` into one with a stream offset.
    fn serde_error(&self, e: &serde_json::Error) -> RecordsError {
        let window = &self.buf[self.pos..self.filled];
        let at = offset_of_line_column(window, e.line(), e.column());
        RecordsError::Json {
            offset: self.offset() + at as u64,
            detail: strip_position(&e.to_string()),
        }
    }
}

/// Reads, retrying on `Interrupted`.
fn read_retrying<R: Read>(src: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match src.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// The outcome of one attempt to parse a value at the start of a window.
enum Step<T> {
    /// A complete value and the bytes it used.
    Value(T, usize),
    /// The value may continue past the window: read more and try again.
    NeedMore,
    /// The stream ended inside the value.
    Truncated,
    /// The bytes are not JSON.
    Broken(serde_json::Error),
}

/// Parses one value at the start of `window`; `eof` says whether more bytes can follow.
fn parse_step<'a, T: Deserialize<'a>>(window: &'a [u8], eof: bool) -> Step<T> {
    let mut stream = Deserializer::from_slice(window).into_iter::<T>();
    match stream.next() {
        // A value that reaches the end of the window may go on past it (a number cut in two).
        Some(Ok(_)) if stream.byte_offset() == window.len() && !eof => Step::NeedMore,
        Some(Ok(value)) => Step::Value(value, stream.byte_offset()),
        Some(Err(e)) if e.is_eof() && eof => Step::Truncated,
        Some(Err(e)) if e.is_eof() => Step::NeedMore,
        // serde_json reports a number cut after its `-`, `.`, `e` or `e+` inside a skipped or
        // raw value as `invalid number`, not as an early end: an error at the very end of the
        // window may be the window's fault, so read more before calling the bytes broken.
        Some(Err(e)) if !eof && error_at_end(window, &e) => Step::NeedMore,
        Some(Err(e)) => Step::Broken(e),
        None if eof => Step::Truncated,
        None => Step::NeedMore,
    }
}

/// Whether serde_json's error lies at the end of `window` (its last byte or past it).
fn error_at_end(window: &[u8], e: &serde_json::Error) -> bool {
    // serde_json's column counts the bytes of the line before the error; the conversion below
    // treats it as 1-based, so the error lies at or after the offset it returns.
    offset_of_line_column(window, e.line(), e.column()) + 1 >= window.len()
}

/// Converts serde_json's 1-based line and column into a byte offset within `window`.
fn offset_of_line_column(window: &[u8], line: usize, column: usize) -> usize {
    let mut line_start = 0;
    for _ in 1..line {
        match memchr_newline(&window[line_start..]) {
            Some(i) => line_start += i + 1,
            None => break,
        }
    }
    (line_start + column.saturating_sub(1)).min(window.len())
}

fn memchr_newline(hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == b'\n')
}

/// serde_json appends " at line L column C"; our messages carry the byte offset instead.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

impl<'de> Deserialize<'de> for Element<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(fields::ElementVisitor)
    }
}

#[cfg(test)]
mod tests;
