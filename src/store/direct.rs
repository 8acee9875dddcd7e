//! The direct PUT: fragments, playlists and manifests to the store without the SDK's
//! per-request machinery, on livebucket's one HTTP client
//! ([`crate::outbound`], hyper with rustls for `https://`).
//!
//! A PUT that never changes shape does not need the SDK's orchestrator
//! (interceptors, config bags, endpoint rules): this path signs with
//! [`crate::sign::sigv4`] (checked against the SDK's own signer), builds the request
//! and hands it to hyper, which owns framing, keep-alive, connection reuse and
//! answers that arrive before the body is sent. A memory-backed file is read
//! in the request's own task ([`super::file_body`]).
//!
//! It is used where it is the same request the SDK would make:
//! `UNSIGNED-PAYLOAD` (`s3.sign_payload = false`). A memory-backed file is
//! streamed; a file on disk (the spool) is read whole off the runtime first
//! (`Store::put_file`). `[s3] direct_put = false` turns it off. Everything else livebucket asks of
//! S3 (GET, LIST, DELETE, HEAD) stays on the SDK.
//!
//! One attempt ends by its deadline (the caller's). A pooled connection that
//! the server closed just as the request went out ends without an answer;
//! the PUT is then sent once more (PUT is idempotent), so a server's idle
//! timeout is not an upload error. The answer is classed by
//! [`super::errors::classify`].

use std::time::Instant;

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use time::OffsetDateTime;

use super::errors::ErrorBody;
use super::file_body::MemFileBody;
use super::{ObjectMeta, PutFileError, StoreError};
use crate::config::S3Config;
use crate::outbound::{self, HttpClient};
use crate::sign::sigv4::{HeaderSigner, UNSIGNED_PAYLOAD};
use crate::sign::url::{S3Location, Target};
use http_body_util::BodyExt;

/// An error body larger than this is not S3's (and is not read further).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// What a PUT sends.
pub(super) enum Body {
    Bytes(Bytes),
    /// A memory-backed file and the length announced for it.
    File(std::fs::File, u64),
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::File(_, size) => *size,
        }
    }

    /// The body for one send; a file is read from its start each time.
    fn to_http(&self) -> std::io::Result<outbound::Body> {
        Ok(match self {
            Body::Bytes(b) => outbound::full(b.clone()),
            Body::File(file, size) => MemFileBody::new(file.try_clone()?, *size).boxed(),
        })
    }
}

pub(super) struct DirectPut {
    endpoint: String,
    path_style: bool,
    client: HttpClient,
}

impl DirectPut {
    /// The direct path for this store, or why the SDK keeps every PUT.
    pub(super) fn new(s3: &S3Config) -> Result<DirectPut, String> {
        if !s3.direct_put {
            return Err("[s3] direct_put = false".into());
        }
        if s3.sign_payload {
            return Err("s3.sign_payload hashes every body, which the SDK does".into());
        }
        Target::new(&S3Location {
            endpoint: &s3.endpoint,
            path_style: s3.force_path_style,
            bucket: "bucket",
            key: "key",
        })
        .map_err(|_| "the endpoint is not http(s)://host[:port]".to_owned())?;
        let client = HttpClient::new(s3.ca_file.as_deref()).map_err(|e| e.to_string())?;
        Ok(DirectPut {
            endpoint: s3.endpoint.clone(),
            path_style: s3.force_path_style,
            client,
        })
    }

    /// Stores `body` at `bucket/key`, giving up at `deadline`. A file that
    /// turns out shorter than announced is a [`PutFileError::Read`] and
    /// nothing is stored.
    pub(super) async fn put(
        &self,
        signer: &HeaderSigner,
        bucket: &str,
        key: &str,
        body: Body,
        object: &ObjectMeta<'_>,
        deadline: Instant,
    ) -> Result<(), PutFileError> {
        let transport = |message: String| StoreError::Request {
            op: "PUT",
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            message,
            retriable: true,
        };
        let refused = |message: String| StoreError::Request {
            op: "PUT",
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            message,
            retriable: false,
        };
        let target = Target::new(&S3Location {
            endpoint: &self.endpoint,
            path_style: self.path_style,
            bucket,
            key,
        })
        .map_err(|e| refused(e.to_string()))?;
        let (uri, headers) = put_head(
            &target,
            object,
            body.len(),
            signer,
            OffsetDateTime::now_utc(),
        )
        .map_err(refused)?;

        let exchange = async {
            let mut first = true;
            loop {
                let mut req = Request::new(body.to_http().map_err(PutFileError::Read)?);
                *req.method_mut() = Method::PUT;
                *req.uri_mut() = uri.clone();
                *req.headers_mut() = headers.clone();
                match self.client.send(req).await {
                    Ok(answer) => return Ok(answer),
                    Err(e) if e.user_body => {
                        return Err(PutFileError::Read(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("reading the body: {e}"),
                        )));
                    }
                    // The server closed a pooled connection as the request
                    // went out: once more, on a new one.
                    Err(e) if e.closed_unanswered && first => {
                        tracing::debug!(error = %e, "connection closed unanswered; sending again");
                        first = false;
                    }
                    Err(e) => return Err(transport(format!("{}: {e}", target.host)).into()),
                }
            }
        };
        let answered = tokio::time::timeout_at(deadline.into(), async {
            let answer = exchange.await?;
            let status = answer.status().as_u16();
            let body = outbound::read_capped(answer.into_body(), MAX_ERROR_BODY).await;
            Ok::<_, PutFileError>((status, body))
        })
        .await;
        let (status, body) = match answered {
            Err(_) => {
                return Err(transport(format!(
                    "{}: no answer by the attempt deadline",
                    target.host
                ))
                .into());
            }
            Ok(result) => result?,
        };
        if (200..300).contains(&status) {
            // Stored, whatever may be wrong with the rest of the answer.
            return Ok(());
        }
        let parsed = body.as_deref().map(ErrorBody::parse).unwrap_or_default();
        Err(super::answered("PUT", bucket, key, status, parsed).into())
    }
}

/// The URI and headers of a PUT of `len` bytes, signed with SigV4
/// (`UNSIGNED-PAYLOAD`).
fn put_head(
    target: &Target,
    object: &ObjectMeta<'_>,
    len: u64,
    signer: &HeaderSigner,
    now: OffsetDateTime,
) -> Result<(Uri, HeaderMap), String> {
    let len = len.to_string();
    let meta_names: Vec<String> = object
        .metadata
        .iter()
        .map(|(k, _)| format!("x-amz-meta-{k}"))
        .collect();
    let mut headers: Vec<(&str, &str)> = vec![
        ("host", &target.host),
        ("content-type", object.content_type),
        ("content-length", &len),
    ];
    if let Some(cc) = object.cache_control {
        headers.push(("cache-control", cc));
    }
    for (name, (_, value)) in meta_names.iter().zip(object.metadata) {
        headers.push((name, value));
    }
    let signed = signer
        .sign("PUT", &target.path, &headers, now)
        .map_err(|e| format!("signing: {e}"))?;
    let added = [
        ("x-amz-date", signed.amz_date.as_str()),
        ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
        ("authorization", signed.authorization.as_str()),
    ];
    let mut map = HeaderMap::with_capacity(headers.len() + added.len());
    for (name, value) in headers.iter().chain(&added) {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a header name"))?;
        // A value with a line break would end the head early: refused here.
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("the value of {name} holds a control character"))?;
        map.insert(name, value);
    }
    let uri = format!("{}://{}{}", target.scheme, target.host, target.path)
        .parse::<Uri>()
        .map_err(|e| format!("not a URI: {e}"))?;
    Ok((uri, map))
}

#[cfg(test)]
#[path = "direct_tests.rs"]
mod tests;
