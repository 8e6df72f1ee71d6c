//! Golden tests over the real CloudTrail files in `tests/data/cloudtrail`.
//!
//! Counts, identifiers and, for each change, `summary`, `start`, `ticket_url` and the user tags
//! are compared with `tests/data/golden/reference.json`, written by an independent Python reading
//! of change-model.md (`scripts/reference-filter.py`; `scripts/test.sh` checks it is current).
//! Exact changes for one record of every identity type are compared with
//! `tests/data/golden/changes/*.json`; `UPDATE_GOLDEN=1 cargo test --test golden` rewrites those
//! that differ and fails, so the diff is reviewed by hand before the rerun that passes.

use cloudtrail_changes::commands::process::{self, Request};
use cloudtrail_changes::core::filter::{Dedup, Policy, Reason};
use cloudtrail_changes::core::normalize::{self, Origin};
use cloudtrail_changes::core::pipeline::{Outcome, Pipeline, Tally};
use cloudtrail_changes::core::records::{self, Element, Limits, RecordReader, RecordsError};
use cloudtrail_changes::settings;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

fn default_settings() -> settings::Settings {
    settings::load_with_env(None, HashMap::new()).expect("defaults load")
}

/// Runs `process` over `paths`; returns the change lines, the summary and the stderr text.
fn run_process(
    paths: &[PathBuf],
    explain: bool,
) -> (Vec<serde_json::Value>, process::Summary, String) {
    let request = Request {
        paths: paths.to_vec(),
        explain,
        bucket: None,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let summary =
        process::run(&default_settings(), &request, &mut out, &mut err).expect("in-memory output");
    let changes = String::from_utf8(out)
        .expect("UTF-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    (
        changes,
        summary,
        String::from_utf8(err).expect("UTF-8 errors"),
    )
}

/// The fields of a change the Python reference computes too.
fn reference_view(change: &serde_json::Value) -> serde_json::Value {
    let user_tags: serde_json::Map<String, serde_json::Value> = change["tags"]
        .as_object()
        .expect("tags")
        .iter()
        .filter(|(k, _)| k.starts_with("user_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    serde_json::json!({
        "identifier": change["identifier"],
        "summary": change["summary"],
        "start": change["start"],
        "ticket_url": change["ticket_url"],
        "user_tags": user_tags,
    })
}

#[test]
fn counts_per_drop_reason_over_all_real_files_match_the_reference() {
    let reference: serde_json::Value =
        serde_json::from_reader(File::open(data("golden/reference.json")).expect("reference"))
            .expect("JSON");
    let (changes, summary, _) = run_process(&[data("cloudtrail")], false);
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert_eq!(summary.files, 62);
    let counts = &reference["counts"];
    assert_eq!(
        summary.tally.records,
        counts["records"].as_u64().expect("records")
    );
    assert_eq!(summary.tally.records, 3490);
    assert_eq!(
        summary.tally.changes,
        counts["changes"].as_u64().expect("changes")
    );
    for reason in Reason::ALL {
        assert_eq!(
            summary.tally.dropped(reason),
            counts[reason.as_str()].as_u64().unwrap_or(0),
            "{}",
            reason.as_str()
        );
    }
    let ids: Vec<&serde_json::Value> = changes.iter().map(|c| &c["identifier"]).collect();
    let expected = reference["changes"].as_array().expect("changes");
    let expected_ids: Vec<&serde_json::Value> = expected.iter().map(|c| &c["identifier"]).collect();
    assert_eq!(ids, expected_ids, "the same changes, in the same order");
    for (change, want) in changes.iter().zip(expected) {
        assert_eq!(
            &reference_view(change),
            want,
            "summary, start, ticket_url and user tags as the reference reads the model"
        );
    }
}

#[test]
fn every_change_is_a_complete_changes_api_body() {
    let (changes, _, _) = run_process(&[data("cloudtrail")], false);
    for c in &changes {
        assert!(
            c["identifier"].as_str().is_some_and(|s| !s.is_empty()),
            "{c}"
        );
        assert_eq!(c["status"], "Done");
        assert!(c["summary"].as_str().is_some_and(|s| !s.is_empty()));
        assert_eq!(c["start"], c["end"]);
        assert!(c["start"].as_i64().is_some_and(|t| t > 1_000_000_000));
        let tags = c["tags"].as_object().expect("tags object");
        assert!(
            tags.values()
                .all(|v| v.as_str().is_some_and(|s| s.chars().count() <= 1024)),
            "tags are strings within the limit"
        );
        assert!(tags.contains_key("user_name"));
        assert!(
            tags.values()
                .all(|v| !matches!(v.as_str(), Some("" | "{}" | "[]"))),
            "empty values make no tag: {c}"
        );
        assert!(
            c["start"].as_i64().is_some_and(|t| t >= 1_356_998_400),
            "no time before CloudTrail: {c}"
        );
    }
}

/// One record of each identity type found in the real data:
/// (golden name, file, index in `Records`, its `userIdentity.type`).
const CHOSEN: [(&str, &str, u64, Option<&str>); 9] = [
    ("iam-user", "invictus-ir_aws_dataset/218007301253_CloudTrail_us-east-1_20230710T1200Z_iLj9fb7yyUG9X4Bf.json.gz", 219, Some("IAMUser")),
    ("assumed-role", "invictus-ir_aws_dataset/218007301253_CloudTrail_us-east-1_20230710T1200Z_iLj9fb7yyUG9X4Bf.json.gz", 160, Some("AssumedRole")),
    ("root", "awsdocs-cloudtrail-user-guide/awsdocs_cloudtrail-user-guide_examples.json.gz", 8, Some("Root")),
    ("aws-service", "cloud-snitch/AWSLogs/333333333333/CloudTrail/us-east-1/2025/03/06/333333333333_CloudTrail_us-east-1_20250306T0320Z_ZgdYr0lP8M9fWEH8.json.gz", 0, Some("AWSService")),
    ("aws-account", "cloud-snitch/cloud-snitch_inline_test_events.json.gz", 0, Some("AWSAccount")),
    ("web-identity-user", "cloud-snitch/cloud-snitch_inline_test_events.json.gz", 2, Some("WebIdentityUser")),
    ("federated-user", "panther-analysis/panther-analysis_rule-tests_complete.json.gz", 3, Some("FederatedUser")),
    ("assumed-role-without-session", "panther-analysis/panther-analysis_rule-tests_complete.json.gz", 114, Some("AssumedRole")),
    ("no-identity-type", "awsdocs-cloudtrail-user-guide/awsdocs_cloudtrail-user-guide_examples.json.gz", 22, None),
];

/// The change of record `index` of `file`, whatever the filter would say of it.
fn change_of(file: &str, index: u64) -> serde_json::Value {
    let (_, json) = records::open(
        File::open(data("cloudtrail").join(file)).expect("file"),
        &Limits::default(),
    )
    .expect("opens");
    let mut found = None;
    let origin = Origin {
        bucket: Some("example-trail-bucket"),
        key: file,
    };
    RecordReader::new(json, 1 << 20)
        .for_each(|i, element| {
            if let (true, Element::Record(r)) = (i == index, element) {
                let change = normalize::normalize(&r, origin, normalize::Options::default())
                    .expect("well formed");
                found = Some(serde_json::to_value(change).expect("serializes"));
            }
            Ok::<(), RecordsError>(())
        })
        .expect("reads");
    found.unwrap_or_else(|| panic!("no record {index} in {file}"))
}

#[test]
fn a_record_of_every_identity_type_maps_to_its_exact_change() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut rewritten = Vec::new();
    for (name, file, index, user_type) in CHOSEN {
        let actual = change_of(file, index);
        assert_eq!(
            actual["tags"]["user_type"].as_str(),
            user_type,
            "{name}: the chosen record has the named identity type"
        );
        let golden = data(&format!("golden/changes/{name}.json"));
        let expected: Option<serde_json::Value> = File::open(&golden)
            .ok()
            .and_then(|f| serde_json::from_reader(f).ok());
        if update && expected.as_ref() != Some(&actual) {
            std::fs::write(
                &golden,
                serde_json::to_string_pretty(&actual).expect("JSON") + "\n",
            )
            .unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
            rewritten.push(name);
            continue;
        }
        let expected =
            expected.unwrap_or_else(|| panic!("{}: missing or not JSON", golden.display()));
        assert_eq!(actual, expected, "{name}: {file} record {index}");
    }
    // A rewritten golden proves nothing until a person has read it.
    assert!(
        rewritten.is_empty(),
        "goldens rewritten: review the diff and rerun ({})",
        rewritten.join(", ")
    );
}

#[test]
fn the_partial_files_malformed_records_are_counted_with_their_index() {
    let (changes, summary, err) = run_process(
        &[data(
            "cloudtrail/panther-analysis/panther-analysis_rule-tests_partial.json.gz",
        )],
        true,
    );
    assert!(summary.failed.is_empty());
    assert_eq!(summary.tally.records, 53);
    let malformed: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("reason=malformed"))
        .collect();
    assert_eq!(
        malformed.len() as u64,
        summary.tally.dropped(Reason::Malformed)
    );
    assert!(
        summary.tally.dropped(Reason::Malformed) >= 40,
        "most of the partial file lacks eventID/eventTime"
    );
    assert!(
        malformed.iter().all(|l| l.starts_with("dropped record ")),
        "{malformed:?}"
    );
    assert!(
        malformed.iter().any(|l| l.contains("eventID is missing")),
        "{malformed:?}"
    );
    assert_eq!(summary.tally.changes, changes.len() as u64);
}

#[test]
fn duplicates_across_the_files_of_one_call_are_printed_once() {
    let file = data("cloudtrail/invictus-ir_aws_dataset/218007301253_CloudTrail_us-east-1_20230710T1200Z_iLj9fb7yyUG9X4Bf.json.gz");
    let (once, _, _) = run_process(std::slice::from_ref(&file), false);
    let (twice, summary, _) = run_process(&[file.clone(), file], false);
    assert!(!once.is_empty());
    assert_eq!(twice.len(), once.len());
    assert_eq!(summary.tally.dropped(Reason::Duplicate), once.len() as u64);
}

#[test]
fn a_file_that_is_not_gzip_fails_alone_and_the_others_go_on() {
    let good = data("cloudtrail/invictus-ir_aws_dataset/218007301253_CloudTrail_us-east-1_20230710T1230Z_9SJSsrxJ0ChF5VFb.json.gz");
    let (changes, summary, err) = run_process(
        &[
            data("edge/not-gzip.json.gz"),
            good.clone(),
            data("edge/empty-records.json.gz"),
        ],
        false,
    );
    assert_eq!(summary.files, 3);
    assert_eq!(summary.failed.len(), 1, "{err}");
    assert!(
        err.contains("not-gzip.json.gz: neither gzip nor JSON"),
        "{err}"
    );
    let (alone, _, _) = run_process(&[good], false);
    assert!(!alone.is_empty());
    assert_eq!(changes, alone);
}

#[test]
fn a_truncated_file_keeps_the_changes_before_the_cut() {
    let (partial, summary, err) = run_process(&[data("edge/truncated.json.gz")], false);
    assert_eq!(summary.failed.len(), 1, "{err}");
    assert!(
        summary.tally.records > 0,
        "records before the cut were read"
    );
    let (whole, _, _) = run_process(
        &[data("cloudtrail/invictus-ir_aws_dataset/218007301253_CloudTrail_us-east-1_20230710T1200Z_iLj9fb7yyUG9X4Bf.json.gz")],
        false,
    );
    let ids = |list: &[serde_json::Value]| {
        list.iter()
            .map(|c| c["identifier"].clone())
            .collect::<Vec<_>>()
    };
    assert!(!partial.is_empty() && partial.len() < whole.len());
    assert_eq!(
        ids(&partial),
        ids(&whole[..partial.len()]),
        "a prefix of the whole file's changes"
    );
    assert!(
        err.contains("truncated.json.gz: reading failed at byte"),
        "names the file and the offset: {err}"
    );
}

#[test]
fn an_empty_records_array_is_a_file_with_no_changes() {
    let (changes, summary, err) = run_process(&[data("edge/empty-records.json.gz")], false);
    assert!(summary.failed.is_empty(), "{err}");
    assert_eq!((summary.tally.records, changes.len()), (0, 0));
}

#[test]
fn the_pipeline_tally_survives_an_error() {
    let policy = Policy::default();
    let pipeline = Pipeline {
        policy: &policy,
        normalize: normalize::Options::default(),
        max_record_bytes: 1 << 20,
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    };
    let json = br#"{"Records":[{"eventID":"a","eventTime":"2024-01-01T00:00:00Z","eventName":"CreateUser"},{"eventID":"#;
    let mut tally = Tally::default();
    let mut seen = 0;
    let result = pipeline.run(
        &json[..],
        Origin {
            bucket: None,
            key: "k",
        },
        &mut Dedup::default(),
        &mut tally,
        |o| {
            if matches!(o, Outcome::Change(_)) {
                seen += 1;
            }
            Ok::<(), std::io::Error>(())
        },
    );
    assert!(result.is_err());
    assert_eq!((tally.records, tally.changes, seen), (1, 1, 1));
}

#[test]
fn explain_names_an_implausible_time_as_malformed_and_the_ssm_agent_reports_as_noise() {
    let (changes, summary, err) = run_process(&[data("edge/second-round.json")], true);
    assert!(summary.failed.is_empty(), "{err}");
    let implausible = "reason=malformed (eventTime is implausible: before 2013-01-01T00:00:00Z or more than a day after now)";
    for (index, id, name, reason) in [
        (0, "second-round-0", "CreateAssociation", implausible),
        (1, "second-round-1", "CreateAssociation", implausible),
        (2, "second-round-2", "CreateAssociation", implausible),
        (
            3,
            "second-round-3",
            "UpdateInstanceInformation",
            "reason=noise",
        ),
        (
            4,
            "second-round-4",
            "UpdateInstanceAssociationStatus",
            "reason=noise",
        ),
    ] {
        let line = format!("dropped record {index}: eventID={id} eventName={name} {reason}\n");
        assert!(err.contains(&line), "{line} in {err}");
    }
    assert_eq!(
        (
            summary.tally.dropped(Reason::Malformed),
            summary.tally.dropped(Reason::Noise)
        ),
        (3, 2)
    );
    // The first plausible second is kept; its ticket_url is China's console, and a string
    // requestParameters is one `rp` tag.
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["start"], 1_356_998_400);
    assert_eq!(
        changes[0]["ticket_url"],
        "https://console.amazonaws.cn/cloudtrail/home?region=cn-north-1#/events/second-round-5"
    );
    assert_eq!(changes[0]["tags"]["rp"], "AWS-RunPatchBaseline");
}
