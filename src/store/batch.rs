//! Requests over many keys, for the retention sweep
//! ([`crate::retention`]): listings with sizes and times, listings of the
//! "directories" under a prefix, the buckets a key sees, and deletes of up to 1,000 keys in one
//! DeleteObjects request, or one DELETE each where a store refuses
//! DeleteObjects.

use aws_sdk_s3::types::{Delete, ObjectIdentifier};

use super::{Store, StoreError, classify};

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    pub size: u64,
    /// LastModified, epoch ms (0 when the store did not say).
    pub modified_ms: u64,
}

/// Which objects [`Store::list_objects`] lists.
#[derive(Debug, Clone, Copy)]
pub struct Listing<'a> {
    pub prefix: &'a str,
    /// Keys after this one only.
    pub start_after: Option<&'a str>,
    /// At most this many.
    pub max: usize,
    /// With a delimiter, only keys with none after the prefix.
    pub delimiter: Option<&'a str>,
}

impl<'a> Listing<'a> {
    /// Up to `max` keys under `prefix`.
    pub fn under(prefix: &'a str, max: usize) -> Listing<'a> {
        Listing {
            prefix,
            start_after: None,
            max,
            delimiter: None,
        }
    }
}

/// How a batch delete went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchMode {
    /// One DeleteObjects request.
    Batch,
    /// The store refused DeleteObjects: one DELETE per key.
    Single,
}

impl Store {
    /// Objects `what` asks for, in key order, until `stop` says a key is
    /// past the end.
    pub async fn list_objects(
        &self,
        key_id: &str,
        bucket: &str,
        what: Listing<'_>,
        stop: impl Fn(&str) -> bool,
    ) -> Result<Vec<ListedObject>, StoreError> {
        let Listing {
            prefix,
            start_after,
            max,
            delimiter,
        } = what;
        let client = self.client(key_id)?;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_delimiter(delimiter.map(str::to_owned));
            if let Some(t) = &token {
                req = req.continuation_token(t);
            } else if let Some(s) = start_after {
                req = req.start_after(s);
            }
            let page = req
                .send()
                .await
                .map_err(|e| classify("LIST", bucket, prefix, e))?;
            for obj in page.contents() {
                let Some(k) = obj.key() else { continue };
                if stop(k) || out.len() >= max {
                    return Ok(out);
                }
                out.push(ListedObject {
                    key: k.to_owned(),
                    size: obj.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    modified_ms: obj
                        .last_modified()
                        .and_then(|t| t.to_millis().ok())
                        .and_then(|ms| u64::try_from(ms).ok())
                        .unwrap_or(0),
                });
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated().unwrap_or(false) => token = Some(t.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    /// The names directly under `prefix` that hold objects further down
    /// (`prefix<name>/…`), by a delimited listing.
    pub async fn list_dirs(
        &self,
        key_id: &str,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<String>, StoreError> {
        let client = self.client(key_id)?;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .delimiter("/");
            if let Some(t) = &token {
                req = req.continuation_token(t);
            }
            let page = req
                .send()
                .await
                .map_err(|e| classify("LIST", bucket, prefix, e))?;
            out.extend(page.common_prefixes().iter().filter_map(|p| {
                p.prefix()?
                    .strip_prefix(prefix)?
                    .strip_suffix('/')
                    .map(str::to_owned)
            }));
            match page.next_continuation_token() {
                Some(t) if page.is_truncated().unwrap_or(false) => token = Some(t.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    /// The buckets `key_id` owns or may list (ListBuckets).
    pub async fn list_buckets(&self, key_id: &str) -> Result<Vec<String>, StoreError> {
        let out = self
            .client(key_id)?
            .list_buckets()
            .send()
            .await
            .map_err(|e| classify("ListBuckets", "", "", e))?;
        Ok(out
            .buckets()
            .iter()
            .filter_map(|b| b.name().map(str::to_owned))
            .collect())
    }

    /// Deletes `keys` (at most 1,000) with one DeleteObjects request; a
    /// store that refuses the request itself (not a key of it) gets one
    /// DELETE per key instead. Missing keys count as deleted (S3
    /// semantics). Any key the store could not delete is an error naming
    /// the first one.
    pub async fn delete_many(
        &self,
        key_id: &str,
        bucket: &str,
        keys: &[String],
    ) -> Result<BatchMode, StoreError> {
        if keys.is_empty() {
            return Ok(BatchMode::Batch);
        }
        let objects = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| request_error(bucket, &keys[0], e.to_string()))?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| request_error(bucket, &keys[0], e.to_string()))?;
        let answer = self
            .client(key_id)?
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await;
        match answer {
            Ok(out) => match out.errors().first() {
                None => Ok(BatchMode::Batch),
                Some(e) => Err(StoreError::Request {
                    op: "DeleteObjects",
                    bucket: bucket.to_owned(),
                    key: e.key().unwrap_or_default().to_owned(),
                    message: format!(
                        "{}: {}",
                        e.code().unwrap_or("error"),
                        e.message().unwrap_or_default()
                    ),
                    retriable: true,
                }),
            },
            Err(e) => {
                let refused = matches!(
                    &e,
                    aws_sdk_s3::error::SdkError::ServiceError(se)
                        if matches!(se.raw().status().as_u16(), 400 | 405 | 501)
                );
                if !refused {
                    return Err(classify("DeleteObjects", bucket, &keys[0], e));
                }
                tracing::debug!(bucket, "DeleteObjects refused; deleting one key at a time");
                for k in keys {
                    self.delete(key_id, bucket, k).await?;
                }
                Ok(BatchMode::Single)
            }
        }
    }
}

fn request_error(bucket: &str, key: &str, message: String) -> StoreError {
    StoreError::Request {
        op: "DeleteObjects",
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        message,
        retriable: false,
    }
}
