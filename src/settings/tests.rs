use super::*;
use std::io::Write;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn defaults_load_and_match_the_code_defaults() {
    let s = load_with_env(None, env(&[])).expect("defaults load");
    assert_eq!(s.records, Limits::default());
    assert_eq!(s.policy.settings, FilterSettings::default());
    assert_eq!(s.normalize, normalize::Options::default());
    assert_eq!(s.log.format, LogFormat::Text);
}

#[test]
fn a_list_variable_with_a_single_value_is_a_one_element_list() {
    let s = load_with_env(
        None,
        env(&[
            ("CTC__FILTER__EXTRA_NOISE", "Describe*"),
            ("CTC__WORKER__RETRY_BACKOFF_SECONDS", "5"),
        ]),
    )
    .expect("loads");
    assert_eq!(s.policy.settings.extra_noise, vec!["Describe*".to_owned()]);
    assert_eq!(s.worker.retry_backoff_seconds, vec![5]);
}

#[test]
fn a_numeric_list_variable_is_comma_separated() {
    let s = load_with_env(
        None,
        env(&[("CTC__WORKER__RETRY_BACKOFF_SECONDS", "2, 5,10")]),
    )
    .expect("loads");
    assert_eq!(s.worker.retry_backoff_seconds, vec![2, 5, 10]);
    let e = load_with_env(
        None,
        env(&[("CTC__WORKER__RETRY_BACKOFF_SECONDS", "2,soon")]),
    )
    .expect_err("not a number");
    assert!(
        e.to_string().contains("retry_backoff_seconds") || e.to_string().contains("soon"),
        "{e}"
    );
}

#[test]
fn environment_overrides_scalars_and_lists() {
    let s = load_with_env(
        None,
        env(&[
            ("CTC__FILTER__KEEP_FAILED", "true"),
            ("CTC__FILTER__EXTRA_NOISE", "Describe*,Get*"),
        ]),
    )
    .expect("loads");
    assert!(s.policy.settings.keep_failed);
    assert_eq!(
        s.policy.settings.extra_noise,
        vec!["Describe*".to_owned(), "Get*".to_owned()]
    );
}

#[test]
fn an_overlay_file_overrides_the_defaults_and_env_overrides_the_overlay() {
    let mut f = tempfile_in_target("overlay.toml");
    writeln!(
        f.1,
        "[normalize]\nmax_tag_value_chars = 64\n[log]\nformat = \"json\""
    )
    .expect("write");
    let s = load_with_env(
        Some(&f.0),
        env(&[("CTC__NORMALIZE__MAX_TAG_VALUE_CHARS", "100")]),
    );
    let _ = std::fs::remove_dir_all(f.0.parent().expect("temp dir"));
    let s = s.expect("loads");
    assert_eq!(s.normalize.max_tag_value_chars, 100);
    assert_eq!(s.log.format, LogFormat::Json);
}

#[test]
fn an_unknown_key_is_an_error_that_names_it() {
    let err =
        load_with_env(None, env(&[("CTC__FILTER__KEEP_FAILD", "true")])).expect_err("unknown key");
    assert!(err.to_string().contains("keep_faild"), "{err}");
}

#[test]
fn an_out_of_range_value_names_the_key_and_the_range() {
    let err = load_with_env(None, env(&[("CTC__RECORDS__MAX_RECORD_BYTES", "5")]))
        .expect_err("too small");
    assert_eq!(
        err.to_string(),
        "configuration: records.max_record_bytes must be 1024..=268435456 (got 5)"
    );
}

#[test]
fn a_bad_glob_names_the_noise_key() {
    let err =
        load_with_env(None, env(&[("CTC__FILTER__EXTRA_NOISE", "Get[")])).expect_err("bad glob");
    assert!(
        err.to_string()
            .starts_with("configuration: filter.noise holds a bad glob"),
        "{err}"
    );
}

#[test]
fn a_missing_overlay_file_is_named() {
    let err =
        load_with_env(Some(Path::new("/nonexistent/ctc.toml")), env(&[])).expect_err("missing");
    assert!(err.to_string().contains("/nonexistent/ctc.toml"), "{err}");
}

#[test]
fn a_wrong_type_is_an_error() {
    let err =
        load_with_env(None, env(&[("CTC__FILTER__KEEP_FAILED", "maybe")])).expect_err("not a bool");
    assert!(err.to_string().contains("keep_failed"), "{err}");
}

fn tempfile_in_target(name: &str) -> (std::path::PathBuf, std::fs::File) {
    let dir = std::env::temp_dir().join(format!("ctc-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    let file = std::fs::File::create(&path).expect("create");
    (path, file)
}

const DATA_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const OLD_KEY: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=";

#[test]
fn without_an_encryption_key_keys_may_only_be_stored_when_plaintext_is_allowed() {
    let refused = load_with_env(None, env(&[]))
        .expect("loads")
        .subscriptions
        .require_sealed()
        .expect_err("no key, no permission");
    for named in [
        "subscriptions.encryption_key",
        "subscriptions.allow_plaintext_keys = true",
        "openssl rand -base64 32",
    ] {
        assert!(refused.contains(named), "{named} in {refused}");
    }
    let allowed = load_with_env(
        None,
        env(&[("CTC__SUBSCRIPTIONS__ALLOW_PLAINTEXT_KEYS", "true")]),
    )
    .expect("loads");
    assert_eq!(allowed.subscriptions.require_sealed(), Ok(()));
    let sealed = load_with_env(
        None,
        env(&[("CTC__SUBSCRIPTIONS__ENCRYPTION_KEY", DATA_KEY)]),
    )
    .expect("loads");
    assert_eq!(sealed.subscriptions.require_sealed(), Ok(()));
}

#[test]
fn previous_encryption_keys_are_a_checked_comma_separated_list_and_never_printed() {
    let s = load_with_env(
        None,
        env(&[
            ("CTC__SUBSCRIPTIONS__ENCRYPTION_KEY", DATA_KEY),
            (
                "CTC__SUBSCRIPTIONS__PREVIOUS_ENCRYPTION_KEYS",
                &format!("{OLD_KEY},{DATA_KEY}"),
            ),
        ]),
    )
    .expect("loads");
    assert_eq!(s.subscriptions.previous_encryption_keys.len(), 2);
    let printed = format!(
        "{} {:?}",
        serde_json::to_string(&s.subscriptions).expect("json"),
        s.subscriptions
    );
    assert!(
        !printed.contains(OLD_KEY) && !printed.contains(DATA_KEY),
        "{printed}"
    );
    assert!(printed.contains("[2 redacted]"), "{printed}");

    let bad = load_with_env(
        None,
        env(&[
            ("CTC__SUBSCRIPTIONS__ENCRYPTION_KEY", DATA_KEY),
            (
                "CTC__SUBSCRIPTIONS__PREVIOUS_ENCRYPTION_KEYS",
                &format!("{OLD_KEY},short"),
            ),
        ]),
    )
    .expect_err("a bad previous key")
    .to_string();
    assert!(
        bad.contains("subscriptions.previous_encryption_keys") && bad.contains("key 2"),
        "{bad}"
    );
    let without_current = load_with_env(
        None,
        env(&[("CTC__SUBSCRIPTIONS__PREVIOUS_ENCRYPTION_KEYS", OLD_KEY)]),
    )
    .expect_err("previous keys need a current key")
    .to_string();
    assert!(
        without_current.contains("subscriptions.previous_encryption_keys"),
        "{without_current}"
    );
}
