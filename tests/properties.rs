//! Properties of the record stream and the mapping, over generated inputs.

use cloudtrail_changes::filter::{Dedup, Policy};
use cloudtrail_changes::normalize::{self, Origin};
use cloudtrail_changes::pipeline::{Outcome, Pipeline, Tally};
use proptest::prelude::*;

/// A JSON value of bounded depth with awkward strings.
fn value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[a-zé日\"\\\\/\\n\\t -]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::vec(("[a-z]{1,6}", inner), 0..4)
                .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A record as (key, value) members: the fields the mapping reads plus unknown ones.
fn record() -> impl Strategy<Value = Vec<(String, serde_json::Value)>> {
    (
        "[0-9a-f-]{1,36}",
        prop::sample::select(vec![
            "CreateUser",
            "PutBucketPolicy",
            "RunInstances",
            "GetObject",
            "AssumeRole",
        ]),
        prop::collection::vec(("[a-zA-Z]{1,8}", value()), 0..5),
        prop::collection::vec(value(), 0..3),
        value(),
    )
        .prop_map(|(id, name, params, resources, extra)| {
            let params: serde_json::Map<String, serde_json::Value> = params.into_iter().collect();
            vec![
                ("eventID".to_owned(), id.into()),
                ("eventTime".to_owned(), "2024-03-01T10:20:30Z".into()),
                ("eventName".to_owned(), name.into()),
                ("awsRegion".to_owned(), "eu-west-1".into()),
                (
                    "userIdentity".to_owned(),
                    serde_json::json!({"type": "IAMUser", "userName": "u"}),
                ),
                ("requestParameters".to_owned(), params.into()),
                ("resources".to_owned(), resources.into()),
                ("zUnknown".to_owned(), extra),
            ]
        })
}

/// Writes members as a JSON object with `gap` between every token.
fn write_object(members: &[(String, serde_json::Value)], gap: &str) -> String {
    let body: Vec<String> = members
        .iter()
        .map(|(k, v)| {
            format!(
                "{gap}{}{gap}:{gap}{}{gap}",
                serde_json::to_string(k).unwrap_or_default(),
                pretty_or_compact(v, gap)
            )
        })
        .collect();
    format!("{{{}}}", body.join(","))
}

fn pretty_or_compact(v: &serde_json::Value, gap: &str) -> String {
    if gap.is_empty() {
        serde_json::to_string(v).unwrap_or_default()
    } else {
        serde_json::to_string_pretty(v).unwrap_or_default()
    }
}

/// The changes `process` would produce for a document.
fn changes_of(doc: &[u8]) -> Vec<serde_json::Value> {
    let policy = Policy::default();
    let pipeline = Pipeline {
        policy: &policy,
        normalize: normalize::Options::default(),
        max_record_bytes: 1 << 20,
    };
    let mut out = Vec::new();
    let mut tally = Tally::default();
    let _ = pipeline.run(
        doc,
        Origin {
            bucket: None,
            key: "k",
        },
        &mut Dedup::default(),
        &mut tally,
        |o| {
            if let Outcome::Change(c) = o {
                out.push(serde_json::to_value(c).unwrap_or_default());
            }
            Ok::<(), std::io::Error>(())
        },
    );
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_record_maps_to_the_same_change_whatever_the_whitespace_and_field_order(
        members in record(), order in any::<prop::sample::Index>(), gap in prop::sample::select(vec!["", " ", "\n\t ", "\r\n"])
    ) {
        let compact = format!(r#"{{"Records":[{}]}}"#, write_object(&members, ""));
        let mut shuffled = members.clone();
        shuffled.rotate_left(order.index(members.len()));
        shuffled.reverse();
        let spaced = format!("{gap}{{{gap}\"Records\"{gap}:{gap}[{gap}{}{gap}]{gap}}}{gap}", write_object(&shuffled, gap));
        prop_assert_eq!(changes_of(compact.as_bytes()), changes_of(spaced.as_bytes()));
    }

    #[test]
    fn the_record_stream_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut doc = br#"{"Records":["#.to_vec();
        doc.extend(&bytes);
        let _ = changes_of(&doc);
        let _ = changes_of(&bytes);
    }

    #[test]
    fn every_tag_value_is_within_the_limit(members in record(), limit in 16usize..64) {
        let doc = format!(r#"{{"Records":[{}]}}"#, write_object(&members, ""));
        let policy = Policy::default();
        let pipeline = Pipeline { policy: &policy, normalize: normalize::Options { max_tag_value_chars: limit }, max_record_bytes: 1 << 20 };
        let mut tally = Tally::default();
        let result = pipeline.run(doc.as_bytes(), Origin { bucket: None, key: "k" }, &mut Dedup::default(), &mut tally, |o| {
            if let Outcome::Change(c) = o {
                for (k, v) in &c.tags.0 {
                    assert!(v.chars().count() <= limit, "{k}: {v}");
                }
            }
            Ok::<(), std::io::Error>(())
        });
        prop_assert!(result.is_ok());
    }
}
