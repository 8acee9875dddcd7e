//! Conditional writes, where the store has them: a PUT that lands only if
//! the object is absent (`If-None-Match: *`) or still the version that was
//! read (`If-Match: <ETag>`), so that two writers doing read-modify-write on
//! one object cannot lose an update. Garage ignores both headers (the PUT
//! always lands), and a store that does not implement them may refuse them
//! (501), so whether a store honours them is found out by
//! [`Store::probe_conditional`] and never assumed.
//!
//! How the ETag is given back differs: AWS S3 and MinIO accept the quoted
//! form (`"abc…"`, as a GET returns it), Ceph RGW 16.2 only the bare hex
//! (it refuses a quoted one with 412 even when it matches). The probe finds
//! which; [`if_match_value`] writes it.
//!
//! Losing a race is not always a 412: two conditional PUTs that both pass
//! RGW's check at once end in an atomic write of the head object, and the
//! loser's is cancelled (`ECANCELED`, nothing written) and answered
//! `500 UnknownError`, because RGW 16.2 only retries a cancelled write when
//! no condition was given. So on a conditional PUT that answer counts as a
//! failed precondition: the caller reads again and re-applies its change.
//! (If a 500 ever meant the write had landed, the re-read would show it,
//! and a change applied twice is the worst case, never a lost one.)
//!
//! These requests go through the AWS SDK, the same code the probe used, so
//! a write relies on exactly the header form and refusal answers the probe
//! saw: channel records, and in a cluster the fenced playlist writes
//! ([`Store::put_if_before`]); none of them is on a fragment's path.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use super::{ObjectMeta, Store, StoreError, classify};

/// Whether and how the store honours conditional PUTs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conditional {
    /// Both `If-None-Match: *` and `If-Match` are honoured; `quoted_etag`
    /// says whether `If-Match` takes the ETag quoted (AWS S3, MinIO) or bare
    /// (Ceph RGW).
    Supported { quoted_etag: bool },
    /// The headers are ignored (Garage): a conditional PUT always lands.
    Unsupported,
}

/// The condition a PUT is made under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// Only if no object has the key (`If-None-Match: *`).
    Absent,
    /// Only if the object's ETag is still this one (`If-Match`, the value
    /// already in the form the store compares: [`if_match_value`]).
    Matches(String),
}

/// What became of a conditional PUT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutIf {
    /// Stored; the new object's ETag as the store returned it, if it did.
    Stored { etag: Option<String> },
    /// The condition did not hold (412, AWS's 409 for a conditional write
    /// racing another, RGW's 500 `UnknownError` for the same; see the
    /// module doc): nothing was written.
    PreconditionFailed,
}

/// An object's bytes and ETag (as the store returned it, quotes included).
#[derive(Debug, Clone)]
pub struct Versioned {
    pub body: Bytes,
    pub etag: Option<String>,
}

/// How a store refused a conditional PUT (nothing was written either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The condition did not hold, or the PUT lost a race (see the module
    /// doc for RGW's 500).
    LostRace,
    /// The store does not implement the condition header (501, or 400
    /// `NotImplemented`): it has no conditional writes.
    NotUnderstood,
}

/// What a conditional PUT's error answer means; `None`: an ordinary
/// failure, for the caller's retry rules.
pub(super) fn refusal(status: u16, code: Option<&str>) -> Option<Refusal> {
    match (status, code) {
        (409 | 412, _) => Some(Refusal::LostRace),
        (500, None | Some("UnknownError")) => Some(Refusal::LostRace),
        (501, _) | (400, Some("NotImplemented")) => Some(Refusal::NotUnderstood),
        _ => None,
    }
}

/// The `If-Match` value for an ETag as a GET or PUT returned it.
pub fn if_match_value(etag: &str, quoted: bool) -> String {
    let bare = etag.trim().trim_start_matches("W/").trim_matches('"');
    if quoted {
        format!("\"{bare}\"")
    } else {
        bare.to_owned()
    }
}

/// The answers the probe got, in order (see [`Store::probe_conditional`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ProbeAnswers {
    /// The second `If-None-Match: *` PUT of the probe object.
    pub second_create_landed: bool,
    /// A PUT with `If-Match` of an ETag the object never had.
    pub wrong_match_landed: bool,
    /// A PUT with `If-Match` of the object's ETag, quoted.
    pub quoted_match_landed: bool,
    /// The same with the bare ETag, asked only when the quoted one failed.
    pub bare_match_landed: Option<bool>,
}

/// What the probe's answers say about the store: conditional writes only
/// when a repeated create was refused, a wrong ETag was refused and the right
/// one (in one of its two forms) was accepted. Anything else is treated as
/// no conditional writes, so no update ever relies on a header the store
/// might ignore.
pub(super) fn conclude(a: ProbeAnswers) -> Conditional {
    if a.second_create_landed || a.wrong_match_landed {
        return Conditional::Unsupported;
    }
    match (a.quoted_match_landed, a.bare_match_landed) {
        (true, _) => Conditional::Supported { quoted_etag: true },
        (false, Some(true)) => Conditional::Supported { quoted_etag: false },
        (false, _) => Conditional::Unsupported,
    }
}

impl Store {
    /// [`Store::get`] with the object's ETag.
    pub async fn get_versioned(
        &self,
        key_id: &str,
        bucket: &str,
        key: &str,
    ) -> Result<Versioned, StoreError> {
        let out = self.get_object(key_id, bucket, key).await?;
        let etag = out.e_tag().map(str::to_owned);
        Ok(Versioned {
            body: super::read_body(out.body, bucket, key).await?,
            etag,
        })
    }

    /// Stores a whole object if `condition` holds. On a store without
    /// conditional writes ([`Conditional::Unsupported`]) the header is
    /// ignored and the PUT lands regardless: callers ask only where
    /// [`Store::probe_conditional`] said the store honours it. A store that
    /// refuses the header itself is a non-retriable [`StoreError`].
    pub async fn put_if(
        &self,
        key_id: &str,
        bucket: &str,
        key: &str,
        body: Bytes,
        object: &ObjectMeta<'_>,
        condition: &Precondition,
    ) -> Result<PutIf, StoreError> {
        match self
            .send_put_if(key_id, bucket, key, body, object, condition)
            .await?
        {
            Ok(etag) => Ok(PutIf::Stored { etag }),
            Err(Refusal::LostRace) => Ok(PutIf::PreconditionFailed),
            Err(Refusal::NotUnderstood) => Err(StoreError::Request {
                op: "PUT",
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                message: "the store does not implement conditional PUTs".into(),
                retriable: false,
            }),
        }
    }

    /// [`Store::put_if`] abandoned at `before` if its own attempt deadline
    /// is later (a fenced write that must not land after its lease): no
    /// answer by then is a retriable [`StoreError`].
    // put_if's arguments and the deadline, as put_before is put's.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_if_before(
        &self,
        key_id: &str,
        bucket: &str,
        key: &str,
        body: Bytes,
        object: &ObjectMeta<'_>,
        condition: &Precondition,
        before: Option<std::time::Instant>,
    ) -> Result<PutIf, StoreError> {
        let deadline = self.deadline(body.len() as u64, before);
        let sent = self.put_if(key_id, bucket, key, body, object, condition);
        let result = match tokio::time::timeout_at(deadline.into(), sent).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Request {
                op: "PUT",
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                message: "no answer by the attempt deadline".into(),
                retriable: true,
            }),
        };
        let noted = match &result {
            Ok(_) => Ok(()),
            Err(e) => Err(Some(e)),
        };
        self.note_put(key_id, bucket, noted);
        result
    }

    /// One conditional PUT: the new ETag, or how the store refused it.
    #[tracing::instrument(level = "debug", skip(self, body, object))]
    async fn send_put_if(
        &self,
        key_id: &str,
        bucket: &str,
        key: &str,
        body: Bytes,
        object: &ObjectMeta<'_>,
        condition: &Precondition,
    ) -> Result<Result<Option<String>, Refusal>, StoreError> {
        let mut req = self
            .client(key_id)?
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(object.content_type)
            .set_cache_control(object.cache_control.map(str::to_owned))
            .body(ByteStream::from(body));
        for (k, v) in object.metadata {
            req = req.metadata(*k, *v);
        }
        req = match condition {
            Precondition::Absent => req.if_none_match("*"),
            Precondition::Matches(etag) => req.if_match(etag),
        };
        let sent = if self.s3.sign_payload {
            req.send().await
        } else {
            req.customize().disable_payload_signing().send().await
        };
        match sent {
            Ok(out) => Ok(Ok(out.e_tag().map(str::to_owned))),
            Err(SdkError::ServiceError(se))
                if let Some(r) = refusal(se.raw().status().as_u16(), se.err().code()) =>
            {
                Ok(Err(r))
            }
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                let mut err = classify("PUT", bucket, key, e);
                if let (StoreError::Request { message, .. }, Some(status)) = (&mut err, status) {
                    message.push_str(&format!(" (HTTP {status})"));
                }
                Err(err)
            }
        }
    }

    /// Finds out whether the store honours conditional PUTs, with a probe
    /// object of its own under `.livebucket/probe/` in `bucket` (deleted
    /// after): created with `If-None-Match: *`, created again the same way
    /// (must be refused), then written with `If-Match` of a wrong ETag (must
    /// be refused) and of its own ETag, quoted and, if that is refused, bare
    /// (must land). [`conclude`] reads the answers; a store that refuses the
    /// headers themselves (501 Not Implemented) has no conditional writes.
    pub async fn probe_conditional(
        &self,
        key_id: &str,
        bucket: &str,
    ) -> Result<Conditional, StoreError> {
        let key = format!(
            ".livebucket/probe/conditional-{:016x}",
            rand::random::<u64>()
        );
        let key = key.as_str();
        /// Stops the probe at the first header the store does not implement.
        struct NotUnderstood;
        let put = |body: &'static [u8], condition: Precondition| async move {
            let body = Bytes::from_static(body);
            let sent = self
                .send_put_if(key_id, bucket, key, body, &ObjectMeta::JSON, &condition)
                .await;
            match sent {
                Ok(Ok(_)) => Ok(true),
                Ok(Err(Refusal::LostRace)) => Ok(false),
                Ok(Err(Refusal::NotUnderstood)) => Err(Err(NotUnderstood)),
                Err(e) => Err(Ok(e)),
            }
        };
        let answers = async {
            if !put(b"{\"probe\":1}", Precondition::Absent).await? {
                // A fresh random key existed: the store answers 412 to
                // anything, which is no conditional write either.
                return Ok(None);
            }
            let second_create_landed = put(b"{\"probe\":2}", Precondition::Absent).await?;
            let wrong_match_landed = put(
                b"{\"probe\":3}",
                Precondition::Matches("\"00000000000000000000000000000000\"".into()),
            )
            .await?;
            let etag = self
                .get_versioned(key_id, bucket, key)
                .await
                .map_err(Ok)?
                .etag
                .unwrap_or_default();
            let quoted_match_landed = put(
                b"{\"probe\":4}",
                Precondition::Matches(if_match_value(&etag, true)),
            )
            .await?;
            let bare_match_landed = if quoted_match_landed {
                None
            } else {
                Some(
                    put(
                        b"{\"probe\":5}",
                        Precondition::Matches(if_match_value(&etag, false)),
                    )
                    .await?,
                )
            };
            Ok::<_, Result<StoreError, NotUnderstood>>(Some(ProbeAnswers {
                second_create_landed,
                wrong_match_landed,
                quoted_match_landed,
                bare_match_landed,
            }))
        }
        .await;
        // The probe object goes whatever the answers were; one left behind
        // (no delete permission, an outage just now) harms nothing.
        if let Err(e) = self.delete(key_id, bucket, key).await {
            tracing::warn!(error = %e, "cannot delete the conditional-write probe object");
        }
        match answers {
            Ok(answers) => Ok(answers.map_or(Conditional::Unsupported, conclude)),
            Err(Err(NotUnderstood)) => Ok(Conditional::Unsupported),
            Err(Ok(e)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(second: bool, wrong: bool, quoted: bool, bare: Option<bool>) -> ProbeAnswers {
        ProbeAnswers {
            second_create_landed: second,
            wrong_match_landed: wrong,
            quoted_match_landed: quoted,
            bare_match_landed: bare,
        }
    }

    #[test]
    fn the_probe_decides_per_store() {
        // AWS S3, MinIO: quoted ETags.
        assert_eq!(
            conclude(answers(false, false, true, None)),
            Conditional::Supported { quoted_etag: true }
        );
        // Ceph RGW 16.2: a quoted ETag is refused, the bare one lands.
        assert_eq!(
            conclude(answers(false, false, false, Some(true))),
            Conditional::Supported { quoted_etag: false }
        );
        // Garage: every PUT lands.
        assert_eq!(
            conclude(answers(true, true, true, None)),
            Conditional::Unsupported
        );
        // If-None-Match honoured but If-Match ignored, or the reverse:
        // neither is enough to build on.
        assert_eq!(
            conclude(answers(false, true, true, None)),
            Conditional::Unsupported
        );
        assert_eq!(
            conclude(answers(true, false, true, None)),
            Conditional::Unsupported
        );
        // Refuses even its own ETag.
        assert_eq!(
            conclude(answers(false, false, false, Some(false))),
            Conditional::Unsupported
        );
    }

    #[test]
    fn refusals_are_told_from_failures() {
        let lost = Some(Refusal::LostRace);
        assert_eq!(refusal(412, Some("PreconditionFailed")), lost);
        assert_eq!(refusal(409, Some("ConditionalRequestConflict")), lost);
        // RGW's cancelled head write.
        assert_eq!(refusal(500, Some("UnknownError")), lost);
        assert_eq!(refusal(500, None), lost);
        let unknown = Some(Refusal::NotUnderstood);
        assert_eq!(refusal(501, Some("NotImplemented")), unknown);
        assert_eq!(refusal(400, Some("NotImplemented")), unknown);
        // Ordinary failures stay the caller's to retry or report.
        assert_eq!(refusal(500, Some("InternalError")), None);
        assert_eq!(refusal(503, Some("SlowDown")), None);
        assert_eq!(refusal(403, Some("AccessDenied")), None);
        assert_eq!(refusal(404, Some("NoSuchBucket")), None);
        assert_eq!(refusal(400, Some("InvalidArgument")), None);
    }

    #[test]
    fn if_match_takes_the_form_the_store_compares() {
        let etag = "\"586642bd2367777f738a8b886af4ab46\"";
        assert_eq!(if_match_value(etag, true), etag);
        assert_eq!(
            if_match_value(etag, false),
            "586642bd2367777f738a8b886af4ab46"
        );
        // A bare ETag (some stores return one) is quoted when asked.
        assert_eq!(
            if_match_value("586642bd2367777f738a8b886af4ab46", true),
            etag
        );
        // A multipart ETag keeps its part count.
        assert_eq!(if_match_value("\"abc-2\"", false), "abc-2");
    }
}
