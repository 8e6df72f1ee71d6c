//! The record stream on arbitrary stored bytes: `records::open` (gzip or not) with small limits,
//! every element of `Records` read, each record mapped, and the same bytes through the whole
//! filter + normalize `Pipeline`. Nothing may panic, and:
//!
//! - element indices count up from 0, and the pipeline reads exactly the elements the reader does;
//! - a document read to its end is within `max_decompressed_bytes`;
//! - every change's identifier is the record's `eventID` and its start and end the `eventTime`;
//! - reading the JSON in short, uneven chunks (with `Interrupted` reads) gives exactly the same
//!   elements and the same outcome as reading it whole (this found the number cut after its
//!   `-`, `.` or `e`: see the regression tests in tests/properties.rs).
//!
//! Input layout: byte 0 holds flags (bit 0: gzip the rest, bit 1: as two gzip members, bits 2-3:
//! which limit is small, bit 4: interrupted reads), byte 1 scales the limits and the chunk
//! sizes, the rest is the document.

#![no_main]

use cloudtrail_changes::core::filter::{Dedup, Policy};
use cloudtrail_changes::core::normalize::{self, Origin};
use cloudtrail_changes::core::pipeline::{Outcome, Pipeline, Tally};
use cloudtrail_changes::core::records::{self, Element, Limits, RecordReader, RecordsError};
use flate2::write::GzEncoder;
use libfuzzer_sys::fuzz_target;
use std::io::{self, Cursor, Read, Write};

const ORIGIN: Origin<'static> = Origin {
    bucket: Some("bucket"),
    key: "AWSLogs/111122223333/CloudTrail/us-east-1/2024/03/01/x.json.gz",
};

/// Longest document tried: well under the record limit's buffer, so that the limit is hit only
/// where a test sets it small.
const MAX_DOC: usize = 16 * 1024;
/// The record limit when it is not the small one.
const RECORD_LIMIT: usize = 32 * 1024;

fuzz_target!(|data: &[u8]| {
    let (flags, scale, doc) = match data {
        [flags, scale, doc @ ..] if doc.len() <= MAX_DOC => (*flags, *scale, doc),
        _ => return,
    };
    let stored = match (flags & 1 != 0, flags & 2 != 0) {
        (false, _) => doc.to_vec(),
        (true, false) => gzip(&[doc]),
        (true, true) => {
            let (a, b) = doc.split_at(usize::from(scale) % (doc.len() + 1));
            gzip(&[a, b])
        }
    };
    let limits = limits(flags, scale);
    let read = read_stored(&stored, &limits);
    run_pipeline(&stored, &limits, &read);
    chunked_reads_agree(doc, scale, flags & 16 != 0);
});

/// Small limits, so that every limit error is reachable with small inputs.
fn limits(flags: u8, scale: u8) -> Limits {
    let small = u64::from(scale) * 8;
    let mut limits = Limits {
        max_object_bytes: 1 << 20,
        max_decompressed_bytes: 1 << 20,
        max_record_bytes: RECORD_LIMIT,
    };
    match (flags >> 2) & 3 {
        0 => {}
        1 => limits.max_record_bytes = usize::from(scale) * 16,
        2 => limits.max_decompressed_bytes = small,
        _ => limits.max_object_bytes = small,
    }
    limits
}

/// What reading the stored bytes gave: elements read, whether it ended well.
struct Reading {
    opened: bool,
    elements: u64,
    ok: bool,
}

fn read_stored(stored: &[u8], limits: &Limits) -> Reading {
    let (_, json) = match records::open(Cursor::new(stored.to_vec()), limits) {
        Ok(opened) => opened,
        Err(e) => {
            let _ = e.to_string();
            return Reading {
                opened: false,
                elements: 0,
                ok: false,
            };
        }
    };
    let mut reader = RecordReader::new(json, limits.max_record_bytes);
    let mut next = 0;
    let result = reader.for_each(|index, element| {
        assert_eq!(index, next, "element indices must count up from 0");
        next += 1;
        if let Element::Record(record) = &element {
            check_mapping(record);
        }
        Ok::<(), RecordsError>(())
    });
    if let Err(e) = &result {
        let _ = (e.to_string(), e.is_source_failure());
    } else {
        assert!(
            reader.offset() <= limits.max_decompressed_bytes,
            "read {} bytes past the {}-byte limit",
            reader.offset(),
            limits.max_decompressed_bytes
        );
    }
    Reading {
        opened: true,
        elements: next,
        ok: result.is_ok(),
    }
}

/// A record with an identity maps to a change with that identity.
fn check_mapping(record: &records::Record<'_>) {
    let Ok(key) = record.key() else {
        return;
    };
    let change = normalize::normalize(record, ORIGIN, normalize::Options::default())
        .expect("a record with a key maps");
    let json = serde_json::to_value(&change).expect("a change serializes");
    assert_eq!(json["identifier"].as_str(), Some(key.event_id));
    assert_eq!(json["start"].as_i64(), Some(key.unix_seconds));
    assert_eq!(json["end"].as_i64(), Some(key.unix_seconds));
}

/// The same stored bytes through open + pipeline read the same elements.
fn run_pipeline(stored: &[u8], limits: &Limits, read: &Reading) {
    let Ok((_, json)) = records::open(Cursor::new(stored.to_vec()), limits) else {
        assert!(!read.opened, "open is deterministic");
        return;
    };
    let policy = Policy::default();
    let options = normalize::Options {
        max_tag_value_chars: 64,
    };
    let pipeline = Pipeline {
        policy: &policy,
        normalize: options,
        max_record_bytes: limits.max_record_bytes,
        // 2030-01-01T00:00:00Z: a fixed moment keeps the target deterministic.
        now: 1_893_456_000,
    };
    let mut tally = Tally::default();
    let result = pipeline.run(json, ORIGIN, &mut Dedup::default(), &mut tally, |outcome| {
        if let Outcome::Change(change) = outcome {
            assert!(!change.identifier.is_empty());
            assert_eq!(change.start, change.end);
            for (name, value) in &change.tags.0 {
                assert!(value.chars().count() <= 64, "tag {name} too long");
            }
        }
        Ok::<(), io::Error>(())
    });
    if let Err(e) = &result {
        let _ = e.to_string();
    }
    assert_eq!(tally.records, read.elements, "pipeline and reader disagree");
    assert_eq!(result.is_ok(), read.ok, "pipeline and reader disagree");
    let dropped: u64 = tally.dropped.iter().sum();
    assert_eq!(tally.changes + dropped, tally.records);
}

/// The elements and outcome of reading `src` as JSON, as text.
fn transcript(src: impl Read) -> Vec<String> {
    let mut out = Vec::new();
    let mut reader = RecordReader::new(src, RECORD_LIMIT);
    let result = reader.for_each(|index, element| {
        out.push(format!("{index}: {element:?}"));
        Ok::<(), RecordsError>(())
    });
    out.push(match result {
        Ok(()) => format!("ok at {}", reader.offset()),
        Err(e) => format!("error: {e}"),
    });
    out
}

fn chunked_reads_agree(doc: &[u8], scale: u8, interrupt: bool) {
    let whole = transcript(Cursor::new(doc));
    let chunked = transcript(Chunky {
        data: doc,
        calls: 0,
        scale: usize::from(scale),
        interrupt,
    });
    assert_eq!(whole, chunked, "short reads changed what was read");
}

/// A reader that returns short reads of varying sizes, and `Interrupted` now and then.
struct Chunky<'a> {
    data: &'a [u8],
    calls: usize,
    scale: usize,
    interrupt: bool,
}

impl Read for Chunky<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.interrupt && self.calls % 3 == 0 {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let size = 1 + (self.calls * 31 + self.scale * 7) % (self.scale % 64 + 1);
        let n = size.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn gzip(members: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for member in members {
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(member).expect("writing to a Vec");
        out.extend(encoder.finish().expect("writing to a Vec"));
    }
    out
}
