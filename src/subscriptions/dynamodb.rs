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
    Checkpoints, Put, Row, Rows, SealedKeys, StoreError, Tombstone, Tombstones,
    TOMBSTONE_RETENTION_SECONDS,
};

mod items;
pub mod pace;
use items::*;
use pace::PACE_PREFIX;

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

    /// UpdateItem if `row.owner` owns the item: `false` when it does not (or it is gone). A
    /// verified item stays verified: `pending` is only ever set to false here.
    async fn update_owned(&self, row: &Row) -> Result<bool, StoreError> {
        let mut set = "SET bucket_region = :bucket_region, iam_role_arn = :iam_role_arn, \
                 iam_role_external_id = :iam_role_external_id, api_key = :api_key, \
                 app_key = :app_key, #owner = :owner, updated_at = :updated_at, \
                 bucket_owner = :bucket_owner"
            .to_owned();
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("bucket_name", s(&row.bucket_name));
        if !row.pending {
            set.push_str(", pending = :verified");
            request = request.expression_attribute_values(":verified", AttributeValue::Bool(false));
        }
        let result = request
            .update_expression(set)
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":bucket_region", s(&row.bucket_region))
            .expression_attribute_values(":iam_role_arn", s(&row.iam_role_arn))
            .expression_attribute_values(":iam_role_external_id", s(&row.iam_role_external_id))
            .expression_attribute_values(":api_key", s(&row.api_key))
            .expression_attribute_values(":app_key", s(&row.app_key))
            .expression_attribute_values(":owner", s(&row.owner))
            .expression_attribute_values(":updated_at", n(row.updated_at))
            .expression_attribute_values(":bucket_owner", s(&row.bucket_owner))
            .send()
            .await;
        self.conditional(result, "put")
    }

    /// PutItem over another owner's pending item (`row` is proven): `false` when the item is
    /// verified, ours, or gone.
    async fn take_over(&self, row: &Row) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(row_item(row)))
            .condition_expression("#owner <> :owner AND pending = :pending")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(&row.owner))
            .expression_attribute_values(":pending", AttributeValue::Bool(true))
            .send()
            .await;
        self.conditional(result, "put")
    }

    /// A conditional write's result: `false` when its condition failed.
    fn conditional<T, E>(
        &self,
        result: Result<T, aws_sdk_dynamodb::error::SdkError<E>>,
        operation: &'static str,
    ) -> Result<bool, StoreError>
    where
        E: std::error::Error + ProvideErrorMetadata + 'static,
    {
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(self.unavailable(operation, &e)),
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
                "NOT begins_with(bucket_name, :checkpoint) AND NOT begins_with(bucket_name, :tombstone) \
                 AND NOT begins_with(bucket_name, :pace)",
            )
            .expression_attribute_values(":pace", s(PACE_PREFIX))
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
            if !row.pending && self.take_over(row).await? {
                return Ok(Put::TookOver);
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

    async fn reseal(
        &self,
        bucket: &str,
        old: &SealedKeys,
        new: &SealedKeys,
    ) -> Result<bool, StoreError> {
        if is_checkpoint_key(bucket) {
            return Ok(false);
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("bucket_name", s(bucket))
            .update_expression("SET api_key = :new_api, app_key = :new_app")
            .condition_expression("api_key = :old_api AND app_key = :old_app")
            .expression_attribute_values(":old_api", s(&old.api_key))
            .expression_attribute_values(":old_app", s(&old.app_key))
            .expression_attribute_values(":new_api", s(&new.api_key))
            .expression_attribute_values(":new_app", s(&new.app_key))
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
            Err(e) => Err(self.unavailable("reseal", &e)),
        }
    }

    async fn mark_verified(&self, bucket: &str, owner: &str) -> Result<bool, StoreError> {
        if is_checkpoint_key(bucket) {
            return Ok(false);
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("bucket_name", s(bucket))
            .update_expression("SET pending = :verified")
            .condition_expression("#owner = :owner AND pending = :pending")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":pending", AttributeValue::Bool(true))
            .expression_attribute_values(":verified", AttributeValue::Bool(false))
            .send()
            .await;
        self.conditional(result, "mark_verified")
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
mod tests;
