//! The S3 side: one `aws-sdk-s3` client per access key, and how each kind
//! of object is stored ([`ObjectMeta`]): fragments `video/mp2t`, immutable,
//! with metadata `extinf` (duration as the playlist writes it) and `session`.
//! The key layout is `crate::layout`'s. PUTs to an `http://` store skip the
//! SDK ([`direct`]); every other request goes through it.
//!
//! The SDK's own retries are off: the upload pipeline retries forever with its
//! own backoff and keeps the bytes on local disk meanwhile, so an SDK retry
//! would only hide attempts from its metrics. Request checksums are computed
//! only when an operation requires them, because several S3-compatible servers
//! reject the newer default checksum headers. Stalled-stream protection is off:
//! the attempt timeout bounds a stalled transfer.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use bytes::Bytes;

use crate::config::{AccessKey, S3Config};

mod conditional;
mod direct;
mod file_body;
mod sign;

pub use conditional::{Conditional, Precondition, PutIf, Versioned, if_match_value};

/// An access key's SDK client and direct-PUT signer.
struct KeyClient {
    /// To notice a changed secret at reload.
    secret: String,
    client: Client,
    signer: Arc<sign::HeaderSigner>,
}

pub const FRAGMENT_CONTENT_TYPE: &str = "video/mp2t";
pub const FRAGMENT_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";
pub const PLAYLIST_CONTENT_TYPE: &str = "application/vnd.apple.mpegurl";

/// How an object is stored: content type, cache policy, user metadata.
pub struct ObjectMeta<'a> {
    pub content_type: &'a str,
    pub cache_control: Option<&'a str>,
    pub metadata: &'a [(&'a str, &'a str)],
}

impl<'a> ObjectMeta<'a> {
    /// A fragment: immutable, with its duration and session as metadata.
    pub fn fragment(metadata: &'a [(&'a str, &'a str)]) -> ObjectMeta<'a> {
        ObjectMeta {
            content_type: FRAGMENT_CONTENT_TYPE,
            cache_control: Some(FRAGMENT_CACHE_CONTROL),
            metadata,
        }
    }

    pub fn playlist(cache_control: &'a str) -> ObjectMeta<'a> {
        ObjectMeta {
            content_type: PLAYLIST_CONTENT_TYPE,
            cache_control: Some(cache_control),
            metadata: &[],
        }
    }

    /// livebucket's own JSON (manifests, channel records).
    pub const JSON: ObjectMeta<'static> = ObjectMeta {
        content_type: "application/json",
        cache_control: None,
        metadata: &[],
    };
}

pub const SNAPSHOT_CONTENT_TYPE: &str = "image/jpeg";
/// `latest.jpg` changes every snapshot interval.
pub const SNAPSHOT_LATEST_CACHE_CONTROL: &str = "max-age=1";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no access key {0:?} in the configuration")]
    UnknownKey(String),
    #[error("S3 {op} {bucket}/{key}: {message}")]
    Request {
        op: &'static str,
        bucket: String,
        key: String,
        message: String,
        /// Whether trying again can help. The pipeline retries regardless,
        /// but jumps straight to its longest backoff when this is false.
        retriable: bool,
    },
    #[error("S3 {op} {bucket}/{key}: not found")]
    NotFound {
        op: &'static str,
        bucket: String,
        key: String,
    },
    /// The object is larger than the caller reads ([`Store::get_capped`]);
    /// nothing past the cap was read.
    #[error("S3 {op} {bucket}/{key}: larger than {max} bytes")]
    TooLarge {
        op: &'static str,
        bucket: String,
        key: String,
        max: usize,
    },
}

/// Why [`Store::put_file`] failed: reading the local file, or the PUT.
#[derive(Debug, thiserror::Error)]
pub enum PutFileError {
    #[error("reading the local file: {0}")]
    Read(std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl StoreError {
    pub fn is_retriable(&self) -> bool {
        match self {
            StoreError::Request { retriable, .. } => *retriable,
            StoreError::UnknownKey(_)
            | StoreError::NotFound { .. }
            | StoreError::TooLarge { .. } => false,
        }
    }
}

/// Whether an S3 error code can go away by trying again.
fn retriable_code(code: Option<&str>) -> bool {
    !matches!(
        code,
        Some("AccessDenied" | "NoSuchBucket" | "InvalidAccessKeyId" | "SignatureDoesNotMatch")
    )
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    op: &'static str,
    bucket: &str,
    key: &str,
    err: SdkError<E, R>,
) -> StoreError {
    let retriable = match &err {
        SdkError::ServiceError(se) => retriable_code(se.err().code()),
        _ => true,
    };
    let message = match &err {
        SdkError::ServiceError(se) => format!(
            "{} ({})",
            se.err().code().unwrap_or("error"),
            se.err().message().unwrap_or("no message")
        ),
        other => format!(
            "{}",
            aws_smithy_types::error::display::DisplayErrorContext(other)
        ),
    };
    StoreError::Request {
        op,
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        message,
        retriable,
    }
}

/// One client per access key; cloning a `Client` is cheap.
///
/// A reload adds and replaces clients but never removes one: fragments of a
/// session approved under a key that was since removed are still stored with
/// it (they were accepted; losing them would be worse).
#[derive(Clone)]
pub struct Store {
    s3: S3Config,
    clients: Arc<RwLock<HashMap<String, KeyClient>>>,
    /// PUTs without the SDK where the store allows ([`direct`]), or why not.
    direct: Result<Arc<direct::DirectPut>, &'static str>,
}

impl Store {
    pub fn new(s3: &S3Config, keys: &[AccessKey]) -> Store {
        let direct = direct::DirectPut::new(s3).map(Arc::new);
        let store = Store {
            s3: s3.clone(),
            clients: Arc::default(),
            direct,
        };
        store.update_keys(keys);
        store
    }

    pub fn update_keys(&self, keys: &[AccessKey]) {
        let mut clients = self.clients.write().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            if clients.get(&k.id).is_none_or(|c| c.secret != k.secret) {
                let client = KeyClient {
                    secret: k.secret.clone(),
                    client: client_for(&self.s3, &k.id, &k.secret),
                    signer: Arc::new(sign::HeaderSigner::new(&k.id, &k.secret, &self.s3.region)),
                };
                clients.insert(k.id.clone(), client);
            }
        }
    }

    pub fn client(&self, key_id: &str) -> Result<Client, StoreError> {
        self.with_key(key_id, |c| c.client.clone())
    }

    fn signer(&self, key_id: &str) -> Result<Arc<sign::HeaderSigner>, StoreError> {
        self.with_key(key_id, |c| c.signer.clone())
    }

    fn with_key<T>(
        &self,
        key_id: &str,
        pick: impl FnOnce(&KeyClient) -> T,
    ) -> Result<T, StoreError> {
        self.clients
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key_id)
            .map(pick)
            .ok_or_else(|| StoreError::UnknownKey(key_id.to_owned()))
    }

    /// Why fragment and playlist PUTs go through the SDK, or `None` when
    /// they go direct.
    pub fn sdk_put_reason(&self) -> Option<&'static str> {
        self.direct.as_ref().err().copied()
    }

    /// Stores a whole object with its content type, cache policy and
    /// metadata. Every PUT livebucket makes goes through here.
    #[tracing::instrument(level = "debug", skip(self, body, object))]
    pub async fn put(
        &self,
        key_id: &str,
        bucket: &str,
        key: &str,
        body: impl Into<Bytes>,
        object: &ObjectMeta<'_>,
    ) -> Result<(), StoreError> {
        let body = body.into();
        if let Ok(direct) = &self.direct {
            let signer = self.signer(key_id)?;
            let sent = direct.put(&signer, bucket, key, direct::Body::Bytes(&body), object);
            return sent.await.map_err(|e| match e {
                PutFileError::Store(e) => e,
                // Bytes in memory cannot come up short.
                PutFileError::Read(e) => StoreError::Request {
                    op: "PUT",
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    message: e.to_string(),
                    retriable: true,
                },
            });
        }
        self.sdk_put(key_id, bucket, key, ByteStream::from(body), object)
            .await
    }

    async fn sdk_put(
        &self,
        key_id: &str,
        bucket: &str,
        key: &str,
        body: ByteStream,
        object: &ObjectMeta<'_>,
    ) -> Result<(), StoreError> {
        let mut req = self
            .client(key_id)?
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(object.content_type)
            .set_cache_control(object.cache_control.map(str::to_owned))
            .body(body);
        for (k, v) in object.metadata {
            req = req.metadata(*k, *v);
        }
        let sent = if self.s3.sign_payload {
            req.send().await
        } else {
            req.customize().disable_payload_signing().send().await
        };
        sent.map_err(|e| classify("PUT", bucket, key, e))?;
        Ok(())
    }

    /// Stores the file at `path`, streamed in chunks of at most
    /// [`file_body::CHUNK`] (never whole in memory).
    pub async fn put_file(
        &self,
        key_id: &str,
        bucket: &str,
        key: &str,
        path: &std::path::Path,
        object: &ObjectMeta<'_>,
    ) -> Result<(), PutFileError> {
        let file = std::fs::File::open(path).map_err(PutFileError::Read)?;
        let size = file.metadata().map_err(PutFileError::Read)?.len();
        let in_memory = file_body::memory_backed(&file);
        if let Some(direct) = self.direct.as_ref().ok().filter(|_| in_memory) {
            let signer = self.signer(key_id)?;
            let body = direct::Body::File(&file, size);
            return direct.put(&signer, bucket, key, body, object).await;
        }
        let body = if !self.s3.sign_payload && in_memory {
            // A tmpfs read is a memory copy that never blocks: read in the
            // request's own task, no thread hand-off.
            ByteStream::new(SdkBody::from_body_1_x(file_body::MemFileBody::new(
                file, size,
            )))
        } else {
            // A disk read may block, so the SDK reads through tokio's
            // blocking pool: one hand-off per chunk (its default chunk,
            // 4 KiB, made ~90 per 2 s fragment at 1.5 Mbit/s).
            ByteStream::read_from()
                .file(tokio::fs::File::from_std(file))
                .buffer_size(size.clamp(4096, file_body::CHUNK as u64) as usize)
                .build()
                .await
                .map_err(|e| PutFileError::Read(std::io::Error::other(e)))?
        };
        Ok(self.sdk_put(key_id, bucket, key, body, object).await?)
    }

    /// Deletes an object; deleting a missing one succeeds (S3 semantics).
    pub async fn delete(&self, key_id: &str, bucket: &str, key: &str) -> Result<(), StoreError> {
        self.client(key_id)?
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| classify("DELETE", bucket, key, e))?;
        Ok(())
    }

    /// A GET's answer, its body not read yet; 404 is [`StoreError::NotFound`].
    async fn get_object(
        &self,
        key_id: &str,
        bucket: &str,
        key: &str,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, StoreError> {
        self.client(key_id)?
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| match e {
                SdkError::ServiceError(se) if se.raw().status().as_u16() == 404 => {
                    StoreError::NotFound {
                        op: "GET",
                        bucket: bucket.to_owned(),
                        key: key.to_owned(),
                    }
                }
                e => classify("GET", bucket, key, e),
            })
    }

    pub async fn get(&self, key_id: &str, bucket: &str, key: &str) -> Result<Bytes, StoreError> {
        let out = self.get_object(key_id, bucket, key).await?;
        let body = out.body.collect().await.map_err(|e| StoreError::Request {
            op: "GET",
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            message: e.to_string(),
            retriable: true,
        })?;
        Ok(body.into_bytes())
    }

    /// [`Store::get`] of an object at most `max` bytes long: a larger one is
    /// [`StoreError::TooLarge`], found from its announced length or, failing
    /// that, after reading `max` bytes, never by reading it whole.
    pub async fn get_capped(
        &self,
        key_id: &str,
        bucket: &str,
        key: &str,
        max: usize,
    ) -> Result<Bytes, StoreError> {
        let too_large = || StoreError::TooLarge {
            op: "GET",
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            max,
        };
        let mut out = self.get_object(key_id, bucket, key).await?;
        let announced = out.content_length().and_then(|n| usize::try_from(n).ok());
        if announced.is_some_and(|n| n > max) {
            return Err(too_large());
        }
        let mut body = Vec::with_capacity(announced.unwrap_or(0));
        while let Some(chunk) = out.body.next().await {
            let chunk = chunk.map_err(|e| StoreError::Request {
                op: "GET",
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                message: e.to_string(),
                retriable: true,
            })?;
            if body.len() + chunk.len() > max {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(body))
    }

    /// User metadata of an object.
    pub async fn metadata(
        &self,
        key_id: &str,
        bucket: &str,
        key: &str,
    ) -> Result<HashMap<String, String>, StoreError> {
        let out = self
            .client(key_id)?
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| classify("HEAD", bucket, key, e))?;
        Ok(out.metadata().cloned().unwrap_or_default())
    }

    /// Keys under `prefix` after `start_after`, in order, until `stop` says
    /// a key is past the end (listing is lexicographic, so time-keyed objects
    /// come out in time order).
    pub async fn list(
        &self,
        key_id: &str,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        stop: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, StoreError> {
        let client = self.client(key_id)?;
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = client.list_objects_v2().bucket(bucket).prefix(prefix);
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
                if stop(k) {
                    return Ok(keys);
                }
                keys.push(k.to_owned());
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated().unwrap_or(false) => token = Some(t.to_owned()),
                _ => return Ok(keys),
            }
        }
    }
}

fn client_for(s3: &S3Config, id: &str, secret: &str) -> Client {
    let creds = Credentials::new(id, secret, None, None, "livebucket-config");
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&s3.endpoint)
        .region(Region::new(s3.region.clone()))
        .force_path_style(s3.force_path_style)
        .credentials_provider(creds)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .retry_config(RetryConfig::disabled())
        // The attempt timeout below already ends a stalled transfer; the
        // SDK's throughput monitor would add a timer to every body frame of
        // every fragment upload.
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        )
        .build();
    Client::from_conf(conf)
}
