//! `subscriptions list|show|remove|rekey|init-table`: the on-call side of the subscription store.

use super::CommandError;
use crate::aws::credentials;
use crate::cli::SubscriptionsCommand;
use crate::settings::Settings;
use crate::subscriptions::{dynamodb, rfc3339, StoreSpec, Subscriptions};
use std::io::Write;

/// Runs one `subscriptions` subcommand; `Ok(false)` when the named subscription does not exist.
///
/// # Errors
/// [`CommandError`] when the store fails or `out` cannot be written.
pub async fn run(
    settings: &Settings,
    command: SubscriptionsCommand,
    out: &mut dyn Write,
) -> Result<bool, CommandError> {
    let found = match command {
        SubscriptionsCommand::List => list(settings, out).await.map(|()| true)?,
        SubscriptionsCommand::Show { bucket } => show(settings, &bucket, out).await?,
        SubscriptionsCommand::Remove { bucket } => remove(settings, &bucket).await?,
        SubscriptionsCommand::Rekey => return rekey(settings, out).await,
        SubscriptionsCommand::InitTable => {
            let created = init_table(settings).await?;
            let what = if created {
                "table created"
            } else {
                "table already exists"
            };
            writeln!(out, "{what}")?;
            true
        }
    };
    if !found {
        eprintln!("no such subscription");
    }
    Ok(found)
}

/// The subscription store alone, for the on-call commands: AWS is configured only when the
/// store is DynamoDB (a SQLite node without AWS credentials must not wait for instance metadata).
async fn store_only(settings: &Settings) -> Result<Subscriptions, CommandError> {
    let aws = match &settings.subscriptions.store {
        StoreSpec::Sqlite(_) => aws_config::SdkConfig::builder().build(),
        StoreSpec::DynamoDb(_) => credentials::sdk_config(&settings.aws).await,
    };
    Ok(Subscriptions::open(
        &settings.subscriptions.store,
        settings.subscriptions.sealer(),
        &aws,
    )?)
}

/// `subscriptions list`: the subscriptions, then the recently removed buckets that still send
/// notifications (their tombstones with late notifications), for on-call to tell the customer.
///
/// # Errors
/// When the store fails or `out` cannot be written.
pub async fn list(settings: &Settings, out: &mut dyn Write) -> Result<(), CommandError> {
    let store = store_only(settings).await?;
    let subs = store.list(None).await?;
    for s in &subs {
        let r = s.redacted();
        writeln!(
            out,
            "{}\t{}\t{}\tapiKey={}\tappKey={}\tupdated={}\tstate={}\tbucket_account={}",
            r.bucket_name,
            r.bucket_region,
            r.iam_role_arn,
            r.api_key,
            r.app_key,
            r.updated_at,
            r.state,
            r.bucket_account_id
        )?;
    }
    if subs.is_empty() {
        writeln!(out, "no subscriptions in {}", settings.subscriptions.store)?;
    }
    let still_sending: Vec<_> = store
        .recently_removed()
        .await?
        .into_iter()
        .filter(|(_, t)| t.late_notifications > 0)
        .collect();
    if !still_sending.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "recently removed buckets still sending notifications (acknowledged, not delivered; \
             ask the customer to remove the bucket's event notification):"
        )?;
        for (bucket, t) in &still_sending {
            writeln!(
                out,
                "{bucket}\tremoved={}\tlast_notification={}\tlate_notifications={}",
                rfc3339(t.removed_at),
                t.last_seen.map_or_else(|| "-".to_owned(), rfc3339),
                t.late_notifications
            )?;
        }
    }
    Ok(())
}

/// `subscriptions show BUCKET`: `false` when there is none.
///
/// # Errors
/// When the store fails or `out` cannot be written.
pub async fn show(
    settings: &Settings,
    bucket: &str,
    out: &mut dyn Write,
) -> Result<bool, CommandError> {
    let Some(s) = store_only(settings).await?.get(bucket).await? else {
        return Ok(false);
    };
    let text = serde_json::to_string_pretty(&s.redacted()).map_err(std::io::Error::from)?;
    writeln!(out, "{text}")?;
    Ok(true)
}

/// `subscriptions remove BUCKET`: `false` when there was none.
///
/// # Errors
/// When the store fails.
pub async fn remove(settings: &Settings, bucket: &str) -> Result<bool, CommandError> {
    let removed = store_only(settings).await?.remove(bucket).await?;
    if removed {
        tracing::info!(bucket, "subscription removed by on-call");
    }
    Ok(removed)
}

/// `subscriptions rekey`: `false` when some rows could not be opened (listed on stderr).
///
/// # Errors
/// [`CommandError::Usage`] without `subscriptions.encryption_key`; the store error otherwise.
pub async fn rekey(settings: &Settings, out: &mut dyn Write) -> Result<bool, CommandError> {
    if settings.subscriptions.encryption_key.is_none() {
        return Err(CommandError::Usage(
            "subscriptions rekey needs subscriptions.encryption_key (the key to re-seal with; \
             keep the old one in subscriptions.previous_encryption_keys until rekey is done)"
                .into(),
        ));
    }
    let done = store_only(settings).await?.rekey().await?;
    writeln!(
        out,
        "re-sealed {} subscriptions with subscriptions.encryption_key ({} removed meanwhile)",
        done.resealed, done.gone
    )?;
    for (bucket, why) in &done.unreadable {
        eprintln!("{bucket}: not re-sealed: {why}");
    }
    Ok(done.unreadable.is_empty())
}

/// `subscriptions init-table`: `true` if the table was created, `false` if it existed.
///
/// # Errors
/// [`CommandError::Usage`] when the store is not DynamoDB; the store error otherwise.
pub async fn init_table(settings: &Settings) -> Result<bool, CommandError> {
    let StoreSpec::DynamoDb(table) = &settings.subscriptions.store else {
        return Err(CommandError::Usage(format!(
            "subscriptions.store is {}; init-table needs dynamodb:TABLE",
            settings.subscriptions.store
        )));
    };
    let aws = credentials::sdk_config(&settings.aws).await;
    let store = dynamodb::DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table.clone());
    Ok(store.create_table().await?)
}
