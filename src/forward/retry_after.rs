//! Retry timing: exponential backoff with jitter, and the `Retry-After` header (seconds or an
//! HTTP date) as a duration.

use super::*;

/// The delay before retry number `attempt` (1 after the first failure): full jitter, a
/// `rng_fraction` (0..1) of 250 ms doubling per attempt, capped at 30 s.
#[must_use]
pub fn backoff(attempt: u32, rng_fraction: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    let ceiling = BACKOFF_BASE.saturating_mul(1 << exponent).min(BACKOFF_CAP);
    // NaN would make `mul_f64` panic.
    let fraction = if rng_fraction.is_nan() {
        0.0
    } else {
        rng_fraction.clamp(0.0, 1.0)
    };
    ceiling.mul_f64(fraction)
}

/// How long a `Retry-After` value asks us to wait from `now`: delta seconds or an
/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`); a date in the past is zero. `None` for
/// anything else (the obsolete RFC 850 and asctime forms included).
#[must_use]
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 still means "a very long time".
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_imf_fixdate(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

pub(super) const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

pub(super) fn parse_imf_fixdate(value: &str) -> Option<SystemTime> {
    let mut parts = value.split(' ');
    let weekday = parts.next()?;
    let (day, month, year) = (parts.next()?, parts.next()?, parts.next()?);
    let (time, zone) = (parts.next()?, parts.next()?);
    if parts.next().is_some() || zone != "GMT" || weekday.len() != 4 || !weekday.ends_with(',') {
        return None;
    }
    let day = digits(day, 2).filter(|d| (1..=31).contains(d))?;
    let month = MONTHS.iter().position(|m| *m == month)? + 1;
    let year = digits(year, 4)?;
    let mut hms = time.split(':');
    let hour = digits(hms.next()?, 2).filter(|h| *h < 24)?;
    let minute = digits(hms.next()?, 2).filter(|m| *m < 60)?;
    let second = digits(hms.next()?, 2).filter(|s| *s <= 60)?;
    if hms.next().is_some() {
        return None;
    }
    let days = days_from_civil(i64::from(year), month as i64, i64::from(day));
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    let seconds = u64::try_from(seconds).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(seconds))
}

/// Exactly `len` ASCII digits.
pub(super) fn digits(text: &str, len: usize) -> Option<u32> {
    if text.len() != len || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(super) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}
