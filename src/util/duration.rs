//! Durations as people read them, for operator output: [`human`] in sentences (`check`),
//! [`compact`] in columns (`dlq peek`'s age, which its service test reads as `0s`).

use std::time::Duration;

/// A duration for people: `30 s`, `42 min`, `1 h 5 min`, `4 days`.
#[must_use]
pub fn human(seconds: u64) -> String {
    const DAY: u64 = 86_400;
    match seconds {
        s if s >= DAY && s % DAY == 0 => {
            let d = s / DAY;
            format!("{d} day{}", if d == 1 { "" } else { "s" })
        }
        s if s >= DAY => format!("{:.1} days", s as f64 / DAY as f64),
        s if s >= 3600 => match (s / 3600, (s % 3600) / 60) {
            (h, 0) => format!("{h} h"),
            (h, m) => format!("{h} h {m} min"),
        },
        s if s >= 60 => match (s / 60, s % 60) {
            (m, 0) => format!("{m} min"),
            (m, r) => format!("{m} min {r} s"),
        },
        s => format!("{s} s"),
    }
}

/// A duration as people read an age, the two largest units: `42s`, `5m3s`, `3h12m`, `2d4h`.
#[must_use]
pub fn compact(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human(30), "30 s");
        assert_eq!(human(2520), "42 min");
        assert_eq!(human(3900), "1 h 5 min");
        assert_eq!(human(86_400), "1 day");
        assert_eq!(human(345_600), "4 days");
        assert_eq!(human(1_209_600), "14 days");
    }

    #[test]
    fn ages_read_as_the_two_largest_units() {
        assert_eq!(compact(Duration::from_secs(0)), "0s");
        assert_eq!(compact(Duration::from_secs(59)), "59s");
        assert_eq!(compact(Duration::from_secs(303)), "5m3s");
        assert_eq!(
            compact(Duration::from_secs(3 * 3600 + 12 * 60 + 9)),
            "3h12m"
        );
        assert_eq!(
            compact(Duration::from_secs(2 * 86_400 + 4 * 3600 + 1)),
            "2d4h"
        );
    }
}
