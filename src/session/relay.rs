//! Relay admission: nginx's internal HLS application admits one publish per
//! approved session, while its publisher is there ([`super::Sessions::admit_relay`]
//! asks [`admit_relay`] with what the registry knows).

/// Why a publish into the internal HLS application was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RelayRefusal {
    #[error("the stream name is not a session id")]
    NotASession,
    #[error("no approved session has this id")]
    Unknown,
    #[error("the session's publisher has gone")]
    Ended,
    #[error("the session already has its relay")]
    AlreadyRelayed,
}

impl RelayRefusal {
    /// Stable snake_case label for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            RelayRefusal::NotASession => "relay_not_a_session",
            RelayRefusal::Unknown => "relay_unknown_session",
            RelayRefusal::Ended => "relay_session_ended",
            RelayRefusal::AlreadyRelayed => "relay_already_relayed",
        }
    }
}

/// The relay decision, without I/O: one relay per approved session, while
/// its publisher is there.
pub(super) fn admit_relay(known: bool, live: bool, relayed: bool) -> Result<(), RelayRefusal> {
    match (known, live, relayed) {
        (false, _, _) => Err(RelayRefusal::Unknown),
        (true, false, _) => Err(RelayRefusal::Ended),
        (true, true, true) => Err(RelayRefusal::AlreadyRelayed),
        (true, true, false) => Ok(()),
    }
}
