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
