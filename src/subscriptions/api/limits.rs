//! Request limits of the subscription API: token buckets per client address and in total for
//! POST and DELETE (each POST may cost an STS call), per API key for GET, and a bound on the
//! subscribe-time role checks running at once, so a flood cannot use up our STS quota and stall
//! credentials for every customer. Per replica: a fleet allows its replica count times these.
//!
//! The client address is the connection's peer, or, behind a load balancer, the last value of
//! the one header the operator trusts (`api.client_address_header`): the value the balancer
//! itself appended, which a client cannot forge.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

/// Buckets kept per limit before idle (full) ones are dropped.
const MAX_TRACKED: usize = 100_000;

/// The `[api]` limits, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitSettings {
    /// POST and DELETE requests per minute from one client address.
    pub writes_per_client_per_minute: u32,
    /// POST and DELETE requests per minute from everyone together.
    pub writes_per_minute: u32,
    /// GET requests per minute with one API key.
    pub reads_per_key_per_minute: u32,
    /// Subscribe-time role checks (STS AssumeRole, sample read) running at once.
    pub max_concurrent_role_checks: u32,
    /// Header holding the client address behind a load balancer (its last value); empty: the
    /// connection's peer address.
    pub client_address_header: String,
}

/// One token bucket: `rate` tokens a minute, at most `rate` saved up.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(now: Instant, rate: f64) -> Self {
        Self {
            tokens: rate,
            at: now,
        }
    }

    /// Takes a token, or says how long until one is there.
    fn take(&mut self, now: Instant, rate: f64) -> Result<(), Duration> {
        let per_second = rate / 60.0;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_second).min(rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / per_second))
        }
    }
}

/// Token buckets by key (client address, API key fingerprint).
#[derive(Debug)]
pub struct Keyed {
    rate: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Keyed {
    /// `per_minute` requests a minute per key.
    #[must_use]
    pub fn new(per_minute: u32) -> Self {
        Self {
            rate: f64::from(per_minute),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request of `key` at `now`; `Err` is how long to wait.
    ///
    /// # Errors
    /// The wait until the next request of `key` is allowed.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(key) {
            // Keys idle for a minute are full again: forgetting them changes nothing.
            buckets.retain(|_, b| now.saturating_duration_since(b.at) < Duration::from_secs(60));
        }
        let rate = self.rate;
        buckets
            .entry(key.to_owned())
            .or_insert_with(|| Bucket::full(now, rate))
            .take(now, rate)
    }
}

/// Every limit of one API node.
#[derive(Debug)]
pub struct Limits {
    writes_per_client: Keyed,
    writes: Keyed,
    reads_per_key: Keyed,
    header: Option<String>,
    /// Permits for the subscribe-time role checks.
    pub role_checks: Semaphore,
}

/// Which limit refused a request, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// `client`, `total` or `key`: the metric label and the answer's wording.
    pub limit: &'static str,
    pub retry_after: Duration,
}

impl Limits {
    /// The limits of `settings`.
    #[must_use]
    pub fn new(settings: &LimitSettings) -> Self {
        let header = settings.client_address_header.trim().to_ascii_lowercase();
        Self {
            writes_per_client: Keyed::new(settings.writes_per_client_per_minute),
            writes: Keyed::new(settings.writes_per_minute),
            reads_per_key: Keyed::new(settings.reads_per_key_per_minute),
            header: (!header.is_empty()).then_some(header),
            role_checks: Semaphore::new(settings.max_concurrent_role_checks as usize),
        }
    }

    /// The client address of a request: the trusted header's last value when one is
    /// configured (absent: the peer, so a request that bypassed the balancer is still limited),
    /// else the peer's IP.
    #[must_use]
    pub fn client(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> String {
        let from_header = self.header.as_deref().and_then(|name| {
            let value = headers.get_all(name).iter().next_back()?.to_str().ok()?;
            let last = value.rsplit(',').next()?.trim();
            (!last.is_empty()).then(|| last.to_owned())
        });
        from_header
            .or_else(|| peer.map(|p| p.ip().to_string()))
            .unwrap_or_else(|| "unknown".to_owned())
    }

    /// Takes one POST or DELETE of `client` at `now`: its own limit first, then the total.
    ///
    /// # Errors
    /// [`Refused`] naming the limit and the wait.
    pub fn write(&self, client: &str, now: Instant) -> Result<(), Refused> {
        self.writes_per_client
            .take(client, now)
            .map_err(|retry_after| Refused {
                limit: "client",
                retry_after,
            })?;
        self.writes.take("", now).map_err(|retry_after| Refused {
            limit: "total",
            retry_after,
        })
    }

    /// Takes one GET of the API key with fingerprint `key` at `now`.
    ///
    /// # Errors
    /// [`Refused`] with the wait.
    pub fn read(&self, key: &str, now: Instant) -> Result<(), Refused> {
        self.reads_per_key
            .take(key, now)
            .map_err(|retry_after| Refused {
                limit: "key",
                retry_after,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LimitSettings {
        LimitSettings {
            writes_per_client_per_minute: 3,
            writes_per_minute: 5,
            reads_per_key_per_minute: 2,
            max_concurrent_role_checks: 2,
            client_address_header: String::new(),
        }
    }

    #[test]
    fn a_client_gets_its_burst_then_waits_for_the_next_token() {
        let limits = Limits::new(&settings());
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(limits.write("a", t), Ok(()));
        }
        let refused = limits.write("a", t).expect_err("over the client's limit");
        assert_eq!(refused.limit, "client");
        assert_eq!(refused.retry_after, Duration::from_secs(20));
        assert_eq!(limits.write("a", t + Duration::from_secs(20)), Ok(()));
    }

    #[test]
    fn the_total_limit_holds_across_clients() {
        let limits = Limits::new(&settings());
        let t = Instant::now();
        for client in ["a", "a", "b", "b", "c"] {
            assert_eq!(limits.write(client, t), Ok(()), "{client}");
        }
        let refused = limits.write("d", t).expect_err("over the total");
        assert_eq!(refused.limit, "total");
        assert_eq!(refused.retry_after, Duration::from_secs(12));
    }

    #[test]
    fn reads_are_limited_per_key() {
        let limits = Limits::new(&settings());
        let t = Instant::now();
        assert_eq!(limits.read("k1", t), Ok(()));
        assert_eq!(limits.read("k1", t), Ok(()));
        assert_eq!(limits.read("k1", t).map_err(|r| r.limit), Err("key"));
        assert_eq!(limits.read("k2", t), Ok(()));
    }

    #[test]
    fn the_client_comes_from_the_trusted_header_only_when_one_is_configured() {
        let peer: SocketAddr = "10.0.0.9:4321".parse().expect("addr");
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            "1.2.3.4, 5.6.7.8".parse().expect("value"),
        );
        let direct = Limits::new(&settings());
        assert_eq!(direct.client(&headers, Some(peer)), "10.0.0.9");
        let behind = Limits::new(&LimitSettings {
            client_address_header: "X-Forwarded-For".into(),
            ..settings()
        });
        // The last value is the one the balancer appended; the client wrote the others.
        assert_eq!(behind.client(&headers, Some(peer)), "5.6.7.8");
        assert_eq!(behind.client(&HeaderMap::new(), Some(peer)), "10.0.0.9");
    }
}
