//! Runs one object's JSON through records -> filter -> normalize, handing each outcome to the
//! caller and tallying it. No I/O of its own: the caller brings the bytes and takes the changes.

use crate::core::filter::{self, Dedup, Policy, Reason};
use crate::core::normalize::{self, Change, Origin};
use crate::core::records::{Element, Malformed, RecordReader, RecordsError};
use std::io::Read;

/// What happened to one record.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// A change to forward.
    Change(Change),
    /// A record that is not forwarded, and why.
    Dropped(Dropped<'a>),
}

/// A dropped record, as `--explain` reports it.
#[derive(Debug, Clone, Copy)]
pub struct Dropped<'a> {
    /// Position in the object's `Records` array, from 0.
    pub index: u64,
    pub reason: Reason,
    pub event_id: Option<&'a str>,
    pub event_name: Option<&'a str>,
    /// For malformed records, what is wrong.
    pub detail: Option<&'static str>,
}

/// Counts of what the pipeline did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Elements of `Records` read.
    pub records: u64,
    /// Changes produced.
    pub changes: u64,
    /// Records dropped, by [`Reason::index`].
    pub dropped: [u64; Reason::ALL.len()],
    /// Decompressed JSON bytes read.
    pub json_bytes: u64,
}

impl Tally {
    /// Records dropped for `reason`.
    pub fn dropped(&self, reason: Reason) -> u64 {
        self.dropped[reason.index()]
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Tally) {
        self.records += other.records;
        self.changes += other.changes;
        self.json_bytes += other.json_bytes;
        for (mine, theirs) in self.dropped.iter_mut().zip(other.dropped) {
            *mine += theirs;
        }
    }
}

/// Why an object could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError<E> {
    /// The object's bytes or JSON are broken (see [`RecordsError`]).
    #[error(transparent)]
    Records(#[from] RecordsError),
    /// The caller's handler failed.
    #[error("{0}")]
    Handler(E),
}

/// The stages' settings for one run.
#[derive(Debug, Clone, Copy)]
pub struct Pipeline<'s> {
    pub policy: &'s Policy,
    pub normalize: normalize::Options,
    pub max_record_bytes: usize,
    /// The moment of processing (Unix seconds): an `eventTime` more than a day after it is
    /// implausible. The caller reads the clock; the pipeline reads none.
    pub now: i64,
}

impl Pipeline<'_> {
    /// Reads the records of `json` (decompressed bytes), handing each outcome to `handle`, in
    /// order. `tally` is updated as it goes, so it is right even when an error stops the run.
    ///
    /// # Errors
    /// [`PipelineError::Records`] for a broken object (the outcomes before it were handed on),
    /// [`PipelineError::Handler`] when `handle` fails.
    pub fn run<R: Read, E>(
        &self,
        json: R,
        origin: Origin<'_>,
        dedup: &mut Dedup,
        tally: &mut Tally,
        mut handle: impl FnMut(Outcome<'_>) -> Result<(), E>,
    ) -> Result<(), PipelineError<E>> {
        let mut reader = RecordReader::new(json, self.max_record_bytes);
        let result = reader.for_each(|index, element| {
            tally.records += 1;
            let outcome = self.decide(index, &element, origin, dedup);
            match &outcome {
                Outcome::Change(_) => tally.changes += 1,
                Outcome::Dropped(d) => tally.dropped[d.reason.index()] += 1,
            }
            handle(outcome).map_err(PipelineError::Handler)
        });
        tally.json_bytes += reader.offset();
        result
    }

    /// The fate of one element.
    fn decide<'e>(
        &self,
        index: u64,
        element: &'e Element<'_>,
        origin: Origin<'_>,
        dedup: &mut Dedup,
    ) -> Outcome<'e> {
        let record = match element {
            Element::Record(r) => r,
            Element::NotAnObject | Element::Unreadable => {
                let detail = Some(match element {
                    Element::Unreadable => Malformed::Unreadable.as_str(),
                    _ => Malformed::NotAnObject.as_str(),
                });
                return Outcome::Dropped(Dropped {
                    index,
                    reason: Reason::Malformed,
                    event_id: None,
                    event_name: None,
                    detail,
                });
            }
        };
        let dropped = |reason, detail| {
            Outcome::Dropped(Dropped {
                index,
                reason,
                event_id: record.event_id.as_deref(),
                event_name: record.event_name.as_deref(),
                detail,
            })
        };
        if let Err(reason) = self.policy.check(element, self.now) {
            let detail = filter::well_formed(record, self.now)
                .err()
                .map(Malformed::as_str);
            return dropped(reason, detail);
        }
        // Checked before mapping: a duplicate costs no mapping work.
        let event_id = record.event_id.as_deref().unwrap_or_default();
        if self.policy.settings.deduplicate && !dedup.first_time(event_id) {
            return dropped(Reason::Duplicate, None);
        }
        let change = match normalize::normalize(record, origin, self.normalize) {
            Ok(change) => change,
            Err(m) => return dropped(Reason::Malformed, Some(m.as_str())),
        };
        Outcome::Change(change)
    }
}
