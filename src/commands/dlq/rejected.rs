//! How `dlq peek` shows a rejected change (see [`crate::core::rejected`]): which change, from
//! which log file, BigPanda's answer, and the start of the body that will be posted again.

use crate::core::rejected::RejectedChange;
use aws_sdk_sqs::types::MessageAttributeValue;
use std::collections::HashMap;

/// Characters of the change body shown.
const BODY_SHOWN: usize = 200;

/// The lines `peek` prints in place of the object line; `None` when the message is not a
/// rejected change.
pub(super) fn describe(
    attributes: &HashMap<String, MessageAttributeValue>,
    body: &str,
) -> Option<Vec<String>> {
    let text: HashMap<String, String> = attributes
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.string_value()?.to_owned())))
        .collect();
    let lines = match RejectedChange::from_attributes(&text)? {
        Ok(r) => vec![
            format!(
                "  change:  {} from s3://{}/{}",
                super::one_line(&r.event_id),
                super::one_line(&r.bucket),
                super::one_line(&r.key)
            ),
            format!(
                "  answer:  BigPanda said HTTP {}: {}",
                r.status,
                super::one_line(&r.error)
            ),
            format!("  body:    {}", shown(body)),
            format!(
                "  replay:  `dlq redrive --reason {}` posts this body as is with the bucket's current keys",
                crate::core::rejected::REASON
            ),
        ],
        Err(missing) => vec![format!(
            "  change:  (a rejected change without its {missing} attribute: cannot be replayed)"
        )],
    };
    Some(lines)
}

fn shown(body: &str) -> String {
    let line = super::one_line(body);
    if line.chars().count() <= BODY_SHOWN {
        return line;
    }
    let cut: String = line.chars().take(BODY_SHOWN).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(pairs: &[(&str, &str)]) -> HashMap<String, MessageAttributeValue> {
        pairs
            .iter()
            .map(|(k, v)| {
                let value = MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(*v)
                    .build()
                    .expect("a string attribute");
                ((*k).to_owned(), value)
            })
            .collect()
    }

    #[test]
    fn a_rejected_change_shows_its_event_its_file_and_bigpandas_answer() {
        let attrs = attributes(&[
            ("ctc_envelope", "rejected_change"),
            ("bucket", "trail"),
            ("key", "AWSLogs/x.json.gz"),
            ("event_id", "e-1"),
            ("bigpanda_status", "400"),
            ("bigpanda_error", "start must be a number"),
        ]);
        let body = format!(r#"{{"identifier":"e-1","summary":"{}"}}"#, "x".repeat(300));
        let Some(lines) = describe(&attrs, &body) else {
            panic!("a rejected change")
        };
        assert_eq!(lines[0], "  change:  e-1 from s3://trail/AWSLogs/x.json.gz");
        assert_eq!(
            lines[1],
            "  answer:  BigPanda said HTTP 400: start must be a number"
        );
        assert!(lines[2].starts_with("  body:    {\"identifier\":\"e-1\""));
        assert!(lines[2].ends_with('…'), "{}", lines[2]);
    }

    #[test]
    fn other_messages_keep_the_object_line() {
        assert!(describe(&attributes(&[("redriven_at", "now")]), "{}").is_none());
        let broken = describe(&attributes(&[("ctc_envelope", "rejected_change")]), "{}");
        assert!(broken.is_some_and(|l| l[0].contains("without its bucket")));
    }
}
