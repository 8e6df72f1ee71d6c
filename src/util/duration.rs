//! Durations as people say them, for operator output.

/// A duration for people: `30 s`, `42 min`, `5 min 3 s`, `1 h 5 min`, `1 day`, `2.2 days`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human(0), "0 s");
        assert_eq!(human(30), "30 s");
        assert_eq!(human(303), "5 min 3 s");
        assert_eq!(human(2520), "42 min");
        assert_eq!(human(3900), "1 h 5 min");
        assert_eq!(human(3 * 3600 + 12 * 60 + 9), "3 h 12 min");
        assert_eq!(human(86_400), "1 day");
        assert_eq!(human(2 * 86_400 + 4 * 3600 + 1), "2.2 days");
        assert_eq!(human(345_600), "4 days");
        assert_eq!(human(1_209_600), "14 days");
    }
}
