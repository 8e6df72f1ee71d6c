//! The label values of `metrics.rs` are tied to the code that uses them by reading the sources: every
//! literal the code gives a label or a failure is listed, and every listed value is used.
use super::*;
use std::collections::BTreeSet;
use std::path::Path;

/// Every `.rs` file under `src/` but `metrics.rs` and these tests, with its text.
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<(String, String)>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.ends_with("src/metrics.rs")
                && !path.ends_with("src/metrics/tests.rs")
            {
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                out.push((path.display().to_string(), text));
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    assert!(out.len() > 10, "found only {} source files", out.len());
    out
}

/// The contents of the string literals in `text` (no escapes in label values).
fn literals(text: &str) -> Vec<&str> {
    text.split('"').skip(1).step_by(2).collect()
}

/// The text after each `marker`, up to the first `end` (at most `limit` bytes).
fn spans<'a>(text: &'a str, marker: &str, end: &str, limit: usize) -> Vec<&'a str> {
    text.match_indices(marker)
        .map(|(i, _)| {
            let rest = &text[i + marker.len()..];
            let mut stop = rest.find(end).unwrap_or(rest.len()).min(limit);
            while !rest.is_char_boundary(stop) {
                stop -= 1;
            }
            &rest[..stop]
        })
        .collect()
}

/// `"label" => "value"` pairs inside the metric macros (`counter!(…)`, `gauge!(…)`,
/// `histogram!(…)`); the same shape elsewhere (a `match` on a string) is not a label.
fn label_literals(text: &str) -> Vec<(&str, &str)> {
    ["counter!(", "gauge!(", "histogram!("]
        .into_iter()
        .flat_map(|marker| spans(text, marker, ")", 400))
        .flat_map(|span| {
            span.match_indices("\" => \"").filter_map(move |(i, _)| {
                let label = span[..i].rsplit('"').next()?;
                let value = span[i + 6..].split('"').next()?;
                Some((label, value))
            })
        })
        .collect()
}

fn family(name: &str) -> Family {
    FAMILIES
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("{name} is not in FAMILIES"))
}

fn values(name: &str) -> BTreeSet<&'static str> {
    (family(name).label.expect("labelled").1)()
        .into_iter()
        .collect()
}

#[test]
fn the_failure_reasons_are_exactly_those_the_worker_gives() {
    let mut found = BTreeSet::new();
    for (_, text) in sources() {
        for marker in ["Poison {", "Transient {"] {
            // `Poison { reason: <literals>, detail ...`: a construction, not a pattern.
            for span in spans(&text, marker, "detail", 300) {
                if let Some(reason) = span.trim_start().strip_prefix("reason:") {
                    found.extend(literals(reason).into_iter().map(str::to_owned));
                }
            }
        }
    }
    let listed: BTreeSet<String> = FAILURE_REASONS.map(str::to_owned).into();
    assert_eq!(
        found, listed,
        "FAILURE_REASONS vs the code's Poison/Transient reasons"
    );
}

#[test]
fn object_failure_kinds_are_failure_reasons_or_stopped() {
    for kind in OBJECT_FAILURE_KINDS {
        assert!(
            FAILURE_REASONS.contains(&kind) || kind == "stopped",
            "{kind} is no failure reason"
        );
    }
}

#[test]
fn every_skip_reason_the_worker_gives_is_listed() {
    let listed = values(MESSAGES_SKIPPED);
    let mut found = BTreeSet::new();
    for (_, text) in sources() {
        for span in spans(&text, "Skipped {", "}", 200) {
            found.extend(literals(span).into_iter().map(str::to_owned));
        }
    }
    assert!(found.len() >= 2, "no Skipped literal found: {found:?}");
    let missing: Vec<_> = found
        .iter()
        .filter(|r| !listed.contains(r.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "skip reasons not zero-initialised: {missing:?}"
    );
}

#[test]
fn every_literal_label_value_in_the_code_is_listed_for_its_label() {
    let mut checked = 0;
    for (path, text) in sources() {
        for (label, value) in label_literals(&text) {
            let known: BTreeSet<&str> = FAMILIES
                .into_iter()
                .filter_map(|f| f.label)
                .filter(|(l, _)| *l == label)
                .flat_map(|(_, values)| values())
                .collect();
            assert!(
                known.contains(value),
                "{path}: {label}={value} is not zero-initialised by register_all"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} label literals found");
}

#[test]
fn every_listed_label_value_is_used_by_the_code() {
    let code: String = sources().into_iter().map(|(_, text)| text).collect();
    for family in FAMILIES {
        let Some((label, values)) = family.label else {
            continue;
        };
        if family.name == BUILD_INFO {
            continue;
        }
        for value in values() {
            assert!(
                code.contains(&format!("\"{value}\"")),
                "{}{{{label}=\"{value}\"}} is listed but no code gives it",
                family.name
            );
        }
    }
}

#[test]
fn register_all_shows_every_family_and_label_value_before_any_event() {
    let recorder = builder().expect("buckets").build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, register_all);
    let page = handle.render();
    for family in FAMILIES {
        if family.name == BUILD_INFO {
            continue;
        }
        let kind = match family.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        assert!(
            page.contains(&format!("# TYPE {} {kind}\n", family.name)),
            "{} missing:\n{page}",
            family.name
        );
        assert!(page.contains(&format!("# HELP {} ", family.name)));
        match (family.kind, family.label) {
            (Kind::Histogram, _) => {
                assert!(
                    page.contains(&format!("{}_count 0\n", family.name)),
                    "{page}"
                );
            }
            (_, None) => assert!(page.contains(&format!("{} 0\n", family.name)), "{page}"),
            (_, Some((label, values))) => {
                for value in values() {
                    let series = format!("{}{{{label}=\"{value}\"}} 0\n", family.name);
                    assert!(page.contains(&series), "{series} missing:\n{page}");
                }
            }
        }
    }
}
