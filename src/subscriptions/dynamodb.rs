//! DynamoDB subscription store: one table shared by a fleet of API nodes and workers. Every write
//! that depends on the stored row is a conditional write, so two nodes racing on one bucket cannot
//! both win. Checkpoints live in the same table under `checkpoint:<object>` keys, tombstones of
//! removed subscriptions under `tombstone:<bucket>` keys (a bucket name never contains ':'); both
//! expire through DynamoDB TTL.
//!
//! It must never put a row's values (above all `api_key` / `app_key`) in an error or a log line,
//! and never let a subscription call read, list or delete a checkpoint or tombstone item.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
    TimeToLiveStatus,
};
use aws_sdk_dynamodb::Client;

use super::store::{
    Checkpoints, Put, Row, Rows, StoreError, Tombstone, Tombstones, TOMBSTONE_RETENTION_SECONDS,
};

const BACKEND: &str = "dynamodb";
/// The global secondary index `list(Some(owner))` queries.
pub const OWNER_INDEX: &str = "owner-index";
/// Prefix of checkpoint items' `bucket_name`.
const CHECKPOINT_PREFIX: &str = "checkpoint:";
/// Prefix of tombstone items' `bucket_name`.
const TOMBSTONE_PREFIX: &str = "tombstone:";
/// The TTL attribute of checkpoint and tombstone items.
const TTL_ATTRIBUTE: &str = "expires_at";
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How often `put` retries when the item vanishes between its create and its update.
const PUT_ATTEMPTS: usize = 3;

type Item = HashMap<String, AttributeValue>;

/// A [`Store`] in one DynamoDB table (hash key `bucket_name`, GSI [`OWNER_INDEX`]).
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// A store on `table`; nothing is called until the first operation.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    /// The table this store uses.
    #[must_use]
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table (on-demand billing, GSI [`OWNER_INDEX`]), waits until it is ACTIVE and
    /// enables TTL on `expires_at`. Idempotent: on an existing table it only waits and enables
    /// TTL if needed.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when a call fails or the table is not ACTIVE within 60 s.
    pub async fn create_table(&self) -> Result<bool, StoreError> {
        let created = self.request_table().await?;
        self.wait_active().await?;
        self.enable_ttl().await?;
        Ok(created)
    }

    /// Sends CreateTable; `false` when the table already exists.
    async fn request_table(&self) -> Result<bool, StoreError> {
        let op = "create_table";
        let string_key = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| self.unavailable(op, &e))
        };
        let hash_key = |name: &str| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(KeyType::Hash)
                .build()
                .map_err(|e| self.unavailable(op, &e))
        };
        let owner_index = GlobalSecondaryIndex::builder()
            .index_name(OWNER_INDEX)
            .key_schema(hash_key("owner")?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()
            .map_err(|e| self.unavailable(op, &e))?;
        let result = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(string_key("bucket_name")?)
            .attribute_definitions(string_key("owner")?)
            .key_schema(hash_key("bucket_name")?)
            .global_secondary_indexes(owner_index)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.unavailable(op, &e)),
        }
    }

    async fn wait_active(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        loop {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| self.unavailable("create_table", &e))?;
            let status = described.table().and_then(|t| t.table_status()).cloned();
            if status == Some(TableStatus::Active) {
                return Ok(());
            }
            if started.elapsed() >= ACTIVE_TIMEOUT {
                return Err(self.unavailable_because(
                    "create_table",
                    format!("not ACTIVE after {ACTIVE_TIMEOUT:?} (status {status:?})"),
                ));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn enable_ttl(&self) -> Result<(), StoreError> {
        let op = "create_table";
        let described = self
            .client
            .describe_time_to_live()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| self.unavailable(op, &e))?;
        if let Some(ttl) = described.time_to_live_description() {
            let on = matches!(
                ttl.time_to_live_status(),
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            );
            if on && ttl.attribute_name() == Some(TTL_ATTRIBUTE) {
                return Ok(());
            }
        }
        let spec = TimeToLiveSpecification::builder()
            .attribute_name(TTL_ATTRIBUTE)
            .enabled(true)
            .build()
            .map_err(|e| self.unavailable(op, &e))?;
        let result = self
            .client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(spec)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Another node enabled it between our describe and update.
            Err(e) if e.message().is_some_and(|m| m.contains("already enabled")) => Ok(()),
            Err(e) => Err(self.unavailable(op, &e)),
        }
    }

    /// An SDK error as [`StoreError::Unavailable`], naming the table (never a row's values).
    fn unavailable<E>(&self, operation: &'static str, err: &E) -> StoreError
    where
        E: std::error::Error,
    {
        self.unavailable_because(operation, DisplayErrorContext(err).to_string())
    }

    fn unavailable_because(&self, operation: &'static str, detail: String) -> StoreError {
        StoreError::Unavailable {
            backend: BACKEND,
            operation,
            detail: format!("table {}: {detail}", self.table),
        }
    }

    /// PutItem if absent: `false` when the bucket already has an item.
    async fn create(&self, row: &Row) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(row_item(row)))
            .condition_expression("attribute_not_exists(bucket_name)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.unavailable("put", &e)),
        }
    }

    /// UpdateItem if `row.owner` owns the item: `false` when it does not (or it is gone).
    async fn update_owned(&self, row: &Row) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("bucket_name", s(&row.bucket_name))
            .update_expression(
                "SET bucket_region = :bucket_region, iam_role_arn = :iam_role_arn, \
                 iam_role_external_id = :iam_role_external_id, api_key = :api_key, \
                 app_key = :app_key, #owner = :owner, updated_at = :updated_at",
            )
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":bucket_region", s(&row.bucket_region))
            .expression_attribute_values(":iam_role_arn", s(&row.iam_role_arn))
            .expression_attribute_values(":iam_role_external_id", s(&row.iam_role_external_id))
            .expression_attribute_values(":api_key", s(&row.api_key))
            .expression_attribute_values(":app_key", s(&row.app_key))
            .expression_attribute_values(":owner", s(&row.owner))
            .expression_attribute_values(":updated_at", n(row.updated_at))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.unavailable("put", &e)),
        }
    }

    /// GetItem with a consistent read, for any key (checkpoints included).
    async fn get_item(
        &self,
        key: &str,
        operation: &'static str,
    ) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("bucket_name", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.unavailable(operation, &e))?;
        Ok(output.item)
    }

    /// Every item of `owner`, through the GSI, page by page.
    async fn query_owner(&self, owner: &str) -> Result<Vec<Item>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(OWNER_INDEX)
            .key_condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner))
            .into_paginator()
            .send();
        let mut items = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.unavailable("list", &e))?;
            items.extend(page.items.unwrap_or_default());
        }
        Ok(items)
    }

    /// Every subscription item, page by page, checkpoints and tombstones filtered out by the
    /// service.
    async fn scan_all(&self) -> Result<Vec<Item>, StoreError> {
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression(
                "NOT begins_with(bucket_name, :checkpoint) AND NOT begins_with(bucket_name, :tombstone)",
            )
            .expression_attribute_values(":checkpoint", s(CHECKPOINT_PREFIX))
            .expression_attribute_values(":tombstone", s(TOMBSTONE_PREFIX))
            .consistent_read(true)
            .into_paginator()
            .send();
        let mut items = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.unavailable("list", &e))?;
            items.extend(page.items.unwrap_or_default());
        }
        Ok(items)
    }

    /// Every item whose key starts with `prefix`, page by page (a Scan: for the rare on-call
    /// and offboarding calls, never on a message's path).
    async fn scan_prefix(
        &self,
        prefix: &str,
        operation: &'static str,
    ) -> Result<Vec<Item>, StoreError> {
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("begins_with(bucket_name, :prefix)")
            .expression_attribute_values(":prefix", s(prefix))
            .consistent_read(true)
            .into_paginator()
            .send();
        let mut items = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.unavailable(operation, &e))?;
            items.extend(page.items.unwrap_or_default());
        }
        Ok(items)
    }
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A checkpoint or tombstone key: never a subscription.
fn is_checkpoint_key(bucket: &str) -> bool {
    bucket.starts_with(CHECKPOINT_PREFIX) || bucket.starts_with(TOMBSTONE_PREFIX)
}

fn tombstone_key(bucket: &str) -> String {
    format!("{TOMBSTONE_PREFIX}{bucket}")
}

fn checkpoint_key(object: &str) -> String {
    format!("{CHECKPOINT_PREFIX}{object}")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn row_item(row: &Row) -> Item {
    HashMap::from([
        ("bucket_name".to_owned(), s(&row.bucket_name)),
        ("bucket_region".to_owned(), s(&row.bucket_region)),
        ("iam_role_arn".to_owned(), s(&row.iam_role_arn)),
        (
            "iam_role_external_id".to_owned(),
            s(&row.iam_role_external_id),
        ),
        ("api_key".to_owned(), s(&row.api_key)),
        ("app_key".to_owned(), s(&row.app_key)),
        ("owner".to_owned(), s(&row.owner)),
        ("created_at".to_owned(), n(row.created_at)),
        ("updated_at".to_owned(), n(row.updated_at)),
    ])
}

/// A string attribute; the message names the attribute, never its value.
fn string(item: &Item, name: &str) -> Result<String, String> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value.clone()),
        Some(_) => Err(format!("attribute {name} is not a string")),
        None => Err(format!("attribute {name} is missing")),
    }
}

fn number(item: &Item, name: &str) -> Result<i64, String> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value
            .parse()
            .map_err(|_| format!("attribute {name} is not an integer")),
        Some(_) => Err(format!("attribute {name} is not a number")),
        None => Err(format!("attribute {name} is missing")),
    }
}

/// A subscription item as a [`Row`]; missing or mistyped attributes make it
/// [`StoreError::Corrupt`].
fn item_row(item: &Item) -> Result<Row, StoreError> {
    let fields = || -> Result<Row, String> {
        Ok(Row {
            bucket_name: string(item, "bucket_name")?,
            bucket_region: string(item, "bucket_region")?,
            iam_role_arn: string(item, "iam_role_arn")?,
            iam_role_external_id: string(item, "iam_role_external_id")?,
            api_key: string(item, "api_key")?,
            app_key: string(item, "app_key")?,
            owner: string(item, "owner")?,
            created_at: number(item, "created_at")?,
            updated_at: number(item, "updated_at")?,
        })
    };
    fields().map_err(|detail| StoreError::Corrupt {
        bucket: string(item, "bucket_name").unwrap_or_else(|_| "<unreadable>".to_owned()),
        detail,
    })
}

/// Items as rows, sorted by bucket name; checkpoint and tombstone items never become rows.
fn sorted_rows(items: &[Item]) -> Result<Vec<Row>, StoreError> {
    let mut rows = items
        .iter()
        .filter(|item| !string(item, "bucket_name").is_ok_and(|b| is_checkpoint_key(&b)))
        .map(item_row)
        .collect::<Result<Vec<_>, _>>()?;
    rows.sort_by(|a, b| a.bucket_name.cmp(&b.bucket_name));
    Ok(rows)
}

/// The accepted count of a checkpoint item, or `None` when it has expired (TTL deletes lazily).
fn checkpoint_value(item: &Item) -> Result<Option<u64>, String> {
    if number(item, TTL_ATTRIBUTE)? <= now() {
        return Ok(None);
    }
    let accepted = number(item, "accepted")?;
    u64::try_from(accepted)
        .map(Some)
        .map_err(|_| "attribute accepted is negative".to_owned())
}

/// A tombstone item as `(bucket, tombstone)`, or `None` when it has expired.
fn tombstone_value(item: &Item) -> Result<Option<(String, Tombstone)>, StoreError> {
    let key = string(item, "bucket_name").unwrap_or_else(|_| "<unreadable>".to_owned());
    let fields = || -> Result<Option<(String, Tombstone)>, String> {
        if number(item, TTL_ATTRIBUTE)? <= now() {
            return Ok(None);
        }
        let bucket = key
            .strip_prefix(TOMBSTONE_PREFIX)
            .ok_or_else(|| "key is not a tombstone's".to_owned())?;
        let last_seen = match item.get("last_seen") {
            None => None,
            Some(_) => Some(number(item, "last_seen")?),
        };
        let late = match item.get("late_notifications") {
            None => 0,
            Some(_) => u64::try_from(number(item, "late_notifications")?)
                .map_err(|_| "attribute late_notifications is negative".to_owned())?,
        };
        Ok(Some((
            bucket.to_owned(),
            Tombstone {
                removed_at: number(item, "removed_at")?,
                last_seen,
                late_notifications: late,
            },
        )))
    };
    fields().map_err(|detail| StoreError::Corrupt {
        bucket: key.clone(),
        detail,
    })
}

impl Rows for DynamoStore {
    async fn put(&self, row: &Row) -> Result<Put, StoreError> {
        let conflict = || StoreError::Conflict {
            bucket: row.bucket_name.clone(),
        };
        // A checkpoint key is not a bucket: refuse it rather than overwrite a checkpoint.
        if is_checkpoint_key(&row.bucket_name) {
            return Err(conflict());
        }
        for _ in 0..PUT_ATTEMPTS {
            if self.create(row).await? {
                return Ok(Put::Created);
            }
            if self.update_owned(row).await? {
                return Ok(Put::Updated);
            }
            // The update's condition failed: another owner, or the item vanished (or changed
            // hands back to us) in between, in which case the create is worth another try.
            match self.get_item(&row.bucket_name, "put").await? {
                Some(item) if string(&item, "owner").as_deref() != Ok(row.owner.as_str()) => {
                    return Err(conflict());
                }
                _ => {}
            }
        }
        Err(self.unavailable_because(
            "put",
            format!(
                "bucket {} changed during each of {PUT_ATTEMPTS} attempts",
                row.bucket_name
            ),
        ))
    }

    async fn get(&self, bucket: &str) -> Result<Option<Row>, StoreError> {
        if is_checkpoint_key(bucket) {
            return Ok(None);
        }
        match self.get_item(bucket, "get").await? {
            Some(item) => item_row(&item).map(Some),
            None => Ok(None),
        }
    }

    async fn delete_owned(&self, bucket: &str, owner: &str) -> Result<bool, StoreError> {
        if is_checkpoint_key(bucket) {
            return Ok(false);
        }
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("bucket_name", s(bucket))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.unavailable("delete_owned", &e)),
        }
    }

    async fn remove(&self, bucket: &str) -> Result<bool, StoreError> {
        if is_checkpoint_key(bucket) {
            return Ok(false);
        }
        // The condition tells "deleted" from "was not there".
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("bucket_name", s(bucket))
            .condition_expression("attribute_exists(bucket_name)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.unavailable("remove", &e)),
        }
    }

    async fn list(&self, owner: Option<&str>) -> Result<Vec<Row>, StoreError> {
        let items = match owner {
            Some(owner) => self.query_owner(owner).await?,
            None => self.scan_all().await?,
        };
        sorted_rows(&items)
    }
}

impl Checkpoints for DynamoStore {
    async fn checkpoint(&self, object: &str) -> Result<Option<u64>, StoreError> {
        let key = checkpoint_key(object);
        match self.get_item(&key, "checkpoint").await? {
            Some(item) => checkpoint_value(&item).map_err(|detail| StoreError::Corrupt {
                bucket: key,
                detail,
            }),
            None => Ok(None),
        }
    }

    async fn save_checkpoint(
        &self,
        object: &str,
        accepted: u64,
        ttl_seconds: u64,
    ) -> Result<(), StoreError> {
        let expires_at = now().saturating_add(i64::try_from(ttl_seconds).unwrap_or(i64::MAX));
        self.client
            .put_item()
            .table_name(&self.table)
            .item("bucket_name", s(&checkpoint_key(object)))
            .item("accepted", n(accepted))
            .item(TTL_ATTRIBUTE, n(expires_at))
            .send()
            .await
            .map_err(|e| self.unavailable("save_checkpoint", &e))?;
        Ok(())
    }

    async fn clear_checkpoint(&self, object: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("bucket_name", s(&checkpoint_key(object)))
            .send()
            .await
            .map_err(|e| self.unavailable("clear_checkpoint", &e))?;
        Ok(())
    }

    async fn clear_checkpoints(&self, bucket: &str) -> Result<u64, StoreError> {
        let prefix = checkpoint_key(&format!("{bucket}/"));
        let items = self.scan_prefix(&prefix, "clear_checkpoints").await?;
        let mut cleared = 0;
        for item in &items {
            let Ok(key) = string(item, "bucket_name") else {
                continue;
            };
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("bucket_name", s(&key))
                .send()
                .await
                .map_err(|e| self.unavailable("clear_checkpoints", &e))?;
            cleared += 1;
        }
        Ok(cleared)
    }
}

impl Tombstones for DynamoStore {
    async fn tombstone(&self, bucket: &str, now: i64) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("bucket_name", s(&tombstone_key(bucket)))
            .item("removed_at", n(now))
            .item("late_notifications", n(0))
            .item(
                TTL_ATTRIBUTE,
                n(now.saturating_add(TOMBSTONE_RETENTION_SECONDS)),
            )
            .send()
            .await
            .map_err(|e| self.unavailable("tombstone", &e))?;
        Ok(())
    }

    async fn is_tombstoned(&self, bucket: &str) -> Result<Option<Tombstone>, StoreError> {
        match self
            .get_item(&tombstone_key(bucket), "is_tombstoned")
            .await?
        {
            Some(item) => Ok(tombstone_value(&item)?.map(|(_, t)| t)),
            None => Ok(None),
        }
    }

    async fn note_late_notification(&self, bucket: &str, now: i64) -> Result<(), StoreError> {
        // Conditional, so a late notification never creates a tombstone, nor counts on an
        // expired one TTL has not deleted yet.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("bucket_name", s(&tombstone_key(bucket)))
            .update_expression("ADD late_notifications :one SET last_seen = :now")
            .condition_expression("attribute_exists(bucket_name) AND #expires > :now")
            .expression_attribute_names("#expires", TTL_ATTRIBUTE)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(self.unavailable("note_late_notification", &e)),
        }
    }

    async fn clear_tombstone(&self, bucket: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("bucket_name", s(&tombstone_key(bucket)))
            .send()
            .await
            .map_err(|e| self.unavailable("clear_tombstone", &e))?;
        Ok(())
    }

    async fn list_tombstones(&self) -> Result<Vec<(String, Tombstone)>, StoreError> {
        let items = self
            .scan_prefix(TOMBSTONE_PREFIX, "list_tombstones")
            .await?;
        let mut tombstones = Vec::new();
        for item in &items {
            tombstones.extend(tombstone_value(item)?);
        }
        tombstones.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(tombstones)
    }
}

#[cfg(test)]
mod tests {
    //! Run against a local endpoint (moto in server mode):
    //! `CTC_TEST_DYNAMODB_ENDPOINT=http://127.0.0.1:5055 cargo test --lib dynamodb`.
    use super::*;
    use crate::subscriptions::store::conformance::{self, row, Backend};

    const ENDPOINT_VAR: &str = "CTC_TEST_DYNAMODB_ENDPOINT";

    async fn client(endpoint: &str) -> Client {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .load()
            .await;
        Client::new(&config)
    }

    /// A store on a fresh table, or `None` (a skip; a failure with `CI` set) when no endpoint
    /// is configured.
    async fn store(test: &str) -> Option<DynamoStore> {
        let Ok(endpoint) = std::env::var(ENDPOINT_VAR) else {
            conformance::skip(
                &format!("dynamodb::{test}"),
                &format!("{ENDPOINT_VAR} is not set"),
            );
            return None;
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        let table = format!("ctc-{test}-{}-{nanos}", std::process::id());
        let store = DynamoStore::new(client(&endpoint).await, table);
        assert!(store.create_table().await.expect("create table"));
        Some(store)
    }

    /// DynamoDB stores on one fresh table, each made by its own client like another node.
    struct Dynamo(String);

    impl Backend for Dynamo {
        type Store = DynamoStore;
        async fn fresh(&self) -> DynamoStore {
            store(&self.0).await.expect("checked by backend()")
        }
        async fn another(&self, store: &DynamoStore) -> DynamoStore {
            second(store).await
        }
    }

    async fn backend(test: &str) -> Option<Dynamo> {
        if std::env::var(ENDPOINT_VAR).is_err() {
            conformance::skip(
                &format!("dynamodb::{test}"),
                &format!("{ENDPOINT_VAR} is not set"),
            );
            return None;
        }
        Some(Dynamo(test.to_owned()))
    }

    conformance::suite!(backend);

    /// Another store on the same table with its own client, like another node.
    async fn second(store: &DynamoStore) -> DynamoStore {
        let endpoint = std::env::var(ENDPOINT_VAR).expect("endpoint");
        DynamoStore::new(client(&endpoint).await, store.table())
    }

    #[tokio::test]
    async fn create_table_is_idempotent() {
        let Some(store) = store("idempotent").await else {
            return;
        };
        assert!(!store.create_table().await.expect("create again"));
        let ttl = store
            .client
            .describe_time_to_live()
            .table_name(store.table())
            .send()
            .await
            .expect("describe ttl");
        let ttl = ttl.time_to_live_description().expect("ttl description");
        assert_eq!(ttl.attribute_name(), Some(TTL_ATTRIBUTE));
        assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
    }

    #[tokio::test]
    async fn list_pages_through_many_items() {
        let Some(store) = store("pages").await else {
            return;
        };
        // ~1.2 MB of items: more than one 1 MB Scan/Query page.
        let padding = "x".repeat(40_000);
        for i in 0..30 {
            let mut r = row(&format!("bucket-{i:02}"), "o1", 1);
            r.iam_role_external_id.clone_from(&padding);
            store.put(&r).await.expect("put");
        }
        let first = store.client.scan().table_name(store.table()).send().await;
        assert!(
            first.expect("scan").last_evaluated_key.is_some(),
            "one page only"
        );
        assert_eq!(store.list(None).await.expect("scan").len(), 30);
        assert_eq!(store.list(Some("o1")).await.expect("query").len(), 30);
    }

    #[tokio::test]
    async fn checkpoint_keys_are_not_subscriptions() {
        let Some(store) = store("keys").await else {
            return;
        };
        store.save_checkpoint("obj", 4, 3600).await.expect("save");
        let key = checkpoint_key("obj");

        assert_eq!(store.get(&key).await.expect("get"), None);
        assert!(!store.delete_owned(&key, "o1").await.expect("delete"));
        assert!(!store.remove(&key).await.expect("remove"));
        let err = store.put(&row(&key, "o1", 1)).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
        assert_eq!(store.checkpoint("obj").await.expect("read"), Some(4));
    }

    #[tokio::test]
    async fn unreadable_item_is_corrupt_without_its_values() {
        let Some(store) = store("corrupt").await else {
            return;
        };
        let mut item = row_item(&row("b1", "o1", 100));
        item.remove("created_at");
        item.insert("updated_at".to_owned(), s("sealed-not-a-number"));
        store
            .client
            .put_item()
            .table_name(store.table())
            .set_item(Some(item))
            .send()
            .await
            .expect("raw put");

        for err in [
            store.get("b1").await.unwrap_err(),
            store.list(None).await.unwrap_err(),
            store.list(Some("o1")).await.unwrap_err(),
        ] {
            let StoreError::Corrupt { bucket, detail } = err else {
                panic!("expected Corrupt, got {err:?}");
            };
            assert_eq!(bucket, "b1");
            assert!(detail.contains("created_at"), "{detail}");
            assert!(!detail.contains("sealed"), "{detail}");
        }
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_unavailable_naming_the_table() {
        if std::env::var(ENDPOINT_VAR).is_err() {
            conformance::skip(
                "dynamodb::unreachable",
                &format!("{ENDPOINT_VAR} is not set"),
            );
            return;
        }
        // Port 9 (discard) on localhost: nothing listens there.
        let store = DynamoStore::new(client("http://127.0.0.1:9").await, "ctc-nowhere");
        let err = store.get("b1").await.unwrap_err();
        let StoreError::Unavailable {
            backend,
            operation,
            detail,
        } = err
        else {
            panic!("expected Unavailable, got {err:?}");
        };
        assert_eq!((backend, operation), ("dynamodb", "get"));
        assert!(detail.contains("ctc-nowhere"), "{detail}");
    }
}
