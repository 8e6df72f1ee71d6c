//! Preflight: the BigPanda settings.

use super::*;

pub(super) async fn bigpanda_checks(
    settings: &Settings,
    report: &mut Report<'_>,
) -> io::Result<()> {
    if settings.bigpanda.mode == SinkMode::Stdout {
        report.warn(
            "bigpanda.mode",
            "stdout: changes are printed, not sent (a dry run)",
            "set bigpanda.mode (CTC__BIGPANDA__MODE) to http to send them",
        )?;
        return Ok(());
    }
    let finding = base_url_finding(&settings.bigpanda.base_url);
    report.add(&finding)?;
    if finding.status != Status::Fail {
        let timeout = Duration::from_secs(settings.bigpanda.request_timeout_seconds);
        report.add(&super::endpoint::probe(&settings.bigpanda.base_url, timeout).await)?;
    }
    Ok(())
}

/// `bigpanda.base_url`: an http(s) URL of a host, not the changes endpoint itself, and not
/// plain http to another host (the API key would travel in clear).
#[must_use]
pub fn base_url_finding(base_url: &str) -> Finding {
    let what = "bigpanda.base_url".to_owned();
    let fix = "set bigpanda.base_url (CTC__BIGPANDA__BASE_URL) to https://api.bigpanda.io \
               (EU tenants: https://eu-api.bigpanda.io)";
    let fail = |detail: String| Finding {
        status: Status::Fail,
        what: what.clone(),
        detail,
        fix: fix.to_owned(),
    };
    let url = match reqwest::Url::parse(base_url) {
        Ok(url) => url,
        Err(e) => return fail(format!("{base_url:?} is not a URL ({e})")),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return fail(format!("{base_url:?} is not an http(s) URL"));
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return fail(format!("{base_url:?} has no host"));
    };
    if url.path().trim_end_matches('/').ends_with("/data/changes") {
        return fail(format!(
            "{base_url:?} already ends with /data/changes, which the daemon appends: changes \
             would go to .../data/changes/data/changes"
        ));
    }
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if url.scheme() == "http" && !loopback {
        return Finding {
            status: Status::Warn,
            what,
            detail: format!(
                "{base_url} is plain http: API and app keys would cross the network unencrypted"
            ),
            fix: fix.to_owned(),
        };
    }
    Finding {
        status: Status::Ok,
        what,
        detail: format!(
            "changes go to {}/data/changes",
            base_url.trim_end_matches('/')
        ),
        fix: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_must_be_http_hosts_and_plain_http_only_on_loopback() {
        assert_eq!(
            base_url_finding("https://api.bigpanda.io").status,
            Status::Ok
        );
        assert_eq!(base_url_finding("http://127.0.0.1:9000").status, Status::Ok);
        assert_eq!(
            base_url_finding("http://localhost:9000/").status,
            Status::Ok
        );
        assert_eq!(
            base_url_finding("http://api.bigpanda.io").status,
            Status::Warn
        );
        assert_eq!(
            base_url_finding("ftp://api.bigpanda.io").status,
            Status::Fail
        );
        assert_eq!(base_url_finding("not a url").status, Status::Fail);
        assert_eq!(
            base_url_finding("https://api.bigpanda.io/data/changes").status,
            Status::Fail
        );
    }
}
