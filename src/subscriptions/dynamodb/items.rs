//! How rows, checkpoints and tombstones are laid out as DynamoDB items, and read back.

use super::*;

pub(super) fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

pub(super) fn n(value: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A checkpoint, tombstone or pace key: never a subscription.
pub(super) fn is_checkpoint_key(bucket: &str) -> bool {
    bucket.starts_with(CHECKPOINT_PREFIX)
        || bucket.starts_with(TOMBSTONE_PREFIX)
        || bucket.starts_with(PACE_PREFIX)
}

pub(super) fn tombstone_key(bucket: &str) -> String {
    format!("{TOMBSTONE_PREFIX}{bucket}")
}

pub(super) fn checkpoint_key(object: &str) -> String {
    format!("{CHECKPOINT_PREFIX}{object}")
}

pub(super) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

pub(super) fn row_item(row: &Row) -> Item {
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
        ("bucket_owner".to_owned(), s(&row.bucket_owner)),
        ("pending".to_owned(), AttributeValue::Bool(row.pending)),
        ("created_at".to_owned(), n(row.created_at)),
        ("updated_at".to_owned(), n(row.updated_at)),
    ])
}

/// A string attribute; the message names the attribute, never its value.
pub(super) fn string(item: &Item, name: &str) -> Result<String, String> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value.clone()),
        Some(_) => Err(format!("attribute {name} is not a string")),
        None => Err(format!("attribute {name} is missing")),
    }
}

pub(super) fn number(item: &Item, name: &str) -> Result<i64, String> {
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
pub(super) fn item_row(item: &Item) -> Result<Row, StoreError> {
    let fields = || -> Result<Row, String> {
        Ok(Row {
            bucket_name: string(item, "bucket_name")?,
            bucket_region: string(item, "bucket_region")?,
            iam_role_arn: string(item, "iam_role_arn")?,
            iam_role_external_id: string(item, "iam_role_external_id")?,
            api_key: string(item, "api_key")?,
            app_key: string(item, "app_key")?,
            owner: string(item, "owner")?,
            // Absent in items written before it was recorded: the role's account then.
            bucket_owner: match item.get("bucket_owner") {
                None => String::new(),
                Some(_) => string(item, "bucket_owner")?,
            },
            // Absent in items written before it was recorded: they worked, so verified.
            pending: match item.get("pending") {
                None => false,
                Some(AttributeValue::Bool(b)) => *b,
                Some(_) => return Err("attribute pending is not a boolean".to_owned()),
            },
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
pub(super) fn sorted_rows(items: &[Item]) -> Result<Vec<Row>, StoreError> {
    let mut rows = items
        .iter()
        .filter(|item| !string(item, "bucket_name").is_ok_and(|b| is_checkpoint_key(&b)))
        .map(item_row)
        .collect::<Result<Vec<_>, _>>()?;
    rows.sort_by(|a, b| a.bucket_name.cmp(&b.bucket_name));
    Ok(rows)
}

/// The accepted count of a checkpoint item, or `None` when it has expired (TTL deletes lazily).
pub(super) fn checkpoint_value(item: &Item) -> Result<Option<u64>, String> {
    if number(item, TTL_ATTRIBUTE)? <= now() {
        return Ok(None);
    }
    let accepted = number(item, "accepted")?;
    u64::try_from(accepted)
        .map(Some)
        .map_err(|_| "attribute accepted is negative".to_owned())
}

/// A tombstone item as `(bucket, tombstone)`, or `None` when it has expired.
pub(super) fn tombstone_value(item: &Item) -> Result<Option<(String, Tombstone)>, StoreError> {
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
