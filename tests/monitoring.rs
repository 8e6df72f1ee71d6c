//! The monitoring files operators load: the alert rules (`config/prometheus/alerts.yml`, with
//! their promtool unit tests beside them) and the Grafana dashboard
//! (`config/grafana/cloudtrail-changes.json`). Each is checked against what the daemon exports
//! (`metrics::FAMILIES`, which a service test compares with the README's table and a fresh
//! daemon's `/metrics`) and against the README's runbooks.
//!
//! Tools: `promtool` (Debian package `prometheus`; or `CTC_PROMTOOL`): skipped with a line
//! saying so when missing, a failure when `CI` is set. The rules are parsed with PyYAML from the
//! project's venv (`scripts/moto.sh install` creates it; the test fails without it).

use cloudtrail_changes::metrics::{Kind, FAMILIES};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const ALERTS: &str = "config/prometheus/alerts.yml";
const ALERT_TESTS: &str = "config/prometheus/alerts.test.yml";
const DASHBOARD: &str = "config/grafana/cloudtrail-changes.json";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `promtool`, or `None` (and a line saying so) outside CI; in CI a missing one fails.
fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("CTC_PROMTOOL")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join("promtool"))
                    .find(|p| p.is_file())
            })
        });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is missing (apt-get install prometheus, or set CTC_PROMTOOL); CI must run this check"
        );
        println!(
            "skipped: promtool is not installed (Debian package prometheus, or set CTC_PROMTOOL)"
        );
    }
    found
}

fn run_promtool(args: &[&str]) {
    let Some(promtool) = promtool() else { return };
    let out = Command::new(&promtool)
        .args(args)
        .current_dir(repo().join("config/prometheus"))
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", promtool.display()));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{report}");
    assert!(out.status.success(), "promtool {args:?} failed:\n{report}");
}

#[test]
fn promtool_checks_the_alert_rules() {
    run_promtool(&["check", "rules", "alerts.yml"]);
}

#[test]
fn promtool_unit_tests_of_the_alert_rules_pass() {
    run_promtool(&["test", "rules", "alerts.test.yml"]);
}

/// The alert rules as JSON (PyYAML from the project's venv).
fn rules() -> Vec<Value> {
    let venv = std::env::var_os("CTC_MOTO_VENV")
        .map_or_else(|| repo().join("target/moto-venv"), PathBuf::from);
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/moto.sh install (its venv's PyYAML parses the rules)",
        python.display()
    );
    let mut child = Command::new(&python)
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(read(ALERTS).as_bytes())
        .expect("write to python");
    let out = child.wait_with_output().expect("python runs");
    assert!(
        out.status.success(),
        "{ALERTS} does not parse: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("python prints JSON");
    let rules: Vec<Value> = doc["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(!rules.is_empty(), "no rules in {ALERTS}");
    rules
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"))
}

/// Every panel's (title, expressions).
fn panels(dashboard: &Value) -> Vec<(String, Vec<String>)> {
    dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_owned();
            let exprs = p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["expr"].as_str().map(str::to_owned))
                .collect();
            (title, exprs)
        })
        .collect()
}

/// PromQL words that are not metric names.
const PROMQL_WORDS: [&str; 30] = [
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "rate",
    "irate",
    "increase",
    "delta",
    "absent",
    "histogram_quantile",
    "clamp_min",
];

/// The metric names an expression selects: identifiers outside strings, label matchers,
/// ranges and `by (...)` lists that are not PromQL words or function calls.
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let skip_to = |from: usize, close: char| -> usize {
        chars[from..]
            .iter()
            .position(|&c| c == close)
            .map_or(chars.len(), |n| from + n + 1)
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i = skip_to(i + 1, '"');
        } else if c == '{' {
            i = skip_to(i + 1, '}');
        } else if c == '[' {
            i = skip_to(i + 1, ']');
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if ["by", "without", "on", "ignoring"].contains(&word.as_str()) {
                i = skip_to(i, ')'); // Its label list.
            } else if next != Some(&'(') && !PROMQL_WORDS.contains(&word.as_str()) {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Names the daemon exports, histograms with their `_bucket`, `_sum` and `_count` series, and
/// Prometheus' own `up`.
fn exported() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = ["up".to_owned()].into();
    for family in FAMILIES {
        if family.kind == Kind::Histogram {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{}{suffix}", family.name));
            }
        } else {
            names.insert(family.name.to_owned());
        }
    }
    names
}

#[test]
fn the_expression_reader_finds_metric_names_and_nothing_else() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(ctc_change_lag_seconds_bucket{a="b c"}[15m]))) > 1800
           or sum(increase(x_total[10m])) / on (instance) up == 0"#,
    );
    assert_eq!(names, ["ctc_change_lag_seconds_bucket", "x_total", "up"]);
}

#[test]
fn alerts_and_dashboard_name_only_metrics_the_daemon_exports() {
    let exported = exported();
    let mut exprs: Vec<(String, String)> = rules()
        .iter()
        .map(|r| {
            let name = r["alert"].as_str().unwrap_or("a recording rule").to_owned();
            (name, r["expr"].as_str().expect("expr").to_owned())
        })
        .collect();
    for (title, panel_exprs) in panels(&dashboard()) {
        exprs.extend(panel_exprs.into_iter().map(|e| (title.clone(), e)));
    }
    let mut seen = 0;
    for (place, expr) in &exprs {
        for name in metric_names(expr) {
            assert!(
                exported.contains(&name),
                "{place}: `{expr}` names {name}, which the daemon does not export"
            );
            seen += 1;
        }
    }
    assert!(
        seen >= exprs.len(),
        "only {seen} names in {} expressions",
        exprs.len()
    );
}

#[test]
fn every_alert_has_a_summary_a_readme_runbook_and_a_dashboard_panel() {
    let readme = read("README.md");
    let titles: Vec<String> = panels(&dashboard()).into_iter().map(|(t, _)| t).collect();
    for rule in rules() {
        let name = rule["alert"].as_str().expect("only alerting rules");
        let annotations = &rule["annotations"];
        assert!(
            annotations["summary"]
                .as_str()
                .is_some_and(|s| s.len() > 20),
            "{name} has no summary"
        );
        assert_eq!(
            annotations["runbook"].as_str(),
            Some(format!("README.md#{}", name.to_lowercase()).as_str()),
            "{name}'s runbook anchor"
        );
        assert!(
            readme.lines().any(|l| l == format!("#### {name}")),
            "README.md has no `#### {name}` runbook heading"
        );
        assert!(
            rule["labels"]["severity"].as_str().is_some(),
            "{name} has no severity"
        );
        assert!(
            titles.iter().any(|t| t.starts_with(&format!("{name}:"))),
            "no dashboard panel for {name} in {titles:?}"
        );
    }
}

#[test]
fn the_dashboard_shows_throughput_api_latency_and_messages_in_flight() {
    let exprs: Vec<String> = panels(&dashboard())
        .into_iter()
        .flat_map(|(_, e)| e)
        .collect();
    for metric in [
        "ctc_objects_total",
        "ctc_records_total",
        "ctc_changes_produced_total",
        "ctc_changes_sent_total",
        "ctc_bigpanda_request_duration_seconds_bucket",
        "ctc_messages_in_flight",
    ] {
        assert!(
            exprs
                .iter()
                .any(|e| metric_names(e).iter().any(|n| n == metric)),
            "no panel shows {metric}"
        );
    }
}

#[test]
fn the_promtool_tests_cover_every_alert() {
    let tests = read(ALERT_TESTS);
    for rule in rules() {
        let name = rule["alert"].as_str().expect("alert");
        let firing = format!("alertname: {name}\n        exp_alerts:");
        assert!(
            tests.contains(&firing),
            "{ALERT_TESTS} never expects {name} to fire"
        );
    }
    assert!(Path::new(&repo().join(ALERT_TESTS)).is_file());
}
