use super::*;

#[test]
fn store_specs_parse_both_backends_and_refuse_others() {
    assert_eq!(
        StoreSpec::parse("sqlite:/var/lib/ctc/subs.db"),
        Ok(StoreSpec::Sqlite("/var/lib/ctc/subs.db".into()))
    );
    assert_eq!(
        StoreSpec::parse("dynamodb:ctc-subscriptions"),
        Ok(StoreSpec::DynamoDb("ctc-subscriptions".into()))
    );
    for bad in ["", "sqlite:", "postgres:x", "dynamodb:a b", "dynamodb:ab"] {
        assert!(StoreSpec::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn redaction_keeps_only_the_last_four_characters() {
    assert_eq!(redact(&SecretString::from("0123456789abcdef")), "****cdef");
    assert_eq!(redact(&SecretString::from("short")), "****");
}

#[test]
fn fingerprints_differ_per_key_and_hide_it() {
    let a = fingerprint(&SecretString::from("key-a"));
    assert_eq!(a.len(), 64);
    assert_ne!(a, fingerprint(&SecretString::from("key-b")));
    assert!(!a.contains("key-a"));
}

#[test]
fn debug_output_of_a_subscription_hides_the_keys() {
    let s = Subscription {
        bucket_name: "b".into(),
        bucket_region: "us-east-1".into(),
        iam_role_arn: "arn:aws:iam::123456789012:role/r".into(),
        iam_role_external_id: "ext".into(),
        bucket_owner: "123456789012".into(),
        pending: false,
        api_key: SecretString::from("api-key-secret-value"),
        app_key: SecretString::from("app-key-secret-value"),
        created_at: 0,
        updated_at: 0,
    };
    let text = format!("{s:?}");
    assert!(!text.contains("secret"), "{text}");
    assert_eq!(s.redacted().created_at, "1970-01-01T00:00:00Z");
}

fn sqlite_subscriptions(test: &str) -> (Subscriptions, PathBuf) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "ctc-subscriptions-{test}-{}-{nanos}",
        std::process::id()
    ));
    let store = sqlite::SqliteStore::open(&dir.join("subs.db")).expect("open");
    (
        Subscriptions::new(AnyStore::Sqlite(store), Sealer::plain()),
        dir,
    )
}

fn request(bucket: &str, api_key: &str) -> SubscribeRequest {
    validate::subscribe_request(&serde_json::json!({
        "apiKey": api_key,
        "appKey": "fedcba9876543210fedcba9876543210",
        "bucket_name": bucket,
        "bucket_region": "us-east-1",
        "iam_role_arn": "arn:aws:iam::123456789012:role/Reader",
        "iam_role_external_id": "ext-1",
    }))
    .expect("valid request")
}

#[tokio::test]
async fn removal_leaves_a_tombstone_and_clears_the_buckets_checkpoints() {
    let (subs, dir) = sqlite_subscriptions("offboard");
    let (key, other) = (
        SecretString::from("0123456789abcdef0123456789abcdef"),
        SecretString::from("another-api-key-0123456789abcdef"),
    );
    for bucket in ["gone-logs", "kept-logs"] {
        subs.subscribe(&request(bucket, key.expose_secret()), 1)
            .await
            .expect("subscribe");
        subs.store()
            .save_checkpoint(&format!("{bucket}/AWSLogs/a.json.gz#e"), 3, 3600)
            .await
            .expect("checkpoint");
    }

    // A refused unsubscribe changes nothing.
    assert!(!subs
        .unsubscribe(&other, "gone-logs")
        .await
        .expect("refused"));
    assert_eq!(subs.tombstone("gone-logs").await.expect("read"), None);

    let before = unix_now();
    assert!(subs
        .unsubscribe(&key, "gone-logs")
        .await
        .expect("unsubscribe"));
    let tombstone = subs
        .tombstone("gone-logs")
        .await
        .expect("read")
        .expect("kept");
    assert!(tombstone.removed_at >= before, "{tombstone:?}");
    assert_eq!(
        (tombstone.last_seen, tombstone.late_notifications),
        (None, 0)
    );
    let checkpoint = |bucket: &str| format!("{bucket}/AWSLogs/a.json.gz#e");
    assert_eq!(
        subs.store()
            .checkpoint(&checkpoint("gone-logs"))
            .await
            .expect("read"),
        None
    );
    assert_eq!(
        subs.store()
            .checkpoint(&checkpoint("kept-logs"))
            .await
            .expect("read"),
        Some(3)
    );
    assert_eq!(subs.tombstone("kept-logs").await.expect("read"), None);

    subs.note_late_notification("gone-logs", before + 7)
        .await
        .expect("note");
    let removed = subs.recently_removed().await.expect("list");
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].0, "gone-logs");
    assert_eq!(removed[0].1.late_notifications, 1);
    assert_eq!(removed[0].1.last_seen, Some(before + 7));

    // Subscribing again clears the tombstone; on-call's remove leaves one too.
    subs.subscribe(&request("gone-logs", key.expose_secret()), 2)
        .await
        .expect("resubscribe");
    assert_eq!(subs.tombstone("gone-logs").await.expect("read"), None);
    assert!(subs.recently_removed().await.expect("list").is_empty());
    assert!(subs.remove("kept-logs").await.expect("remove"));
    assert!(subs.tombstone("kept-logs").await.expect("read").is_some());
    assert_eq!(
        subs.store()
            .checkpoint(&checkpoint("kept-logs"))
            .await
            .expect("read"),
        None
    );
    assert!(!subs.remove("never-logs").await.expect("remove"));
    assert_eq!(subs.tombstone("never-logs").await.expect("read"), None);
    let _ = std::fs::remove_dir_all(dir);
}

const KEY_OLD: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=";
const KEY_NEW: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn sealer(current: &str, previous: &[&str]) -> Sealer {
    let previous: Vec<SecretString> = previous.iter().map(|k| SecretString::from(*k)).collect();
    Sealer::from_base64(&SecretString::from(current))
        .and_then(|s| s.with_previous(&previous))
        .expect("keys")
}

#[tokio::test]
async fn rekey_reseals_every_row_and_old_rows_stay_readable_during_the_rotation() {
    let (plain, dir) = sqlite_subscriptions("rekey");
    let path = dir.join("subs.db");
    let open = |s: Sealer| {
        Subscriptions::new(
            AnyStore::Sqlite(sqlite::SqliteStore::open(&path).expect("open")),
            s,
        )
    };
    // Before: two rows under the old key, one written in clear before encryption was on.
    let before = open(sealer(KEY_OLD, &[]));
    for (bucket, key) in [
        ("alpha-logs", "alpha-api-key-0001"),
        ("beta-logs", "beta-api-key-00002"),
    ] {
        before
            .subscribe(&request(bucket, key), 1)
            .await
            .expect("subscribe");
    }
    plain
        .subscribe(&request("gamma-logs", "gamma-api-key-0003"), 1)
        .await
        .expect("subscribe");

    // During: the new key with the old one as previous reads every row, and a row written
    // now is sealed with the new key.
    let during = open(sealer(KEY_NEW, &[KEY_OLD]));
    assert_eq!(during.list(None).await.expect("every row opens").len(), 3);
    during
        .subscribe(&request("delta-logs", "delta-api-key-0004"), 2)
        .await
        .expect("subscribe");
    let only_new = open(sealer(KEY_NEW, &[]));
    assert!(
        only_new.get("alpha-logs").await.is_err(),
        "not re-sealed yet"
    );

    let done = during.rekey().await.expect("rekey");
    assert_eq!(
        done,
        rekey::Rekeyed {
            resealed: 4,
            gone: 0,
            unreadable: Vec::new()
        }
    );

    // After: the new key alone opens every row, none is in clear, the old key opens none.
    let rows = only_new
        .list(None)
        .await
        .expect("every row opens with the new key");
    let keys: Vec<String> = rows
        .iter()
        .map(|s| s.api_key.expose_secret().to_owned())
        .collect();
    assert_eq!(
        keys,
        [
            "alpha-api-key-0001",
            "beta-api-key-00002",
            "delta-api-key-0004",
            "gamma-api-key-0003"
        ]
    );
    for row in only_new.store().list(None).await.expect("rows") {
        assert!(
            row.api_key.starts_with("v1:") && row.app_key.starts_with("v1:"),
            "{row:?}"
        );
        assert!(open(sealer(KEY_OLD, &[]))
            .get(&row.bucket_name)
            .await
            .is_err());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn rekey_reports_a_row_no_key_opens_and_reseals_the_others() {
    let (_, dir) = sqlite_subscriptions("rekey-unreadable");
    let path = dir.join("subs.db");
    let open = |s: Sealer| {
        Subscriptions::new(
            AnyStore::Sqlite(sqlite::SqliteStore::open(&path).expect("open")),
            s,
        )
    };
    let lost = "TG9zdExvc3RMb3N0TG9zdExvc3RMb3N0TG9zdExvc3Q=";
    open(sealer(lost, &[]))
        .subscribe(&request("lost-logs", "lost-api-key-00001"), 1)
        .await
        .expect("subscribe");
    open(sealer(KEY_OLD, &[]))
        .subscribe(&request("kept-logs", "kept-api-key-00001"), 1)
        .await
        .expect("subscribe");

    let done = open(sealer(KEY_NEW, &[KEY_OLD]))
        .rekey()
        .await
        .expect("rekey");
    assert_eq!(done.resealed, 1);
    assert_eq!(done.unreadable.len(), 1);
    assert_eq!(done.unreadable[0].0, "lost-logs");
    assert!(open(sealer(KEY_NEW, &[])).get("kept-logs").await.is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}
