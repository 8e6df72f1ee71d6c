//! Decides which CloudTrail records are real changes (change-model.md, "Which records are
//! changes"). Pure: a record and a policy in, a verdict out. Every drop has a [`Reason`].
//!
//! The steps, in order: malformed (including an implausible `eventTime`), category, read-only,
//! failed, event type, noise; then [`Dedup`] drops an `eventID` already seen.

use crate::core::records::{Element, Malformed, Record, RecordKey};
use globset::{Glob, GlobSet, GlobSetBuilder};
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// Why a record is not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    ReadOnly,
    Failed,
    EventType,
    Category,
    Noise,
    Duplicate,
    Malformed,
}

impl Reason {
    /// Every reason, in a stable order (for tallies and reports).
    pub const ALL: [Reason; 7] = [
        Reason::ReadOnly,
        Reason::Failed,
        Reason::EventType,
        Reason::Category,
        Reason::Noise,
        Reason::Duplicate,
        Reason::Malformed,
    ];

    /// The reason's name in reports and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ReadOnly => "read_only",
            Reason::Failed => "failed",
            Reason::EventType => "event_type",
            Reason::Category => "category",
            Reason::Noise => "noise",
            Reason::Duplicate => "duplicate",
            Reason::Malformed => "malformed",
        }
    }

    /// Position in [`Reason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The event-name prefixes that mark a read where `readOnly` is absent.
pub const DEFAULT_READ_PREFIXES: [&str; 18] = [
    "Get", "List", "Describe", "Head", "Lookup", "Search", "Query", "Scan", "BatchGet", "Check",
    "Test", "Validate", "Preview", "Estimate", "Simulate", "View", "Verify", "Decode",
];

/// The event types that are resource changes.
pub const DEFAULT_EVENT_TYPES: [&str; 3] = ["AwsApiCall", "AwsConsoleAction", "AwsServiceEvent"];

/// Event names that are never changes worth correlating (globs). The SSM agent's two reports
/// come from every managed instance every few minutes: they would eat the API's budget.
pub const DEFAULT_NOISE: [&str; 18] = [
    "AssumeRole*",
    "GetSessionToken",
    "GetFederationToken",
    "ConsoleLogin",
    "SwitchRole",
    "StartSession",
    "ResumeSession",
    "CreateLogStream",
    "PutLogEvents",
    "PutMetricData",
    "Decrypt",
    "Encrypt",
    "GenerateDataKey*",
    "CreateToken",
    "RegisterClient",
    "BatchCheckLayerAvailability",
    "UpdateInstanceInformation",
    "UpdateInstanceAssociationStatus",
];

/// The earliest plausible `eventTime`, 2013-01-01T00:00:00Z: CloudTrail did not exist before.
pub const EARLIEST_EVENT_TIME: i64 = 1_356_998_400;

/// How far after the moment of processing an `eventTime` may lie (clock skew), in seconds.
pub const MAX_EVENT_TIME_AHEAD: i64 = 86_400;

/// Whether `unix_seconds` is a plausible `eventTime` when processing at `now` (Unix seconds):
/// from 2013-01-01T00:00:00Z to one day after `now`, both included.
pub fn plausible(unix_seconds: i64, now: i64) -> bool {
    (EARLIEST_EVENT_TIME..=now.saturating_add(MAX_EVENT_TIME_AHEAD)).contains(&unix_seconds)
}

/// The record's identity when it is well formed at `now`: an `eventID`, and an `eventTime` that
/// parses and is [`plausible`].
///
/// # Errors
/// What makes the record malformed.
pub fn well_formed<'r>(r: &'r Record<'_>, now: i64) -> Result<RecordKey<'r>, Malformed> {
    let key = r.key()?;
    if plausible(key.unix_seconds, now) {
        Ok(key)
    } else {
        Err(Malformed::ImplausibleEventTime)
    }
}

/// The filter's policy, compiled once from settings.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The settings the policy was compiled from.
    pub settings: FilterSettings,
    /// `settings.noise` and `settings.extra_noise`, compiled.
    noise: GlobSet,
}

impl Policy {
    /// Compiles the policy of `settings`.
    ///
    /// # Errors
    /// The first noise glob that does not compile, with its text.
    pub fn new(settings: &FilterSettings) -> Result<Self, globset::Error> {
        let mut set = GlobSetBuilder::new();
        for pattern in settings.noise.iter().chain(&settings.extra_noise) {
            set.add(Glob::new(pattern)?);
        }
        Ok(Policy {
            settings: settings.clone(),
            noise: set.build()?,
        })
    }

    /// Why `record` is not a change when processed at `now` (Unix seconds), or `Ok` when it is
    /// one (before de-duplication).
    ///
    /// # Errors
    /// The [`Reason`] of the first step that drops the record.
    pub fn check(&self, element: &Element<'_>, now: i64) -> Result<(), Reason> {
        match element {
            Element::NotAnObject | Element::Unreadable => Err(Reason::Malformed),
            Element::Record(record) => self.check_record(record, now),
        }
    }

    fn check_record(&self, r: &Record<'_>, now: i64) -> Result<(), Reason> {
        well_formed(r, now).map_err(|_| Reason::Malformed)?;
        if !self.category_allowed(r) {
            return Err(Reason::Category);
        }
        if self.is_read(r) {
            return Err(Reason::ReadOnly);
        }
        if !self.settings.keep_failed && (r.error_code.0 || r.error_message.0) {
            return Err(Reason::Failed);
        }
        // Records before eventVersion 1.02 carry no eventType; they were all API calls.
        let event_type = r.event_type.as_deref().unwrap_or("AwsApiCall");
        if !self.settings.event_types.iter().any(|t| t == event_type) {
            return Err(Reason::EventType);
        }
        if r.event_name
            .as_deref()
            .is_some_and(|name| self.noise.is_match(name))
        {
            return Err(Reason::Noise);
        }
        Ok(())
    }

    fn category_allowed(&self, r: &Record<'_>) -> bool {
        match r.event_category.as_deref() {
            Some("Management") => true,
            Some("Data") => self.settings.include_data_events,
            Some("NetworkActivity") => self.settings.include_network_activity_events,
            Some(_) => false,
            // Without a category, `managementEvent: false` marks a data event; a record with
            // neither field (older event versions) is a management event.
            None => r.management_event != Some(false) || self.settings.include_data_events,
        }
    }

    fn is_read(&self, r: &Record<'_>) -> bool {
        match r.read_only {
            Some(read_only) => read_only,
            None => r.event_name.as_deref().is_some_and(|name| {
                self.settings
                    .read_prefixes
                    .iter()
                    .any(|p| name.starts_with(p.as_str()))
            }),
        }
    }
}

impl serde::Serialize for Policy {
    /// A policy prints as the settings it was compiled from.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.settings.serialize(s)
    }
}

impl Default for Policy {
    /// The change model's default policy.
    fn default() -> Self {
        Policy::new(&FilterSettings::default())
            .unwrap_or_else(|e| unreachable!("the default noise globs compile: {e}"))
    }
}

/// The `[filter]` settings: each step of the change model's policy, configurable.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSettings {
    /// Keep data events (`eventCategory: Data`, or `managementEvent: false`).
    pub include_data_events: bool,
    /// Keep network-activity events.
    pub include_network_activity_events: bool,
    /// Keep calls that failed (`errorCode`/`errorMessage` present).
    pub keep_failed: bool,
    /// Send a repeated `eventID` once.
    pub deduplicate: bool,
    /// The `eventType`s that are changes.
    #[serde(deserialize_with = "crate::util::de::one_or_many")]
    pub event_types: Vec<String>,
    /// Event-name prefixes that mark a read where `readOnly` is absent.
    #[serde(deserialize_with = "crate::util::de::one_or_many")]
    pub read_prefixes: Vec<String>,
    /// Event-name globs that are noise (replaces the default list).
    #[serde(deserialize_with = "crate::util::de::one_or_many")]
    pub noise: Vec<String>,
    /// Event-name globs added to `noise`.
    #[serde(deserialize_with = "crate::util::de::one_or_many")]
    pub extra_noise: Vec<String>,
}

impl Default for FilterSettings {
    fn default() -> Self {
        let owned = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        FilterSettings {
            include_data_events: false,
            include_network_activity_events: false,
            keep_failed: false,
            deduplicate: true,
            event_types: owned(&DEFAULT_EVENT_TYPES),
            read_prefixes: owned(&DEFAULT_READ_PREFIXES),
            noise: owned(&DEFAULT_NOISE),
            extra_noise: Vec::new(),
        }
    }
}

/// Remembers the `eventID`s forwarded so far, so a repeated one is sent once.
///
/// Keeps a 64-bit hash per ID rather than the ID, so memory stays small (about 16 bytes per
/// change); two different IDs share a hash with odds of about n²/2⁶⁵ (1 in 10⁸ for a million).
#[derive(Debug, Default)]
pub struct Dedup {
    seen: HashSet<u64, BuildHasherDefault<Prehashed>>,
}

impl Dedup {
    /// True the first time `event_id` is offered, false after.
    pub fn first_time(&mut self, event_id: &str) -> bool {
        // SipHash with fixed keys: the same hash in every process and every run.
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new();
        event_id.hash(&mut h);
        self.seen.insert(h.finish())
    }

    /// How many distinct IDs were seen.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no ID was seen yet.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// A hasher for keys that already are hashes.
#[derive(Debug, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests;
