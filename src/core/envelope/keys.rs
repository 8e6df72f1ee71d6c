//! S3 keys: form-URL decoding of notification keys, and which keys are CloudTrail log files
//! (digests, Insights and other files are skipped with their reason).

use super::*;

/// Form-URL-decode an S3 event notification key: '+' is a space, then %XX, result must be UTF-8.
///
/// An invalid or truncated escape (`%G1`, a trailing `%`) is kept literally; bytes that are not
/// UTF-8 after decoding are an error.
///
/// # Errors
///
/// [`EnvelopeError::BadKey`] at path `key` when the decoded bytes are not UTF-8.
pub fn decode_s3_key(raw: &str) -> Result<String, EnvelopeError> {
    form_decode(raw).map_err(|detail| EnvelopeError::BadKey {
        path: "key".to_owned(),
        detail,
    })
}

/// Whether a key is a CloudTrail log file, or why not.
///
/// A log file is
/// `[prefix/]AWSLogs/[o-<org>/]<account>/CloudTrail/<region>/<YYYY>/<MM>/<DD>/<file>.json.gz`,
/// read after the last `AWSLogs/` that starts the key or follows a `/`.
///
/// # Errors
///
/// The reason to skip the key: [`SkipReason::FolderMarker`] for a key ending in `/`,
/// [`SkipReason::Digest`] or [`SkipReason::Insights`] for those CloudTrail files, and
/// [`SkipReason::NotCloudTrail`] for anything else, including keys longer than S3's 1024-byte
/// maximum, with a control character, or with a `..` segment.
pub fn classify_key(key: &str) -> Result<(), SkipReason> {
    use SkipReason::{Digest, FolderMarker, Insights, NotCloudTrail};
    let unsafe_key = key.chars().any(char::is_control) || key.split('/').any(|s| s == "..");
    if key.len() > MAX_KEY_LEN || unsafe_key {
        return Err(NotCloudTrail);
    }
    if key.ends_with('/') {
        return Err(FolderMarker);
    }
    let segments: Vec<&str> = aws_logs_suffix(key)
        .ok_or(NotCloudTrail)?
        .split('/')
        .collect();
    let segments = match segments.as_slice() {
        [org, rest @ ..] if is_org_id(org) => rest,
        all => all,
    };
    match segments {
        [account, ..] if !is_digits(account, 12) => Err(NotCloudTrail),
        [_, "CloudTrail-Digest", ..] => Err(Digest),
        [_, "CloudTrail-Insight", ..] => Err(Insights),
        [_, "CloudTrail", region, year, month, day, file]
            if is_region(region)
                && is_digits(year, 4)
                && is_digits(month, 2)
                && is_digits(day, 2)
                && file.strip_suffix(".json.gz").is_some_and(|s| !s.is_empty()) =>
        {
            Ok(())
        }
        _ => Err(NotCloudTrail),
    }
}

/// The part of `key` after the last `AWSLogs/` that starts the key or follows a `/`.
pub(super) fn aws_logs_suffix(key: &str) -> Option<&str> {
    const MARKER: &str = "AWSLogs/";
    let starts_segment = |i: usize| {
        key.get(..i)
            .is_some_and(|p| p.is_empty() || p.ends_with('/'))
    };
    let (start, _) = key
        .rmatch_indices(MARKER)
        .find(|(i, _)| starts_segment(*i))?;
    key.get(start + MARKER.len()..)
}

pub(super) fn is_digits(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit())
}

/// `o-` and up to 32 lowercase letters or digits. AWS documents 10 to 32, but shorter IDs
/// appear in real organization-trail keys (the cloud-snitch sample has `o-1234abcde`): a key
/// wrongly skipped loses a customer's changes silently, so accept them.
pub(super) fn is_org_id(s: &str) -> bool {
    let lower_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    s.strip_prefix("o-")
        .is_some_and(|id| (1..=32).contains(&id.len()) && id.bytes().all(lower_alnum))
}

pub(super) fn is_region(s: &str) -> bool {
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    !s.is_empty() && s.bytes().all(ok)
}

/// Form-URL-decoding; the error is the detail of a [`EnvelopeError::BadKey`].
pub(super) fn form_decode(raw: &str) -> Result<String, String> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|e| format!("not UTF-8 after percent-decoding ({e}): `{}`", quote(raw)))
}
