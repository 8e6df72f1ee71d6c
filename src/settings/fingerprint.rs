//! The checkpoint fingerprint: what a checkpoint's count of accepted changes is only valid for.
//! A count of N means "the first N changes of this object's list"; the list depends on the
//! filter and normalize settings and on the code that applies them (the version), so a
//! checkpoint saved under other ones must not be trusted.

use super::Settings;
use sha2::{Digest, Sha256};

impl Settings {
    /// 16 hex digits over the version and the `[filter]` and `[normalize]` settings: every
    /// setting that changes which changes an object yields or their order.
    #[must_use]
    pub fn checkpoint_fingerprint(&self) -> String {
        let policy = serde_json::to_string(&self.policy).unwrap_or_default();
        let normalize = serde_json::to_string(&self.normalize).unwrap_or_default();
        let digest = Sha256::new()
            .chain_update(b"cloudtrail-changes checkpoint v1\0")
            .chain_update(env!("CARGO_PKG_VERSION").as_bytes())
            .chain_update(b"\0")
            .chain_update(policy.as_bytes())
            .chain_update(b"\0")
            .chain_update(normalize.as_bytes())
            .finalize();
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::load_with_env;
    use std::collections::HashMap;

    fn fingerprint(env: &[(&str, &str)]) -> String {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        load_with_env(None, env)
            .expect("settings load")
            .checkpoint_fingerprint()
    }

    #[test]
    fn the_same_settings_give_the_same_fingerprint() {
        let a = fingerprint(&[]);
        assert_eq!(a.len(), 16);
        assert_eq!(a, fingerprint(&[]));
        // Settings that do not change the list of changes leave it alone.
        assert_eq!(a, fingerprint(&[("CTC__BIGPANDA__RATE_PER_MINUTE", "10")]));
        assert_eq!(
            a,
            fingerprint(&[("CTC__WORKER__CHANGE_RETRY_SECONDS", "7")])
        );
    }

    #[test]
    fn a_filter_or_normalize_change_gives_another_fingerprint() {
        let default = fingerprint(&[]);
        for (key, value) in [
            ("CTC__FILTER__KEEP_FAILED", "true"),
            ("CTC__FILTER__EXTRA_NOISE", "CreateTags"),
            ("CTC__NORMALIZE__MAX_TAG_VALUE_CHARS", "100"),
        ] {
            assert_ne!(default, fingerprint(&[(key, value)]), "{key}");
        }
    }
}
