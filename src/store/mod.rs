//! The S3 side: one `aws-sdk-s3` client per access key, and how each kind
//! of object is stored ([`ObjectMeta`]): fragments `video/mp2t`, immutable,
//! with metadata `extinf` (duration as the playlist writes it) and `session`.
//! The key layout is `crate::layout`'s. Fragment, playlist and manifest PUTs
//! skip the SDK ([`direct`], on [`crate::outbound`]) unless
//! `s3.sign_payload` is on or `s3.direct_put` off; every other request (GET,
//! LIST, HEAD, DELETE, PutBucketCors, and the conditional PUTs of
//! `conditional`) goes through it. Both paths class a failure the same way ([`errors::classify`]): a
//! retriable one, or a final answer ([`StoreError::Answered`]) that only a
//! change of configuration, keys or bucket can fix. A final answer to a PUT is
//! remembered per access key and bucket until a PUT there succeeds
//! ([`Store::refusals`], shown by `/healthz`).
//!
//! Every PUT attempt has a deadline ([`attempt_timeout`], or the caller's
//! earlier one): a live fragment is worth little once it has left the
//! playlist, and a fenced write must not land after its lease.
//!
//! Both paths trust the system's roots plus, when `[s3] ca_file` names one,
//! a PEM file of CA certificates: the direct PUTs through
//! [`crate::outbound`], the SDK's requests through its own HTTPS client
//! built with the same trust store ([`sdk_http_client`]).
//!
//! The SDK's own retries are off: the upload pipeline retries forever with its
//! own backoff and keeps the bytes on local disk meanwhile, so an SDK retry
//! would only hide attempts from its metrics. Request checksums are computed
//! only when an operation requires them, because several S3-compatible servers
//! reject the newer default checksum headers. Stalled-stream protection is off:
//! the attempt timeout bounds a stalled transfer.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    SharedHttpClient, StalledStreamProtectionConfig,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use bytes::Bytes;

use crate::config::{AccessKey, S3Config};

mod batch;
mod conditional;
mod direct;
pub mod errors;
mod file_body;

pub use batch::{BatchMode, ListedObject, Listing};
pub use conditional::{Conditional, Precondition, PutIf, Versioned, if_match_value};

/// An access key's SDK client and direct-PUT signer.
struct KeyClient {
    /// To notice a changed secret at reload.
    secret: String,
    client: Client,
    signer: Arc<crate::sign::sigv4::HeaderSigner>,
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
    /// The store answered with an error status ([`errors::classify`] says
    /// whether trying again can help).
    #[error("S3 {op} {bucket}/{key}: HTTP {status}: {}", describe(code.as_deref(), message.as_deref()))]
    Answered {
        op: &'static str,
        bucket: String,
        key: String,
        status: u16,
        code: Option<String>,
        message: Option<String>,
        class: errors::Class,
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
            StoreError::Answered { class, .. } => *class == errors::Class::Retry,
            StoreError::UnknownKey(_)
            | StoreError::NotFound { .. }
            | StoreError::TooLarge { .. } => false,
        }
    }

    /// The label this error is counted under in
    /// `livebucket_s3_errors_total`: the S3 code, `HTTP_<status>` without
    /// one, `transport` when no answer came, `unknown_key` for a key missing
    /// from the configuration.
    pub fn metric_code(&self) -> String {
        match self {
            StoreError::Answered { status, code, .. } => {
                errors::metric_code(code.as_deref(), Some(*status))
            }
            StoreError::Request { .. } => "transport".into(),
            StoreError::UnknownKey(_) => "unknown_key".into(),
            StoreError::NotFound { .. } => "NoSuchKey".into(),
            StoreError::TooLarge { .. } => "too_large".into(),
        }
    }
}

/// `Code (message)` as an error line shows it.
fn describe(code: Option<&str>, message: Option<&str>) -> String {
    format!(
        "{} ({})",
        code.unwrap_or("no S3 error code"),
        message.unwrap_or("no message")
    )
}

/// The error for an answer with `status` and the error body read from it.
fn answered(
    op: &'static str,
    bucket: &str,
    key: &str,
    status: u16,
    body: errors::ErrorBody,
) -> StoreError {
    StoreError::Answered {
        op,
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        status,
        class: errors::classify(Some(status), body.code.as_deref()),
        code: body.code,
        message: body.message,
    }
}

/// An SDK failure as a [`StoreError`], classed as the direct path classes
/// its answers: an answer with a status is [`StoreError::Answered`], no
/// answer (timeout, connection) a retriable [`StoreError::Request`].
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    op: &'static str,
    bucket: &str,
    key: &str,
    err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> StoreError {
    if let SdkError::ServiceError(se) = &err {
        let body = errors::ErrorBody {
            code: se.err().code().map(str::to_owned),
            message: se.err().message().map(str::to_owned),
        };
        return answered(op, bucket, key, se.raw().status().as_u16(), body);
    }
    StoreError::Request {
        op,
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        message: format!(
            "{}",
            aws_smithy_types::error::display::DisplayErrorContext(&err)
        ),
        retriable: true,
    }
}

/// How long one PUT attempt of `len` bytes may take: `base`, plus the time
/// the body takes at `min_rate` bytes per second (a fragment must not time
/// out on a slow but working link, a playlist must not wait long).
pub fn attempt_timeout(base: Duration, min_rate: u64, len: u64) -> Duration {
    base + Duration::from_secs_f64(len as f64 / min_rate.max(1) as f64)
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
    direct: Result<Arc<direct::DirectPut>, String>,
    /// Final answers to PUTs by `key_id/bucket`, until a PUT there succeeds.
    refusals: Arc<Mutex<BTreeMap<String, String>>>,
    /// The SDK clients' HTTPS client when `s3.ca_file` is set (shared by
    /// every key's client); `None`: the SDK's default (system roots).
    sdk_http: Option<SharedHttpClient>,
    /// Bumped by every [`Store::update_keys`]: uploads parked on a final
    /// answer try again at once.
    keys_changed: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Store {
    pub fn new(s3: &S3Config, keys: &[AccessKey]) -> Store {
        let direct = direct::DirectPut::new(s3).map(Arc::new);
        let sdk_http = s3.ca_file.as_deref().and_then(|ca| {
            sdk_http_client(ca)
                .inspect_err(|e| {
                    // Validated at start; unreadable since. The SDK's
                    // requests then fail with a certificate error, logged
                    // where they are made.
                    tracing::error!(error = %e, "s3.ca_file: the SDK's requests trust the system's roots only");
                })
                .ok()
        });
        let store = Store {
            s3: s3.clone(),
            clients: Arc::default(),
            direct,
            refusals: Arc::default(),
            sdk_http,
            keys_changed: Arc::new(tokio::sync::watch::channel(0).0),
        };
        store.replace_clients(keys);
        store
    }

    /// Adds and replaces clients for `keys` (see [`Store`]) and wakes the
    /// uploads parked on a final answer ([`Store::keys_changed`]).
    pub fn update_keys(&self, keys: &[AccessKey]) {
        self.replace_clients(keys);
        self.keys_changed.send_modify(|n| *n += 1);
    }

    /// A receiver that changes at every [`Store::update_keys`] (a reload).
    pub fn keys_changed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.keys_changed.subscribe()
    }

    /// The final answers PUTs got, one line per access key and bucket whose
    /// last PUT got one (`key_id/bucket: error`); empty when all is well.
    pub fn refusals(&self) -> Vec<String> {
        self.refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(at, why)| format!("{at}: {why}"))
            .collect()
    }

    /// Remembers a PUT's final answer, or forgets it after a success.
    /// `result` is the PUT's, its error `None` when it says nothing about
    /// the store (a local read failed).
    fn note_put(&self, key_id: &str, bucket: &str, result: Result<(), Option<&StoreError>>) {
        let at = format!("{key_id}/{bucket}");
        let mut refusals = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => {
                refusals.remove(&at);
            }
            Err(Some(
                e @ StoreError::Answered {
                    class: errors::Class::Final,
                    ..
                },
            )) => {
                refusals.insert(at, e.to_string());
            }
            Err(_) => {}
        }
    }

    fn replace_clients(&self, keys: &[AccessKey]) {
        let mut clients = self.clients.write().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            if clients.get(&k.id).is_none_or(|c| c.secret != k.secret) {
                let client = KeyClient {
                    secret: k.secret.clone(),
                    client: client_for(&self.s3, self.sdk_http.clone(), &k.id, &k.secret),
                    signer: Arc::new(crate::sign::sigv4::HeaderSigner::new(
                        &k.id,
                        &k.secret,
                        &self.s3.region,
                    )),
                };
                clients.insert(k.id.clone(), client);
            }
        }
    }

    pub fn client(&self, key_id: &str) -> Result<Client, StoreError> {
        self.with_key(key_id, |c| c.client.clone())
    }

    fn signer(&self, key_id: &str) -> Result<Arc<crate::sign::sigv4::HeaderSigner>, StoreError> {
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
    pub fn sdk_put_reason(&self) -> Option<&str> {
        self.direct.as_ref().err().map(String::as_str)
    }

    /// The deadline of a PUT attempt of `len` bytes starting now, or
    /// `before` when that is earlier.
    fn deadline(&self, len: u64, before: Option<Instant>) -> Instant {
        let own = Instant::now()
            + attempt_timeout(
                Duration::from_secs(self.s3.attempt_timeout_secs),
                self.s3.attempt_min_rate_kib.saturating_mul(1024),
                len,
            );
        before.map_or(own, |b| b.min(own))
    }

    /// Stores a whole object with its content type, cache policy and
    /// metadata. Every PUT livebucket makes goes through here.
    pub async fn put(
        &self,
        key_id: &str,
        bucket: &str,
        key: &str,
        body: impl Into<Bytes>,
        object: &ObjectMeta<'_>,
    ) -> Result<(), StoreError> {
        self.put_before(key_id, bucket, key, body, object, None)
            .await
    }

    /// [`Store::put`] that gives up at `before` if its own attempt deadline
    /// is later (a fenced write that must not land after its lease).
    #[tracing::instrument(level = "debug", skip(self, body, object))]
    pub async fn put_before(
        &self,
        key_id: &str,
        bucket: &str,
        key: &str,
        body: impl Into<Bytes>,
        object: &ObjectMeta<'_>,
        before: Option<Instant>,
    ) -> Result<(), StoreError> {
        let body = body.into();
        let deadline = self.deadline(body.len() as u64, before);
        let result = self
            .put_bytes(key_id, bucket, key, body, object, deadline)
            .await;
        self.note_put(key_id, bucket, result.as_ref().map(|_| ()).map_err(Some));
        result
    }

    async fn put_bytes(
        &self,
        key_id: &str,
        bucket: &str,
        key: &str,
        body: Bytes,
        object: &ObjectMeta<'_>,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        if let Ok(direct) = &self.direct {
            let signer = self.signer(key_id)?;
            let sent = direct.put(
                &signer,
                bucket,
                key,
                direct::Body::Bytes(body),
                object,
                deadline,
            );
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
        self.sdk_put(
            key_id,
            bucket,
            key,
            ByteStream::from(body),
            object,
            deadline,
        )
        .await
    }

    async fn sdk_put(
        &self,
        key_id: &str,
        bucket: &str,
        key: &str,
        body: ByteStream,
        object: &ObjectMeta<'_>,
        deadline: Instant,
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
        let send = async {
            if self.s3.sign_payload {
                req.send().await
            } else {
                req.customize().disable_payload_signing().send().await
            }
        };
        match tokio::time::timeout_at(deadline.into(), send).await {
            Ok(sent) => sent.map_err(|e| classify("PUT", bucket, key, e))?,
            Err(_) => {
                return Err(StoreError::Request {
                    op: "PUT",
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                    message: "no answer by the attempt deadline".into(),
                    retriable: true,
                });
            }
        };
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
        let result = self.put_file_inner(key_id, bucket, key, path, object).await;
        let noted = result.as_ref().map(|_| ()).map_err(|e| match e {
            PutFileError::Store(e) => Some(e),
            PutFileError::Read(_) => None,
        });
        self.note_put(key_id, bucket, noted);
        result
    }

    async fn put_file_inner(
        &self,
        key_id: &str,
        bucket: &str,
        key: &str,
        path: &std::path::Path,
        object: &ObjectMeta<'_>,
    ) -> Result<(), PutFileError> {
        let file = std::fs::File::open(path).map_err(PutFileError::Read)?;
        let size = file.metadata().map_err(PutFileError::Read)?.len();
        let deadline = self.deadline(size, None);
        let in_memory = file_body::memory_backed(&file);
        if let Ok(direct) = &self.direct {
            let signer = self.signer(key_id)?;
            let body = if in_memory {
                direct::Body::File(file, size)
            } else {
                // A spooled fragment on disk: read whole off the runtime (a
                // disk read may block), so it takes the same path, and an
                // https store's CA file applies to it too.
                let read = tokio::task::spawn_blocking(move || {
                    let mut bytes = Vec::with_capacity(size as usize);
                    std::io::Read::read_to_end(&mut std::io::Read::take(&file, size), &mut bytes)
                        .map(|_| bytes)
                })
                .await
                .map_err(|e| PutFileError::Read(std::io::Error::other(e)))?
                .map_err(PutFileError::Read)?;
                if read.len() as u64 != size {
                    return Err(PutFileError::Read(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file is shorter than when its upload started",
                    )));
                }
                direct::Body::Bytes(Bytes::from(read))
            };
            return direct
                .put(&signer, bucket, key, body, object, deadline)
                .await;
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
        Ok(self
            .sdk_put(key_id, bucket, key, body, object, deadline)
            .await?)
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
        read_body(out.body, bucket, key).await
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

    /// Whether an object exists (HEAD; 404 is `false`).
    pub async fn exists(&self, key_id: &str, bucket: &str, key: &str) -> Result<bool, StoreError> {
        match self
            .client(key_id)?
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 404 => Ok(false),
            Err(e) => Err(classify("HEAD", bucket, key, e)),
        }
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
        self.list_keys(key_id, bucket, prefix, None, start_after, stop)
            .await
    }

    /// [`Store::list`] of the keys directly under `prefix` (a `/`-delimited
    /// listing): a channel's own objects without those of its variants
    /// (`CHANNEL/<rung>/…`) or any other sub-prefix.
    pub async fn list_children(
        &self,
        key_id: &str,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        stop: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, StoreError> {
        self.list_keys(key_id, bucket, prefix, Some("/"), start_after, stop)
            .await
    }

    async fn list_keys(
        &self,
        key_id: &str,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        start_after: Option<&str>,
        stop: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>, StoreError> {
        let client = self.client(key_id)?;
        let mut keys = Vec::new();
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

/// The SDK's HTTPS client (its default, rustls with aws-lc) trusting the
/// system's roots plus the certificates of the PEM file `ca_file`.
fn sdk_http_client(ca_file: &std::path::Path) -> Result<SharedHttpClient, String> {
    let pem =
        std::fs::read(ca_file).map_err(|e| format!("cannot read {}: {e}", ca_file.display()))?;
    let trust = tls::TrustStore::default().with_pem_certificate(pem);
    let context = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| format!("{}: {e}", ca_file.display()))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(context)
        .build_https())
}

/// An SDK client for one access key; `http` replaces the SDK's default
/// HTTPS client (see [`sdk_http_client`]).
fn client_for(s3: &S3Config, http: Option<SharedHttpClient>, id: &str, secret: &str) -> Client {
    let creds = Credentials::new(id, secret, None, None, "livebucket-config");
    let mut conf = aws_sdk_s3::config::Builder::new();
    if let Some(http) = http {
        conf = conf.http_client(http);
    }
    let conf = conf
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

/// A GET's whole body; a connection lost while reading it is retriable.
async fn read_body(body: ByteStream, bucket: &str, key: &str) -> Result<Bytes, StoreError> {
    let body = body.collect().await.map_err(|e| StoreError::Request {
        op: "GET",
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        message: e.to_string(),
        retriable: true,
    })?;
    Ok(body.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_gets_its_base_plus_the_body_at_the_slowest_rate() {
        let base = Duration::from_secs(5);
        assert_eq!(attempt_timeout(base, 256 * 1024, 0), base);
        // A 2 s fragment at 1.5 Mbit/s (~375 KB): about 6.4 s.
        let t = attempt_timeout(base, 256 * 1024, 375_000);
        assert!(
            t > Duration::from_millis(6400) && t < Duration::from_millis(6500),
            "{t:?}"
        );
        // A zero rate cannot divide by zero.
        assert!(attempt_timeout(base, 0, 10) > base);
    }
}
