//! Which precondition a fenced playlist PUT is made under, and what a
//! refused one leads to. Plain functions; the uploader carries them out.
//!
//! In a cluster, on a store that honours conditional PUTs
//! ([`Conditional::Supported`]), a channel's live playlist is written only
//! if it is still the object this node last wrote or read: `If-Match` that
//! ETag, or `If-None-Match: *` when the object was known absent. A PUT that
//! passed the fence just before this node's lease expired and arrives after
//! the next holder's write is then refused (412) instead of overwriting the
//! next holder's playlist. Without conditional writes (Garage) the PUT is
//! plain, as on a single node.

use super::fence::FenceVerdict;
pub(crate) use super::fence::Known;
use crate::store::{Conditional, Precondition, if_match_value};

/// How the next PUT of a playlist is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// No conditional writes: a plain PUT.
    Plain,
    /// A PUT under this condition.
    If(Precondition),
    /// The object's current version is unknown: read it first, then decide
    /// again.
    ReadFirst,
}

/// The PUT to make, given the store's conditional writes and what this node
/// knows of the object.
pub(crate) fn attempt(mode: Conditional, known: &Known) -> Attempt {
    match (mode, known) {
        (Conditional::Unsupported, _) => Attempt::Plain,
        (Conditional::Supported { .. }, Known::Unknown) => Attempt::ReadFirst,
        (Conditional::Supported { .. }, Known::Absent) => Attempt::If(Precondition::Absent),
        (Conditional::Supported { quoted_etag }, Known::Etag(etag)) => {
            Attempt::If(Precondition::Matches(if_match_value(etag, quoted_etag)))
        }
    }
}

/// What follows a refused conditional PUT (someone wrote the playlist since
/// this node last wrote or read it), once the fence has been asked again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterRefusal {
    /// Another node holds the channel: the playlist is theirs, this version
    /// is dropped for good.
    Drop,
    /// The fence cannot tell: the write stays due and is tried later.
    Hold,
    /// This node still holds the channel (its own earlier PUT may have
    /// landed with its answer lost, or a former holder's late PUT landed):
    /// read the object's current ETag and try once more with it.
    ReadAndRetry,
    /// Refused again right after a fresh read while this node holds the
    /// channel: another writer is active, so no third PUT now; the attempt
    /// fails and the uploader's backoff decides when the next one (with a
    /// new fence check and read) comes.
    Contended,
}

/// `verdict`: the fence's answer asked after the refusal; `reread`: the
/// refused PUT was already the retry with a freshly read ETag.
pub(crate) fn after_refusal(verdict: FenceVerdict, reread: bool) -> AfterRefusal {
    match (verdict, reread) {
        (FenceVerdict::Yield, _) => AfterRefusal::Drop,
        (FenceVerdict::Hold, _) => AfterRefusal::Hold,
        (FenceVerdict::Write, false) => AfterRefusal::ReadAndRetry,
        (FenceVerdict::Write, true) => AfterRefusal::Contended,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{StoreError, Versioned};
    use bytes::Bytes;

    const RGW: Conditional = Conditional::Supported { quoted_etag: false };
    const AWS: Conditional = Conditional::Supported { quoted_etag: true };

    #[test]
    fn the_precondition_follows_what_is_known() {
        let etag = Known::Etag("\"9b2cf535f27731c974343645a3985328\"".into());
        // Garage: plain PUTs whatever is known.
        for k in [Known::Unknown, Known::Absent, etag.clone()] {
            assert_eq!(attempt(Conditional::Unsupported, &k), Attempt::Plain);
        }
        assert_eq!(
            attempt(RGW, &etag),
            Attempt::If(Precondition::Matches(
                "9b2cf535f27731c974343645a3985328".into()
            ))
        );
        assert_eq!(
            attempt(AWS, &etag),
            Attempt::If(Precondition::Matches(
                "\"9b2cf535f27731c974343645a3985328\"".into()
            ))
        );
        assert_eq!(
            attempt(RGW, &Known::Absent),
            Attempt::If(Precondition::Absent)
        );
        // Never a blind PUT on a store that could have refused it.
        assert_eq!(attempt(AWS, &Known::Unknown), Attempt::ReadFirst);
    }

    #[test]
    fn a_refusal_asks_the_fence_and_retries_once() {
        assert_eq!(
            after_refusal(FenceVerdict::Yield, false),
            AfterRefusal::Drop
        );
        assert_eq!(after_refusal(FenceVerdict::Yield, true), AfterRefusal::Drop);
        assert_eq!(after_refusal(FenceVerdict::Hold, false), AfterRefusal::Hold);
        assert_eq!(after_refusal(FenceVerdict::Hold, true), AfterRefusal::Hold);
        assert_eq!(
            after_refusal(FenceVerdict::Write, false),
            AfterRefusal::ReadAndRetry
        );
        assert_eq!(
            after_refusal(FenceVerdict::Write, true),
            AfterRefusal::Contended
        );
    }

    #[test]
    fn answers_and_reads_become_what_is_known() {
        assert_eq!(
            Known::stored(Some("\"a\"".into())),
            Known::Etag("\"a\"".into())
        );
        assert_eq!(Known::stored(None), Known::Unknown);
        let missing = StoreError::NotFound {
            op: "GET",
            bucket: "b".into(),
            key: "k".into(),
        };
        assert_eq!(Known::read(Err(missing)).ok(), Some(Known::Absent));
        let read = Versioned {
            body: Bytes::new(),
            etag: Some("\"e\"".into()),
        };
        assert_eq!(
            Known::read(Ok(read)).ok(),
            Some(Known::Etag("\"e\"".into()))
        );
        let down = StoreError::Request {
            op: "GET",
            bucket: "b".into(),
            key: "k".into(),
            message: "connection refused".into(),
            retriable: true,
        };
        assert!(Known::read(Err(down)).is_err());
    }
}
