//! The HTTP boundary's error: every failure of a handler becomes one of these,
//! mapped to a status in one `match`. Details go to the log, never secrets;
//! nginx only needs the status (anything but 2xx/3xx drops the publisher).
//!
//! Every authorisation refusal (403) answers the same body, `forbidden`,
//! whatever the reason: an unknown key id, a wrong signature and an expired
//! URL look alike to the caller, so the answer tells an attacker nothing
//! about which key ids exist. The reason goes to the log and to a counter:
//! `livebucket_push_rejected_total` for nginx's callbacks,
//! `livebucket_requests_refused_total` for `/play` and VOD.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::reject::Reject;

#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// A push or callback refused by policy (bad signature, expired, …).
    #[error("refused: {0}")]
    Refused(#[from] Reject),
    #[error("channel {0} already has a live publisher")]
    ChannelLive(String),
    #[error("no live session for this publisher")]
    UnknownSession,
    #[error("application {0:?} is not a public application")]
    WrongApp(String),
    /// livebucket cannot take new media now (spool full, state not writable).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A play or API signature that does not verify (or has expired).
    #[error("signature refused: {0}")]
    BadSignature(#[from] crate::sign::SignError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// The request would cost more than the configured bounds allow.
    #[error("{0}")]
    TooLarge(String),
    /// Too many requests of this kind in progress; try again shortly.
    #[error("{0}")]
    Busy(String),
    /// S3 failed while answering.
    #[error("storage: {0}")]
    Storage(#[from] crate::store::StoreError),
}

/// An `on_publish` refusal, with the same label ([`HttpError::code`]) and
/// status as the admission reason.
impl From<crate::admission::Refusal> for HttpError {
    fn from(r: crate::admission::Refusal) -> Self {
        use crate::admission::Refusal;
        match r {
            Refusal::Refused(reject) => HttpError::Refused(reject),
            Refusal::WrongApp(app) => HttpError::WrongApp(app),
            Refusal::ChannelLive(channel) => HttpError::ChannelLive(channel),
            Refusal::Unavailable(why) => HttpError::Unavailable(why),
        }
    }
}

impl From<crate::vod::VodError> for HttpError {
    fn from(e: crate::vod::VodError) -> Self {
        use crate::vod::VodError;
        match e {
            VodError::Empty { .. } => HttpError::NotFound(e.to_string()),
            VodError::BadRange(m) => HttpError::BadRequest(m),
            VodError::TooManyFragments { .. } => HttpError::TooLarge(e.to_string()),
            VodError::Store(s) => HttpError::Storage(s),
            VodError::Presign(p) => HttpError::BadRequest(p.to_string()),
            VodError::BadManifest { .. } => HttpError::Unavailable(e.to_string()),
        }
    }
}

impl HttpError {
    /// Stable label for logs and the `livebucket_push_rejected_total` metric.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            HttpError::Refused(r) => r.code(),
            HttpError::ChannelLive(_) => "channel_live",
            HttpError::UnknownSession => "unknown_session",
            HttpError::WrongApp(_) => "wrong_app",
            HttpError::Unavailable(_) => "unavailable",
            HttpError::BadSignature(_) => "bad_play_signature",
            HttpError::BadRequest(_) => "bad_request",
            HttpError::NotFound(_) => "not_found",
            HttpError::TooLarge(_) => "too_large",
            HttpError::Busy(_) => "busy",
            HttpError::Storage(_) => "storage",
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            HttpError::Refused(_) | HttpError::ChannelLive(_) | HttpError::WrongApp(_) => {
                StatusCode::FORBIDDEN
            }
            HttpError::UnknownSession => StatusCode::FORBIDDEN,
            HttpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::BadSignature(_) => StatusCode::FORBIDDEN,
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::Storage(crate::store::StoreError::NotFound { .. }) => StatusCode::NOT_FOUND,
            HttpError::Storage(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = self.status();
        // Refusals say nothing; other client errors say what to fix;
        // server-side failures only their kind, with the details in the log.
        let body = if status == StatusCode::FORBIDDEN {
            "forbidden\n".to_owned()
        } else if status.is_client_error() {
            format!("{}: {}\n", self.code(), self)
        } else {
            if status.is_server_error() {
                tracing::warn!(error = %crate::logfmt::Esc(&self.to_string()), "request failed");
            }
            match &self {
                // Says which bound to wait for; nothing internal.
                HttpError::Busy(m) => format!("{}: {m}\n", self.code()),
                _ => format!("{}\n", self.code()),
            }
        };
        let mut resp = (status, body).into_response();
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        if matches!(self, HttpError::Busy(_)) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::SignError;

    async fn answer(e: HttpError) -> (StatusCode, Vec<(String, String)>, String) {
        let resp = e.into_response();
        let status = resp.status();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    /// Whatever the reason, a refusal is the same bytes: an unknown key id
    /// cannot be told from a wrong signature or an expired URL.
    #[tokio::test]
    async fn every_refusal_answers_the_same() {
        let reasons = [
            HttpError::Refused(Reject::UnknownKey {
                key_id: "GKnotthere".into(),
            }),
            HttpError::Refused(Reject::BadSignature),
            HttpError::Refused(Reject::KeyDisabled {
                key_id: "GK1".into(),
            }),
            HttpError::Refused(Reject::Replayed),
            HttpError::BadSignature(SignError::BadSignature),
            HttpError::BadSignature(SignError::Expired),
            HttpError::BadSignature(SignError::Malformed("signature has the wrong length")),
            HttpError::ChannelLive("b/c".into()),
            HttpError::UnknownSession,
        ];
        let first = answer(HttpError::Refused(Reject::Unsigned)).await;
        assert_eq!(first.0, StatusCode::FORBIDDEN);
        assert_eq!(first.2, "forbidden\n");
        for e in reasons {
            assert_eq!(answer(e).await, first);
        }
    }

    /// Every refusal keeps the label its `HttpError` logs and counts.
    #[test]
    fn refusal_codes_are_the_http_codes() {
        let all = [
            crate::admission::Refusal::Refused(Reject::BadSignature),
            crate::admission::Refusal::WrongApp("x".into()),
            crate::admission::Refusal::ChannelLive("demo/cam1".into()),
            crate::admission::Refusal::Unavailable("spool".into()),
        ];
        for r in all {
            let code = r.code();
            assert_eq!(HttpError::from(r).code(), code);
        }
    }
}
