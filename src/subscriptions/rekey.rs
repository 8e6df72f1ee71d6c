//! Key rotation: re-seals every row's keys with the current encryption key. Rows are read with
//! the current or a previous key (see [`super::seal`]), so the API and the workers keep reading
//! every row while a rotation runs; each row is swapped with a compare-and-swap
//! ([`super::Rows::reseal`]), so a subscription updated meanwhile is never overwritten.

use super::{Row, Rows, StoreError, Subscriptions};

/// How often one row is re-read and tried again when it changed between read and swap.
const ATTEMPTS: usize = 5;

/// What a rekey did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rekeyed {
    /// Rows now sealed with the current key.
    pub resealed: usize,
    /// Rows removed while the rekey ran (nothing to do).
    pub gone: usize,
    /// Buckets whose keys open with none of the keys, with why; left as they are.
    pub unreadable: Vec<(String, String)>,
}

impl Subscriptions {
    /// Re-seals the keys of every row with the current sealer. A row that cannot be opened is
    /// reported and left alone; the others are still re-sealed.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the store cannot be reached, or
    /// [`StoreError::Corrupt`]/[`StoreError::Unavailable`] naming a bucket whose row kept
    /// changing for [`ATTEMPTS`] tries.
    pub async fn rekey(&self) -> Result<Rekeyed, StoreError> {
        let mut done = Rekeyed::default();
        for row in self.store.list(None).await? {
            let bucket = row.bucket_name.clone();
            match self.rekey_row(row).await {
                Ok(true) => done.resealed += 1,
                Ok(false) => done.gone += 1,
                Err(StoreError::Corrupt { detail, .. }) => {
                    tracing::warn!(bucket, detail, "rekey: row left as it is");
                    done.unreadable.push((bucket, detail));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// `true` when `row` (or what it became) was re-sealed, `false` when it is gone.
    async fn rekey_row(&self, mut row: Row) -> Result<bool, StoreError> {
        for _ in 0..ATTEMPTS {
            let old = row.sealed_keys();
            let opened = self.open_row(row.clone())?;
            let mut new = old.clone();
            new.api_key = self.sealer.seal(&row.bucket_name, &opened.api_key);
            new.app_key = self.sealer.seal(&row.bucket_name, &opened.app_key);
            if self.store.reseal(&row.bucket_name, &old, &new).await? {
                return Ok(true);
            }
            // Changed or removed since it was read: read it again.
            match self.store.get(&row.bucket_name).await? {
                Some(current) => row = current,
                None => return Ok(false),
            }
        }
        Err(StoreError::Unavailable {
            backend: "subscriptions",
            operation: "rekey",
            detail: format!(
                "bucket {} changed during each of {ATTEMPTS} attempts; run rekey again",
                row.bucket_name
            ),
        })
    }
}
