//! `check`'s probe of `bigpanda.base_url`: one `POST {base_url}/data/changes` with an empty
//! JSON object and no keys, which the Changes API refuses (no keys, no identifier) with its
//! JSON error, so no change can be created. It tells a base URL that reaches the Changes API
//! from one that reaches a wrong path, a proxy's error page or nothing.

use super::{Finding, Status};
use crate::forward::classify::bigpanda_error;
use std::time::Duration;

const WHAT: &str = "bigpanda.base_url probe";
const FIX: &str = "set bigpanda.base_url (CTC__BIGPANDA__BASE_URL) to the API host only, e.g. \
                   https://api.bigpanda.io (EU: https://eu-api.bigpanda.io), and check any proxy \
                   in front of it";

/// Probes `base_url` (bounded by `timeout`); never sends a key.
pub async fn probe(base_url: &str, timeout: Duration) -> Finding {
    let url = format!("{}/data/changes", base_url.trim_end_matches('/'));
    let client = match reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => return finding(Status::Fail, format!("cannot build an HTTP client: {e}")),
    };
    let sent = client
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body("{}")
        .send()
        .await;
    let mut response = match sent {
        Ok(r) => r,
        Err(e) => return finding(Status::Fail, format!("POST {url} failed: {}", chain(&e))),
    };
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    while body.len() < 4096 {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let body = String::from_utf8_lossy(&body);
    judge(&url, status, content_type.as_deref(), &body)
}

/// What the probe's answer says of the endpoint. Pure.
#[must_use]
pub fn judge(url: &str, status: u16, content_type: Option<&str>, body: &str) -> Finding {
    let error = bigpanda_error(content_type, body);
    match (status, error) {
        (400 | 401 | 403 | 409 | 422, Some(error)) => Finding {
            status: Status::Ok,
            what: WHAT.to_owned(),
            detail: format!(
                "{url} answers like the Changes API (HTTP {status} with its JSON error {error:?} to a probe without keys; nothing was created)"
            ),
            fix: String::new(),
        },
        (401 | 403, None) => finding(
            Status::Warn,
            format!(
                "{url} refused the probe without keys (HTTP {status}) but not with BigPanda's JSON error: {}",
                shown(content_type, body)
            ),
        ),
        (200..=299, _) => finding(
            Status::Fail,
            format!(
                "{url} accepted an empty change without keys (HTTP {status}): that is not the Changes API"
            ),
        ),
        _ => finding(
            Status::Fail,
            format!(
                "{url} does not answer like the Changes API: HTTP {status}, {}; changes sent there would be held back and retried",
                shown(content_type, body)
            ),
        ),
    }
}

fn finding(status: Status, detail: String) -> Finding {
    Finding {
        status,
        what: WHAT.to_owned(),
        detail,
        fix: FIX.to_owned(),
    }
}

fn shown(content_type: Option<&str>, body: &str) -> String {
    let flat: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut: String = flat.chars().take(100).collect();
    let more = if cut.len() < flat.len() { "…" } else { "" };
    let kind = content_type.unwrap_or("no content type");
    if cut.is_empty() {
        format!("{kind}, empty body")
    } else {
        format!("{kind}: {cut}{more}")
    }
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://api.example/data/changes";

    #[test]
    fn bigpandas_json_refusal_of_the_probe_is_ok() {
        let f = judge(
            URL,
            401,
            Some("application/json"),
            r#"{"status":"error","error":"Unauthorized"}"#,
        );
        assert_eq!(f.status, Status::Ok, "{f}");
        assert!(f.detail.contains("answers like the Changes API"), "{f}");
    }

    #[test]
    fn a_404_page_or_a_success_fails_and_names_the_url() {
        for (status, content_type, body) in [
            (
                404,
                Some("text/html"),
                "<html><h1>404 Not Found</h1></html>",
            ),
            (404, Some("application/json"), r#"{"error":"Not Found"}"#),
            (301, None, ""),
            (502, Some("text/html"), "<html>Bad Gateway</html>"),
            (204, None, ""),
        ] {
            let f = judge(URL, status, content_type, body);
            assert_eq!(f.status, Status::Fail, "{f}");
            assert!(f.detail.starts_with(URL), "{f}");
            assert!(f.fix.contains("bigpanda.base_url"), "{f}");
        }
    }

    #[test]
    fn a_refusal_that_is_not_bigpandas_json_is_a_warning() {
        let f = judge(URL, 403, Some("text/html"), "<html>Forbidden</html>");
        assert_eq!(f.status, Status::Warn, "{f}");
    }
}
