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
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::Refused(_) | HttpError::ChannelLive(_) | HttpError::WrongApp(_) => {
                StatusCode::FORBIDDEN
            }
            HttpError::UnknownSession => StatusCode::FORBIDDEN,
            HttpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut resp = (status, format!("{}\n", self.code())).into_response();
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        resp
    }
}
