//! Fetches one S3 object into a spool: memory for small objects, an unlinked temporary file
//! for large ones. Reading S3 to its end at once decouples the download from forwarding (which
//! is paced to the Changes API's rate limit and may take minutes), so no S3 connection idles
//! mid-object, and memory stays bounded whatever the object's size.

use crate::core::envelope::ObjectRef;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use std::io::{Cursor, Read, Seek, SeekFrom, Write};

/// Why an object could not be fetched, grouped by what the worker does.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The object does not exist (deleted, or a stale notification): poison.
    #[error("s3://{bucket}/{key} does not exist")]
    NotFound { bucket: String, key: String },
    /// The object was rewritten since its notification (its eTag no longer matches): the newer
    /// version has its own notification; skip this one.
    #[error(
        "s3://{bucket}/{key} was replaced since its notification (eTag {etag} no longer matches)"
    )]
    Replaced {
        bucket: String,
        key: String,
        etag: String,
    },
    /// Larger than `records.max_object_bytes`: poison.
    #[error("s3://{bucket}/{key} is larger than {limit} bytes")]
    TooLarge {
        bucket: String,
        key: String,
        limit: u64,
    },
    /// S3 refused our credentials: the customer's role or bucket policy. Retried, then poison.
    #[error("access to s3://{bucket}/{key} denied: {detail}")]
    AccessDenied {
        bucket: String,
        key: String,
        detail: String,
    },
    /// S3 or the network failed, or the spool could not be written: retry.
    #[error("could not read s3://{bucket}/{key}: {detail}")]
    Unavailable {
        bucket: String,
        key: String,
        detail: String,
    },
}

/// A fetched object, readable from the start.
pub enum Spool {
    Memory(Cursor<Vec<u8>>),
    File(std::fs::File),
}

impl Read for Spool {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Memory(c) => c.read(buf),
            Self::File(f) => f.read(buf),
        }
    }
}

/// Fetches `object` with `s3`. Objects up to `memory_bytes` stay in memory; larger ones go to
/// a temporary file that disappears when the spool is dropped. `expected_owner` (the
/// subscription's bucket account) goes as `ExpectedBucketOwner`: S3 answers 403 when another
/// account owns the bucket, so a role that can read someone else's bucket cannot make us read it.
///
/// # Errors
/// [`DownloadError`] saying whether to retry or give up.
pub async fn fetch(
    s3: &aws_sdk_s3::Client,
    object: &ObjectRef,
    expected_owner: &str,
    memory_bytes: u64,
    max_bytes: u64,
) -> Result<(Spool, u64), DownloadError> {
    let unavailable = |detail: String| DownloadError::Unavailable {
        bucket: object.bucket.clone(),
        key: object.key.clone(),
        detail,
    };
    let output = s3
        .get_object()
        .bucket(&object.bucket)
        .key(&object.key)
        .expected_bucket_owner(expected_owner)
        // Read the notified version, not whatever is there now.
        .set_version_id(object.version_id.clone())
        .set_if_match(object.etag.clone().filter(|_| object.version_id.is_none()))
        .send()
        .await
        .map_err(|e| classify(object, &e))?;
    let length = output.content_length().and_then(|n| u64::try_from(n).ok());
    if length.is_some_and(|n| n > max_bytes) {
        return Err(too_large(object, max_bytes));
    }
    let mut body = output.body;
    let mut sink = Sink::new(length.unwrap_or(0), memory_bytes);
    let mut total = 0u64;
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| unavailable(e.to_string()))?
    {
        total += chunk.len() as u64;
        if total > max_bytes {
            return Err(too_large(object, max_bytes));
        }
        sink.write(&chunk, memory_bytes)
            .map_err(|e| unavailable(format!("spool: {e}")))?;
    }
    let spool = sink
        .finish()
        .map_err(|e| unavailable(format!("spool: {e}")))?;
    Ok((spool, total))
}

/// Where the bytes go while they arrive: memory until `memory_bytes`, then a file.
enum Sink {
    Memory(Vec<u8>),
    File(std::fs::File),
}

impl Sink {
    fn new(expected: u64, memory_bytes: u64) -> Self {
        let capacity = usize::try_from(expected.min(memory_bytes)).unwrap_or(0);
        Self::Memory(Vec::with_capacity(capacity))
    }

    fn write(&mut self, chunk: &[u8], memory_bytes: u64) -> std::io::Result<()> {
        if let Self::Memory(buffer) = self {
            if (buffer.len() + chunk.len()) as u64 <= memory_bytes {
                buffer.extend_from_slice(chunk);
                return Ok(());
            }
            let mut file = temp_file()?;
            file.write_all(buffer)?;
            *self = Self::File(file);
        }
        match self {
            Self::File(file) => file.write_all(chunk),
            Self::Memory(_) => Ok(()),
        }
    }

    fn finish(self) -> std::io::Result<Spool> {
        match self {
            Self::Memory(buffer) => Ok(Spool::Memory(Cursor::new(buffer))),
            Self::File(mut file) => {
                file.flush()?;
                file.seek(SeekFrom::Start(0))?;
                Ok(Spool::File(file))
            }
        }
    }
}

/// A temporary file that is unlinked at once: nothing is left behind, even after a kill.
fn temp_file() -> std::io::Result<std::fs::File> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "cloudtrail-changes-{}-{}.spool",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let path = std::env::temp_dir().join(name);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

fn too_large(object: &ObjectRef, limit: u64) -> DownloadError {
    DownloadError::TooLarge {
        bucket: object.bucket.clone(),
        key: object.key.clone(),
        limit,
    }
}

fn classify<E>(object: &ObjectRef, e: &SdkError<E, HttpResponse>) -> DownloadError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = e.as_service_error().and_then(ProvideErrorMetadata::code);
    let status = e.raw_response().map(|r| r.status().as_u16());
    let status_is = |n: u16| status == Some(n);
    let (bucket, key) = (object.bucket.clone(), object.key.clone());
    let detail = DisplayErrorContext(e).to_string();
    match code {
        Some("NoSuchKey" | "NoSuchBucket") => DownloadError::NotFound { bucket, key },
        Some("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken") => {
            DownloadError::AccessDenied {
                bucket,
                key,
                detail,
            }
        }
        _ if status_is(404) => DownloadError::NotFound { bucket, key },
        Some("PreconditionFailed") => replaced(object),
        _ if status_is(412) => replaced(object),
        _ if status_is(403) => DownloadError::AccessDenied {
            bucket,
            key,
            detail,
        },
        _ => DownloadError::Unavailable {
            bucket,
            key,
            detail,
        },
    }
}

/// The `If-Match` of the notified eTag failed: a newer version replaced the object.
fn replaced(object: &ObjectRef) -> DownloadError {
    DownloadError::Replaced {
        bucket: object.bucket.clone(),
        key: object.key.clone(),
        etag: object.etag.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(spool: Spool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut spool = spool;
        spool.read_to_end(&mut out).expect("read");
        out
    }

    #[test]
    fn small_objects_stay_in_memory() {
        let mut sink = Sink::new(10, 100);
        sink.write(b"hello ", 100).expect("write");
        sink.write(b"world", 100).expect("write");
        let spool = sink.finish().expect("finish");
        assert!(matches!(spool, Spool::Memory(_)));
        assert_eq!(read_all(spool), b"hello world");
    }

    #[test]
    fn large_objects_spill_to_a_file_and_read_back_whole() {
        let mut sink = Sink::new(0, 8);
        for part in [&b"0123"[..], b"4567", b"89ab", b"cdef"] {
            sink.write(part, 8).expect("write");
        }
        let spool = sink.finish().expect("finish");
        assert!(matches!(spool, Spool::File(_)));
        assert_eq!(read_all(spool), b"0123456789abcdef");
    }
}
