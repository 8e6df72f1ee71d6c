//! The binary as a user runs it: exit codes, stdout and stderr.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cloudtrail-changes"));
    cmd.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

#[test]
fn process_on_the_sample_data_prints_one_change_per_line_and_a_summary() {
    let out = run(
        &["process", data("cloudtrail").to_str().expect("path")],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 539);
    for line in stdout.lines() {
        let change: serde_json::Value = serde_json::from_str(line).expect("a JSON change per line");
        assert_eq!(change["status"], "Done");
    }
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("files: 62 (0 failed, 0 skipped)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("records: 3490  changes: 539  malformed: 64"),
        "{stderr}"
    );
    assert!(stderr.contains("dropped: read_only=2505 failed=149 event_type=28 category=23 noise=23 duplicate=159 malformed=64"), "{stderr}");
    assert!(stderr.contains("MB/s"), "{stderr}");
}

#[test]
fn a_failed_file_is_named_and_sets_exit_status_1_after_the_others_ran() {
    let good = data("cloudtrail/invictus-ir_aws_dataset/218007301253_CloudTrail_us-east-1_20230710T1230Z_9SJSsrxJ0ChF5VFb.json.gz");
    let bad = data("edge/not-gzip.json.gz");
    let out = run(
        &[
            "process",
            bad.to_str().expect("path"),
            good.to_str().expect("path"),
            "/nonexistent/file.json.gz",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("error: {}: neither gzip nor JSON", bad.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: /nonexistent/file.json.gz: cannot open"),
        "{stderr}"
    );
    assert!(stderr.contains("files: 3 (2 failed"), "{stderr}");
    assert!(
        !out.stdout.is_empty(),
        "the good file's changes were written"
    );
}

#[test]
fn explain_prints_one_line_per_dropped_record() {
    let file = data("cloudtrail/cloud-snitch/cloud-snitch_inline_test_events.json.gz");
    let out = run(&["process", "--explain", file.to_str().expect("path")], &[]);
    assert!(out.status.success());
    let stderr = text(&out.stderr);
    let dropped: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("dropped record "))
        .collect();
    assert_eq!(dropped.len(), 3, "{stderr}");
    assert!(
        dropped
            .iter()
            .any(|l| l.contains("eventName=AssumeRole") && l.contains("reason=")),
        "{stderr}"
    );
}

#[test]
fn bucket_goes_into_the_metadata() {
    let file = data("cloudtrail/invictus-ir_aws_dataset/218007301253_CloudTrail_us-east-1_20230710T1230Z_9SJSsrxJ0ChF5VFb.json.gz");
    let out = run(
        &[
            "process",
            "--bucket",
            "acme-trail",
            file.to_str().expect("path"),
        ],
        &[],
    );
    let first: serde_json::Value =
        serde_json::from_str(text(&out.stdout).lines().next().expect("a change")).expect("JSON");
    assert_eq!(first["metadata"]["bucket"], "acme-trail");
}

#[test]
fn settings_from_the_environment_change_the_filter() {
    let file = data("cloudtrail/invictus-ir_aws_dataset/218007301253_CloudTrail_us-east-1_20230710T1230Z_9SJSsrxJ0ChF5VFb.json.gz");
    let default = run(&["process", file.to_str().expect("path")], &[]);
    let keep_failed = run(
        &["process", file.to_str().expect("path")],
        &[("CTC__FILTER__KEEP_FAILED", "true")],
    );
    assert!(keep_failed.stdout.len() > default.stdout.len());
}

#[test]
fn config_check_prints_the_effective_settings() {
    let out = run(
        &["config", "check"],
        &[("CTC__NORMALIZE__MAX_TAG_VALUE_CHARS", "256")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let settings: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON settings");
    assert_eq!(settings["normalize"]["max_tag_value_chars"], 256);
    assert_eq!(settings["records"]["max_record_bytes"], 4_194_304);
    assert_eq!(settings["filter"]["noise"][0], "AssumeRole*");
}

#[test]
fn config_check_reads_an_overlay_file() {
    let dir = std::env::temp_dir().join(format!("ctc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let overlay = dir.join("overlay.toml");
    std::fs::write(&overlay, "[filter]\nextra_noise = [\"Tag*\"]\n").expect("write");
    let out = run(
        &[
            "config",
            "check",
            "--config",
            overlay.to_str().expect("path"),
        ],
        &[],
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let settings: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON settings");
    assert_eq!(settings["filter"]["extra_noise"][0], "Tag*");
}

#[test]
fn config_check_names_a_bad_key_and_exits_1() {
    let out = run(
        &["config", "check"],
        &[("CTC__RECORDS__MAX_RECORD_BYTES", "0")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        "error: configuration: records.max_record_bytes must be 1024..=268435456 (got 0)"
    );
    let out = run(&["config", "check"], &[("CTC__FILTER__NOSUCH", "1")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("nosuch"),
        "{}",
        text(&out.stderr)
    );
}
