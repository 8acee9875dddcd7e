//! The HTTP boundary's error: every failure of a handler becomes one of these,
//! mapped to a status in one `match`. Details go to the log, never secrets;
//! nginx only needs the status (anything but 2xx/3xx drops the publisher).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::push::Reject;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
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
    BadSignature(#[from] crate::auth::presign::PresignError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// S3 failed while answering.
    #[error("storage: {0}")]
    Storage(#[from] crate::store::StoreError),
}

impl From<crate::vod::VodError> for HttpError {
    fn from(e: crate::vod::VodError) -> Self {
        use crate::vod::VodError;
        match e {
            VodError::Empty { .. } => HttpError::NotFound(e.to_string()),
            VodError::BadRange(m) => HttpError::BadRequest(m),
            VodError::Store(s) => HttpError::Storage(s),
            VodError::Presign(p) => HttpError::BadRequest(p.to_string()),
            VodError::BadManifest { .. } => HttpError::Unavailable(e.to_string()),
        }
    }
}

impl HttpError {
    /// Stable label for logs and the `livebucket_push_rejected_total` metric.
    pub fn code(&self) -> &'static str {
        match self {
            HttpError::Refused(r) => r.code(),
            HttpError::ChannelLive(_) => "channel_live",
            HttpError::UnknownSession => "unknown_session",
            HttpError::WrongApp(_) => "wrong_app",
            HttpError::Unavailable(_) => "unavailable",
            HttpError::BadSignature(_) => "bad_play_signature",
            HttpError::BadRequest(_) => "bad_request",
            HttpError::NotFound(_) => "not_found",
            HttpError::Storage(_) => "storage",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::Refused(_) | HttpError::ChannelLive(_) | HttpError::WrongApp(_) => {
                StatusCode::FORBIDDEN
            }
            HttpError::UnknownSession => StatusCode::FORBIDDEN,
            HttpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::BadSignature(_) => StatusCode::FORBIDDEN,
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::Storage(crate::store::StoreError::NotFound { .. }) => StatusCode::NOT_FOUND,
            HttpError::Storage(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = self.status();
        // Client errors say what to fix; server-side failures only their kind,
        // with the details in the log.
        let body = if status.is_client_error() && !matches!(self, HttpError::Refused(_)) {
            format!("{}: {}\n", self.code(), self)
        } else {
            if status.is_server_error() {
                tracing::warn!(error = %self, "request failed");
            }
            format!("{}\n", self.code())
        };
        let mut resp = (status, body).into_response();
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        resp
    }
}
