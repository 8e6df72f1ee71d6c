//! On-call tools for the dead-letter queue: `dlq peek` and `dlq redrive`.
//!
//! Both find the DLQ as the daemon does ([`Queue::resolve`]: `sqs.dlq_url`, else the target of
//! the source queue's RedrivePolicy) and hold what they receive invisible only while they run:
//! every message they did not move is made visible again (visibility 0) before they return,
//! also when a signal stops them. Peeking consumes nothing.
//!
//! `redrive` sends a message to the source queue first and deletes it from the DLQ only after
//! the send succeeded, so a message is never in neither queue. At worst (a delete that fails
//! after the send, or a second signal between the two) it is in both, and a later redrive
//! delivers it twice, which is harmless: changes are upserts.
//!
//! A message the daemon moved carries its `failure_reason`, `failure_detail`, `source_queue` and
//! `failed_at` as message attributes; one that SQS's own redrive moved carries none.

use crate::aws::credentials;
use crate::aws::queue::{DeadLetterQueue, Queue, QueueError, BATCH};
use crate::cli::RedriveArgs;
use crate::core::envelope;
use crate::settings::Settings;
use crate::util::duration::compact;
use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};
use aws_sdk_sqs::Client;
use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod pace;
use pace::Pace;
mod rejected;

/// Seconds `peek` keeps what it received invisible (it releases everything when it ends).
const PEEK_HOLD_SECONDS: i32 = 30;
/// Seconds `redrive` keeps what it received invisible (it releases what it did not move).
const REDRIVE_HOLD_SECONDS: i32 = 120;
/// SQS's limit on message attributes per message.
const MAX_ATTRIBUTES: usize = 10;
/// The attributes the daemon adds when it dead-letters a message; never copied back.
const FAILURE_ATTRIBUTES: [&str; 4] = [
    "failure_reason",
    "failure_detail",
    "source_queue",
    "failed_at",
];
/// Added to a redriven message: when it was moved back (RFC 3339).
pub const REDRIVEN_AT: &str = "redriven_at";
/// Shown as the reason of a message without `failure_reason`.
pub const NO_REASON: &str = "(moved by SQS redrive: no reason recorded)";
/// Shown as the object of a body the envelope decoder cannot read.
pub const UNDECODABLE: &str = "(undecodable body)";

/// Why a DLQ command failed.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// `sqs.queue_url` is not set.
    #[error("sqs.queue_url is empty: set it in the config file or CTC__SQS__QUEUE_URL")]
    NoQueueUrl,
    /// Neither a RedrivePolicy on the queue nor `sqs.dlq_url` names a DLQ.
    #[error("{queue} has no dead-letter queue: it has no RedrivePolicy and sqs.dlq_url is empty")]
    NoDlq { queue: String },
    /// The DLQ is the source queue itself: a redrive would never end.
    #[error("the dead-letter queue is the source queue itself ({queue}): check sqs.dlq_url")]
    SameQueue { queue: String },
    /// `--rate` is not a positive number.
    #[error("--rate must be a positive number of messages per second, not {0}")]
    BadRate(f64),
    /// An SQS call failed.
    #[error("SQS {operation} on {queue} failed: {detail}")]
    Sqs {
        operation: &'static str,
        queue: String,
        detail: String,
    },
    /// Messages were sent to the source queue but are still in the DLQ.
    #[error(
        "{count} message(s) were sent to {queue} but could not be deleted from {dlq}: they are \
         still there, and a later redrive delivers them twice (harmless: changes are upserts)"
    )]
    NotDeleted {
        count: usize,
        queue: String,
        dlq: String,
    },
    /// The output could not be written.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl From<QueueError> for DlqError {
    fn from(e: QueueError) -> Self {
        DlqError::Sqs {
            operation: e.operation,
            queue: e.queue,
            detail: e.detail,
        }
    }
}

/// `dlq peek`: prints up to `max` messages without consuming them; returns how many. SIGINT or
/// SIGTERM stops it early; what it saw is released either way.
///
/// # Errors
/// [`DlqError`] naming the queue and the call that failed.
pub async fn peek(settings: &Settings, max: usize, out: &mut dyn Write) -> Result<usize, DlqError> {
    let stop = CancellationToken::new();
    let signals = tokio::spawn(crate::shutdown::cancel_on_signal(stop.clone()));
    let result = peek_until(settings, max, out, &stop).await;
    signals.abort();
    result
}

/// [`peek`], stopped early when `stop` is cancelled instead of by a signal.
///
/// # Errors
/// [`DlqError`] naming the queue and the call that failed.
pub async fn peek_until(
    settings: &Settings,
    max: usize,
    out: &mut dyn Write,
    stop: &CancellationToken,
) -> Result<usize, DlqError> {
    let queues = open(settings).await?;
    let mut scan = Scan::new(&queues, PEEK_HOLD_SECONDS);
    let result = show(&mut scan, max, out, stop).await;
    scan.release().await;
    let shown = result?;
    let interrupted = if stop.is_cancelled() {
        " (interrupted)"
    } else {
        ""
    };
    write!(out, "{shown} message(s) shown{interrupted}")?;
    match queues.depth().await {
        Ok(depth) => writeln!(out, "; {} holds about {depth}", queues.dlq)?,
        Err(e) => {
            writeln!(out)?;
            tracing::warn!(error = %e, "cannot read the DLQ's depth");
        }
    }
    Ok(shown)
}

/// Prints one block per new message until `max`, the end of the scan, or `stop`.
async fn show(
    scan: &mut Scan<'_>,
    max: usize,
    out: &mut dyn Write,
    stop: &CancellationToken,
) -> Result<usize, DlqError> {
    let now = SystemTime::now();
    let mut shown = 0;
    while shown < max && !stop.is_cancelled() {
        let Some(batch) = scan.next(max - shown).await? else {
            break;
        };
        for letter in batch.iter().take(max - shown) {
            write_block(out, letter, now)?;
            shown += 1;
        }
    }
    Ok(shown)
}

/// One message for `peek`: id, reason, detail, objects, age.
fn write_block(out: &mut dyn Write, letter: &DeadLetter, now: SystemTime) -> std::io::Result<()> {
    let age = letter.sent_at.map_or_else(
        || "unknown".to_owned(),
        |t| compact(now.duration_since(t).unwrap_or_default()),
    );
    let mut notes = Vec::new();
    if let Some(at) = &letter.failed_at {
        notes.push(format!("failed at {}", one_line(at)));
    }
    if let Some(n) = letter.receive_count {
        notes.push(format!("received {n} time(s), this peek included"));
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    };
    writeln!(out, "{}", one_line(&letter.message_id))?;
    writeln!(out, "  reason:  {}", letter.reason_text())?;
    writeln!(
        out,
        "  detail:  {}",
        letter.detail.as_deref().map_or("-".to_owned(), one_line)
    )?;
    match rejected::describe(&letter.other_attributes, &letter.body) {
        Some(lines) => lines.iter().try_for_each(|l| writeln!(out, "{l}"))?,
        None => writeln!(out, "  object:  {}", objects_text(&letter.body))?,
    }
    writeln!(out, "  age:     {age}{notes}")?;
    writeln!(out)
}

/// `dlq redrive`: moves messages back to the source queue; returns how many were moved (in a
/// dry run, how many would be). The first SIGINT or SIGTERM lets the message being moved finish
/// and stops; a second one exits at once.
///
/// # Errors
/// [`DlqError`] naming the queue and the call that failed; [`DlqError::NotDeleted`] when some
/// moved messages could not be deleted from the DLQ.
pub async fn redrive(
    settings: &Settings,
    args: &RedriveArgs,
    out: &mut dyn Write,
) -> Result<usize, DlqError> {
    let stop = CancellationToken::new();
    let signals = tokio::spawn(crate::shutdown::cancel_on_signal(stop.clone()));
    let result = redrive_until(settings, args, out, &stop).await;
    signals.abort();
    result
}

/// [`redrive`], stopped when `stop` is cancelled instead of by a signal: the message being
/// moved is finished (sent, then deleted), the rest is released.
///
/// # Errors
/// As [`redrive`].
pub async fn redrive_until(
    settings: &Settings,
    args: &RedriveArgs,
    out: &mut dyn Write,
    stop: &CancellationToken,
) -> Result<usize, DlqError> {
    let pace = Pace::new(if args.dry_run { None } else { args.rate })?;
    let queues = open(settings).await?;
    let mut run = Redrive {
        queues: &queues,
        args,
        pace,
        tally: Tally::default(),
        moved_bodies: HashSet::new(),
    };
    let mut scan = Scan::new(&queues, REDRIVE_HOLD_SECONDS);
    let result = run.run(&mut scan, out, stop).await;
    scan.release().await;
    let tally = run.tally;
    write_summary(out, args, &tally, stop.is_cancelled())?;
    match queues.depth().await {
        Ok(depth) => writeln!(out, "{} holds about {depth}", queues.dlq)?,
        Err(e) => tracing::warn!(error = %e, "cannot read the DLQ's depth"),
    }
    result?;
    if tally.not_deleted > 0 {
        return Err(DlqError::NotDeleted {
            count: tally.not_deleted,
            queue: queues.source.clone(),
            dlq: queues.dlq.clone(),
        });
    }
    Ok(tally.moved)
}

/// What a redrive did, for the summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Tally {
    /// Sent to the source queue (in a dry run: would be).
    moved: usize,
    /// Left in the DLQ: another reason than `--reason`.
    skipped: usize,
    /// Left in the DLQ: the same body as one already moved in this run (it came back, still
    /// failing, or it is a duplicate).
    repeated: usize,
    /// The send failed: left in the DLQ.
    failed: usize,
    /// Sent, but the delete from the DLQ failed: in both queues.
    not_deleted: usize,
}

/// The summary line of a redrive.
fn write_summary(
    out: &mut dyn Write,
    args: &RedriveArgs,
    tally: &Tally,
    interrupted: bool,
) -> std::io::Result<()> {
    let mut line = if interrupted {
        "interrupted: ".to_owned()
    } else {
        String::new()
    };
    if args.dry_run {
        line.push_str(&format!(
            "dry run: would move {}, skipped {}; nothing was moved",
            tally.moved, tally.skipped
        ));
    } else {
        line.push_str(&format!(
            "moved {}, skipped {}, failed {}",
            tally.moved, tally.skipped, tally.failed
        ));
        if tally.not_deleted > 0 {
            line.push_str(&format!(
                "; {} moved but still in the DLQ (not deleted)",
                tally.not_deleted
            ));
        }
    }
    if tally.repeated > 0 {
        line.push_str(&format!(
            "; left {} repeating a message already moved in this run (came back still failing?)",
            tally.repeated
        ));
    }
    writeln!(out, "{line}")
}

/// One redrive run.
struct Redrive<'a> {
    queues: &'a DeadLetterQueue,
    args: &'a RedriveArgs,
    pace: Pace,
    tally: Tally,
    /// Hashes of the bodies moved so far: a message that comes back to the DLQ while the run
    /// lasts (the daemon failed it again) is left there instead of going round forever.
    moved_bodies: HashSet<u64>,
}

impl Redrive<'_> {
    /// Receives and moves until `--max`, the end of the scan, `stop`, or a failed send.
    async fn run(
        &mut self,
        scan: &mut Scan<'_>,
        out: &mut dyn Write,
        stop: &CancellationToken,
    ) -> Result<(), DlqError> {
        let limit = self.args.max.unwrap_or(usize::MAX);
        while self.tally.moved < limit && self.pace.ready(stop).await {
            let wanted = (limit - self.tally.moved).min(self.pace.batch_size());
            let Some(batch) = scan.next(wanted).await? else {
                break;
            };
            for letter in &batch {
                if self.tally.moved >= limit || stop.is_cancelled() {
                    return Ok(());
                }
                self.one(scan, letter, out, stop).await?;
            }
        }
        Ok(())
    }

    /// Moves (or skips) one message.
    async fn one(
        &mut self,
        scan: &mut Scan<'_>,
        letter: &DeadLetter,
        out: &mut dyn Write,
        stop: &CancellationToken,
    ) -> Result<(), DlqError> {
        if !letter.matches(self.args.reason.as_deref()) {
            self.tally.skipped += 1;
            return Ok(());
        }
        if self.moved_bodies.contains(&body_hash(&letter.body)) {
            self.tally.repeated += 1;
            return Ok(());
        }
        if self.args.dry_run {
            self.tally.moved += 1;
            return write_line(out, "would move", letter, None);
        }
        if !self.pace.take(stop).await {
            return Ok(());
        }
        if let Err(e) = send_back(self.queues, letter).await {
            self.tally.failed += 1;
            write_line(out, "failed", letter, Some(&e.to_string()))?;
            return Err(e);
        }
        self.tally.moved += 1;
        self.moved_bodies.insert(body_hash(&letter.body));
        match self.queues.delete(&letter.receipt_handle).await {
            Ok(()) => {
                scan.forget(&letter.message_id);
                write_line(out, "moved", letter, None)
            }
            Err(e) => {
                self.tally.not_deleted += 1;
                let note = format!(
                    "NOT deleted from the DLQ ({e}): a later redrive delivers it twice, which is \
                     harmless (changes are upserts)"
                );
                write_line(out, "moved", letter, Some(&note))
            }
        }
    }
}

/// One tab-separated line: what happened, id, reason, objects, and a note.
fn write_line(
    out: &mut dyn Write,
    what: &str,
    letter: &DeadLetter,
    note: Option<&str>,
) -> Result<(), DlqError> {
    let mut line = format!(
        "{what}\t{}\t{}\t{}",
        one_line(&letter.message_id),
        letter.reason_text(),
        objects_text(&letter.body)
    );
    if let Some(note) = note {
        line.push('\t');
        line.push_str(&one_line(note));
    }
    writeln!(out, "{line}")?;
    Ok(())
}

fn body_hash(body: &str) -> u64 {
    let mut h = DefaultHasher::new();
    body.hash(&mut h);
    h.finish()
}

/// Finds the DLQ as the daemon does: `sqs.dlq_url`, else the RedrivePolicy's target.
async fn open(settings: &Settings) -> Result<DeadLetterQueue, DlqError> {
    if settings.sqs.queue_url.is_empty() {
        return Err(DlqError::NoQueueUrl);
    }
    let aws = credentials::sdk_config(&settings.aws).await;
    let client = Client::new(&aws);
    let dlq_override = Some(settings.sqs.dlq_url.clone()).filter(|u| !u.is_empty());
    let queue = Queue::resolve(client.clone(), &settings.sqs.queue_url, dlq_override).await?;
    let Some(dlq) = queue.dlq_url.clone() else {
        return Err(DlqError::NoDlq { queue: queue.url });
    };
    if dlq == queue.url {
        return Err(DlqError::SameQueue { queue: dlq });
    }
    Ok(DeadLetterQueue::new(client, queue.url, dlq))
}

/// Sends the body back to the source queue, with the message's attributes except the failure
/// ones, plus `redriven_at`.
async fn send_back(queues: &DeadLetterQueue, letter: &DeadLetter) -> Result<(), DlqError> {
    let mut attributes = letter.other_attributes.clone();
    if attributes.len() < MAX_ATTRIBUTES {
        let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        if let Ok(v) = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(now)
            .build()
        {
            attributes.insert(REDRIVEN_AT.to_owned(), v);
        }
    }
    Ok(queues.send_to_source(&letter.body, attributes).await?)
}

/// The messages one command has received, deduplicated by id, and held until [`Scan::release`].
struct Scan<'a> {
    queues: &'a DeadLetterQueue,
    hold_seconds: i32,
    /// Every message id received in this run.
    seen: HashSet<String>,
    /// Message id -> latest receipt handle, for what this run holds and has not deleted.
    held: HashMap<String, String>,
    /// Receives in a row that brought only messages already seen.
    stale: usize,
}

impl<'a> Scan<'a> {
    fn new(queues: &'a DeadLetterQueue, hold_seconds: i32) -> Self {
        Self {
            queues,
            hold_seconds,
            seen: HashSet::new(),
            held: HashMap::new(),
            stale: 0,
        }
    }

    /// The messages of one receive not seen before in this run (possibly none), or `None` when
    /// the scan is over: the DLQ answered empty (everything left is held by this run), or
    /// receives kept bringing only messages seen before (back after their hold ended) for
    /// longer than hiding every held message again takes.
    async fn next(&mut self, max: usize) -> Result<Option<Vec<DeadLetter>>, DlqError> {
        let messages = self.queues.receive(max, self.hold_seconds).await?;
        if messages.is_empty() {
            return Ok(None);
        }
        let mut fresh = Vec::new();
        for letter in messages.iter().filter_map(DeadLetter::from_message) {
            // A message back after its hold ended gets a new handle: keep the newest.
            self.held
                .insert(letter.message_id.clone(), letter.receipt_handle.clone());
            if self.seen.insert(letter.message_id.clone()) {
                fresh.push(letter);
            }
        }
        if fresh.is_empty() {
            self.stale += 1;
            if self.stale > self.held.len() / BATCH + 1 {
                return Ok(None);
            }
        } else {
            self.stale = 0;
        }
        Ok(Some(fresh))
    }

    /// A message deleted from the DLQ: nothing to release.
    fn forget(&mut self, message_id: &str) {
        self.held.remove(message_id);
    }

    /// Makes everything still held visible again.
    async fn release(&mut self) {
        let held: Vec<String> = std::mem::take(&mut self.held).into_values().collect();
        self.queues.release(&held).await;
    }
}

/// One DLQ message as the tools see it.
#[derive(Debug, Clone)]
struct DeadLetter {
    message_id: String,
    receipt_handle: String,
    body: String,
    /// `failure_reason`; `None` when SQS's own redrive moved the message.
    reason: Option<String>,
    detail: Option<String>,
    failed_at: Option<String>,
    /// `SentTimestamp`: when the daemon sent it to the DLQ, or (SQS redrive) when it was first
    /// sent to the source queue.
    sent_at: Option<SystemTime>,
    receive_count: Option<u32>,
    /// The message attributes other than the failure ones: kept on a redrive.
    other_attributes: HashMap<String, MessageAttributeValue>,
}

impl DeadLetter {
    /// `None` for a message without an id or a receipt handle (SQS always sends both).
    fn from_message(m: &Message) -> Option<Self> {
        let attributes = m.message_attributes().cloned().unwrap_or_default();
        let text = |name: &str| {
            attributes
                .get(name)
                .and_then(|v| v.string_value())
                .map(str::to_owned)
        };
        let system =
            |name: MessageSystemAttributeName| m.attributes().and_then(|a| a.get(&name)).cloned();
        let sent_at = system(MessageSystemAttributeName::SentTimestamp)
            .and_then(|ms| ms.parse::<u64>().ok())
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
        Some(Self {
            message_id: m.message_id()?.to_owned(),
            receipt_handle: m.receipt_handle()?.to_owned(),
            body: m.body().unwrap_or_default().to_owned(),
            reason: text("failure_reason"),
            detail: text("failure_detail"),
            failed_at: text("failed_at"),
            sent_at,
            receive_count: system(MessageSystemAttributeName::ApproximateReceiveCount)
                .and_then(|n| n.parse().ok()),
            other_attributes: attributes
                .into_iter()
                .filter(|(k, _)| !FAILURE_ATTRIBUTES.contains(&k.as_str()))
                .collect(),
        })
    }

    /// Whether `--reason` selects this message (no `--reason`: every message).
    fn matches(&self, reason: Option<&str>) -> bool {
        // `none` selects the messages SQS moved by itself, which carry no reason.
        reason.is_none_or(|r| match self.reason.as_deref() {
            Some(own) => own == r,
            None => r == "none",
        })
    }

    fn reason_text(&self) -> String {
        self.reason
            .as_deref()
            .map_or_else(|| NO_REASON.to_owned(), one_line)
    }
}

/// The objects a body names (`s3://bucket/key`, comma-separated), what it skips, or
/// [`UNDECODABLE`].
#[must_use]
pub fn objects_text(body: &str) -> String {
    let Ok(decoded) = envelope::decode(body) else {
        return UNDECODABLE.to_owned();
    };
    let mut parts: Vec<String> = decoded.objects.iter().map(ToString::to_string).collect();
    parts.extend(decoded.skipped.iter().map(|s| match &s.object {
        Some(o) => format!("{o} (skipped: {})", s.reason.as_str()),
        None => format!("(no object: {})", s.reason.as_str()),
    }));
    if parts.is_empty() {
        "(no object)".to_owned()
    } else {
        one_line(&parts.join(", "))
    }
}

/// Text from a message, on one line: control characters escaped.
fn one_line(text: &str) -> String {
    let mut line = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}

#[cfg(test)]
mod tests;
