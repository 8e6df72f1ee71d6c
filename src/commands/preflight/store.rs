//! Preflight: the subscription store and its keys.

use super::*;

/// The store is reachable and its rows open; returns the subscriptions.
pub(super) async fn store_checks(
    settings: &Settings,
    aws: &SdkConfig,
    report: &mut Report<'_>,
) -> io::Result<Option<Vec<Subscription>>> {
    let spec = &settings.subscriptions.store;
    let what = format!("subscription store {spec}");
    if let StoreSpec::Sqlite(path) = spec {
        if !path.exists() {
            sqlite_missing(path, &what, report)?;
            encryption_check(settings, report)?;
            return Ok(Some(Vec::new()));
        }
    }
    let subscriptions = match Subscriptions::open(spec, settings.subscriptions.sealer(), aws) {
        Ok(s) => s,
        Err(e) => {
            report.add(&store_failure(&what, spec, &e))?;
            return Ok(None);
        }
    };
    let found = match subscriptions.list(None).await {
        Ok(found) => found,
        Err(e) => {
            report.add(&store_failure(&what, spec, &e))?;
            return Ok(None);
        }
    };
    report.ok(
        what,
        format!("reachable, {}", plural(found.len() as u64, "subscription")),
    )?;
    encryption_check(settings, report)?;
    Ok(Some(found))
}

/// A SQLite file that does not exist yet: fine for a first start, a wrong path otherwise.
pub(super) fn sqlite_missing(path: &Path, what: &str, report: &mut Report<'_>) -> io::Result<()> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let dir = absolute
        .parent()
        .map_or_else(|| Path::new("/").to_owned(), Path::to_owned);
    if dir.is_dir() {
        report.warn(
            what,
            format!(
                "{} does not exist yet: `run` creates it empty; if subscriptions were saved \
                 before, they are in another file",
                absolute.display()
            ),
            "if this is not a first start, set subscriptions.store (CTC__SUBSCRIPTIONS__STORE) \
             to sqlite: and the absolute path of the existing file",
        )
    } else {
        report.fail(
            what,
            format!("the directory {} does not exist", dir.display()),
            "create it (writable by the daemon), or set subscriptions.store \
             (CTC__SUBSCRIPTIONS__STORE) to sqlite:PATH in an existing directory",
        )
    }
}

pub(super) fn store_failure(what: &str, spec: &StoreSpec, error: &StoreError) -> Finding {
    let (detail, fix) = match error {
        StoreError::Corrupt { bucket, detail } => (
            format!("the subscription of bucket {bucket} cannot be read ({detail})"),
            format!(
                "set subscriptions.encryption_key (CTC__SUBSCRIPTIONS__ENCRYPTION_KEY) to the \
                 key the subscriptions were saved with, or remove this one \
                 (`cloudtrail-changes subscriptions remove {bucket}`) and subscribe again"
            ),
        ),
        StoreError::Unavailable { detail, .. } => {
            let fix = match spec {
                StoreSpec::DynamoDb(table) if detail.contains("ResourceNotFound") => format!(
                    "the table {table} does not exist: run `cloudtrail-changes subscriptions \
                     init-table` (with the same settings), or set subscriptions.store to the \
                     existing table"
                ),
                StoreSpec::DynamoDb(table) => format!(
                    "allow the daemon dynamodb:GetItem, PutItem, DeleteItem, Scan, Query and \
                     UpdateItem on the table {table}, and check aws.region and the network"
                ),
                StoreSpec::Sqlite(path) => format!(
                    "make {} a readable and writable SQLite file for the daemon's user",
                    path.display()
                ),
            };
            (format!("unavailable ({detail})"), fix)
        }
        StoreError::Conflict { .. } => (error.to_string(), "retry".to_owned()),
    };
    Finding {
        status: Status::Fail,
        what: what.to_owned(),
        detail,
        fix,
    }
}

pub(super) fn encryption_check(settings: &Settings, report: &mut Report<'_>) -> io::Result<()> {
    let what = "subscription keys";
    if settings.subscriptions.encryption_key.is_some() {
        report.ok(what, "sealed with subscriptions.encryption_key")
    } else {
        report.warn(
            what,
            "subscriptions.encryption_key is empty: API and app keys are stored in clear",
            "set CTC__SUBSCRIPTIONS__ENCRYPTION_KEY to the output of `openssl rand -base64 32` \
             (subscriptions saved in clear stay readable and are sealed on their next update)",
        )
    }
}
