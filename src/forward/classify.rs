//! What an answer from `{base_url}/data/changes` means, from its status, content type and the
//! start of its body. Pure: no I/O, so every rule is unit tested.
//!
//! Only BigPanda's own refusal of a change (a 400 or 409 with BigPanda's JSON error body)
//! rejects that change. A 404, a redirect, or a 4xx that is not BigPanda's JSON (an HTML page,
//! an empty body, another service's error) says the endpoint or a proxy in front of it is
//! wrong: the change is not sent and must not be dropped. It must never decide a change is
//! gone on an answer that could have come from something other than the Changes API.

/// The fate one answer gives the change it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Any 2xx.
    Accepted,
    /// BigPanda refused this change for good; `error` is its error text.
    Rejected { error: String },
    /// 401/403: the subscription's keys are wrong.
    Unauthorized,
    /// Not the Changes API answering: a wrong `base_url` or a proxy; `answer` describes it.
    Endpoint { answer: String },
    /// 429, 5xx or another status worth retrying with backoff.
    Transient,
}

/// Classifies one answer. `body` is the start of the response body (as read).
#[must_use]
pub fn classify(status: u16, content_type: Option<&str>, body: &str) -> Verdict {
    match status {
        200..=299 => Verdict::Accepted,
        401 | 403 => Verdict::Unauthorized,
        429 | 500..=599 => Verdict::Transient,
        400 | 409 => match bigpanda_error(content_type, body) {
            Some(error) => Verdict::Rejected { error },
            None => Verdict::Endpoint {
                answer: describe(status, content_type, body),
            },
        },
        300..=499 => Verdict::Endpoint {
            answer: describe(status, content_type, body),
        },
        _ => Verdict::Transient,
    }
}

/// BigPanda's error text when `body` is its JSON error: a JSON content type and an object with
/// a non-empty `error`, `errors`, `message` or `status` member.
#[must_use]
pub fn bigpanda_error(content_type: Option<&str>, body: &str) -> Option<String> {
    let json = content_type.is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        t.starts_with("application/json") || t.contains("+json")
    });
    if !json {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let object = value.as_object()?;
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        serde_json::Value::Array(a) if !a.is_empty() => Some(v.to_string()),
        serde_json::Value::Object(o) if !o.is_empty() => Some(v.to_string()),
        _ => None,
    };
    ["error", "errors", "message", "status"]
        .iter()
        .find_map(|field| object.get(*field).and_then(text))
}

/// "HTTP 404, text/html: <html>…" cut to a short line for logs and DLQ attributes.
fn describe(status: u16, content_type: Option<&str>, body: &str) -> String {
    const SHOWN: usize = 120;
    let kind = content_type.unwrap_or("no content type");
    let flat: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.is_empty() {
        return format!("HTTP {status}, {kind}, empty body");
    }
    let cut: String = flat.chars().take(SHOWN).collect();
    let more = if cut.len() < flat.len() { "…" } else { "" };
    format!("HTTP {status}, {kind}: {cut}{more}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: Option<&str> = Some("application/json; charset=utf-8");
    const HTML_404: &str =
        "<html><head><title>404 Not Found</title></head>\n<body>nginx</body></html>";

    #[test]
    fn a_400_with_bigpandas_json_error_rejects_the_change() {
        let verdict = classify(
            400,
            JSON,
            r#"{"status":"error","error":"start must be a number"}"#,
        );
        assert_eq!(
            verdict,
            Verdict::Rejected {
                error: "start must be a number".into()
            }
        );
        assert!(matches!(
            classify(409, JSON, r#"{"message":"conflict"}"#),
            Verdict::Rejected { .. }
        ));
    }

    #[test]
    fn a_404_is_the_endpoint_even_with_a_json_body() {
        for body in [HTML_404, r#"{"status":"error","error":"Not Found"}"#, ""] {
            assert!(
                matches!(classify(404, JSON, body), Verdict::Endpoint { .. }),
                "{body}"
            );
        }
    }

    #[test]
    fn a_400_that_is_not_bigpandas_json_is_the_endpoint() {
        let cases = [
            (Some("text/html"), HTML_404),
            (None, ""),
            (JSON, ""),
            (JSON, "[]"),
            (JSON, r#"{"detail":"other service"}"#),
            (JSON, r#"{"error":""}"#),
            (Some("text/plain"), r#"{"error":"looks like json"}"#),
        ];
        for (content_type, body) in cases {
            assert!(
                matches!(classify(400, content_type, body), Verdict::Endpoint { .. }),
                "{content_type:?} {body}"
            );
        }
    }

    #[test]
    fn other_4xx_and_redirects_are_the_endpoint_and_name_what_answered() {
        let Verdict::Endpoint { answer } = classify(404, Some("text/html"), HTML_404) else {
            panic!("404 HTML is the endpoint");
        };
        assert!(
            answer.starts_with("HTTP 404, text/html: <html><head>"),
            "{answer}"
        );
        for status in [301, 302, 405, 410, 413, 422] {
            assert!(
                matches!(classify(status, None, ""), Verdict::Endpoint { .. }),
                "{status}"
            );
        }
        assert_eq!(
            classify(405, None, "  "),
            Verdict::Endpoint {
                answer: "HTTP 405, no content type, empty body".into()
            }
        );
    }

    #[test]
    fn success_keys_and_retryable_statuses_keep_their_meaning() {
        for status in [200, 201, 204] {
            assert_eq!(classify(status, None, ""), Verdict::Accepted);
        }
        assert_eq!(classify(401, JSON, "{}"), Verdict::Unauthorized);
        assert_eq!(
            classify(403, Some("text/html"), HTML_404),
            Verdict::Unauthorized
        );
        for status in [429, 500, 502, 503, 504] {
            assert_eq!(
                classify(status, Some("text/html"), HTML_404),
                Verdict::Transient
            );
        }
    }

    #[test]
    fn a_long_answer_is_cut_on_a_character_boundary() {
        let body = "é".repeat(500);
        let Verdict::Endpoint { answer } = classify(404, None, &body) else {
            panic!("404");
        };
        assert!(answer.ends_with('…'), "{answer}");
        assert!(answer.chars().count() < 160, "{answer}");
    }
}
