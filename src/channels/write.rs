//! Changing channel records and histories in the bucket: every change is a
//! read-modify-write, made safe against other writers where the store has
//! conditional PUTs (the parent module's doc says what each store gets).
//! [`write_back`] decides how one write-back is made; [`ChannelStore::update`]
//! and [`ChannelStore::record_push`] run the loop: read (the first time
//! possibly from the cache), apply the change, write back, and on a lost
//! race read again and re-apply, at most [`MAX_WRITE_ATTEMPTS`] times.

use bytes::Bytes;
use tracing::{info, warn};

use super::{Cached, ChannelError, ChannelStore};
use crate::channels::record::{self as model, ChannelRecord, LiveRecord};
use crate::config::AccessKey;
use crate::logfmt::Esc;
use crate::store::{Conditional, ObjectMeta, Precondition, PutIf, StoreError, if_match_value};

/// How many times a change is applied to a fresh read after losing a race
/// to another writer, before [`ChannelError::Conflict`].
pub const MAX_WRITE_ATTEMPTS: u32 = 5;

/// How to write back an object read as (`existed`, `etag`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteBack {
    /// A plain PUT: the store has no conditional writes.
    Plain,
    /// A PUT under this condition.
    If(Precondition),
    /// The read carries no ETag to condition on (a cached copy written
    /// without one): read again first.
    ReadAgain,
}

/// The write-back rule: plain where the store ignores conditions; else
/// `If-None-Match: *` for an object that did not exist and `If-Match` its
/// ETag (in the form the store compares) for one that did.
pub fn write_back(mode: Conditional, existed: bool, etag: Option<&str>) -> WriteBack {
    match (mode, existed, etag) {
        (Conditional::Unsupported, _, _) => WriteBack::Plain,
        (Conditional::Supported { .. }, false, _) => WriteBack::If(Precondition::Absent),
        (Conditional::Supported { quoted_etag }, true, Some(etag)) => {
            WriteBack::If(Precondition::Matches(if_match_value(etag, quoted_etag)))
        }
        (Conditional::Supported { .. }, true, None) => WriteBack::ReadAgain,
    }
}

/// Where to probe the store for conditional writes at start: the first
/// enabled key's first named bucket (`None` when every key is disabled or
/// allowed only `"*"`; the first channel write then probes its own).
pub fn probe_target(keys: &[AccessKey]) -> Option<(&str, &str)> {
    keys.iter().filter(|k| !k.disabled).find_map(|k| {
        k.buckets
            .iter()
            .find(|b| *b != "*")
            .map(|b| (k.id.as_str(), b.as_str()))
    })
}

impl ChannelStore {
    /// Whether the store honours conditional PUTs, probed with `key_id` in
    /// `bucket` the first time ([`Store::probe_conditional`]) and logged.
    /// A failed probe (S3 unreachable) is not remembered: the next call
    /// probes again.
    pub async fn conditional(&self, key_id: &str, bucket: &str) -> Result<Conditional, StoreError> {
        self.conditional
            .get_or_try_init(|| async {
                let mode = self.store.probe_conditional(key_id, bucket).await?;
                match mode {
                    Conditional::Supported { quoted_etag } => info!(
                        bucket = %Esc(bucket),
                        etag = if quoted_etag { "quoted" } else { "bare" },
                        "the store honours conditional writes: channel records are \
                         changed with If-Match/If-None-Match, safe from any node"
                    ),
                    Conditional::Unsupported => info!(
                        bucket = %Esc(bucket),
                        "the store has no conditional writes (it ignored If-None-Match): \
                         channel records are written plainly, one writer at a time"
                    ),
                }
                Ok(mode)
            })
            .await
            .copied()
    }

    /// The start-up probe: [`ChannelStore::conditional`], a failure logged
    /// (the first channel write probes again).
    pub async fn detect_conditional(&self, key_id: &str, bucket: &str) {
        if let Err(e) = self.conditional(key_id, bucket).await {
            warn!(
                error = %Esc(&e.to_string()),
                "cannot tell yet whether the store has conditional writes; \
                 the first channel change will ask again"
            );
        }
    }

    /// Changes a channel's record: `apply` gets the current record (`None`:
    /// no such channel) and returns the new one, or refuses with its own
    /// error. On a store with conditional writes a lost race re-reads and
    /// calls `apply` again (see the module doc); the stored record is
    /// returned.
    pub async fn update<E: From<ChannelError>>(
        &self,
        key_id: &str,
        bucket: &str,
        channel: &str,
        mut apply: impl FnMut(Option<ChannelRecord>) -> Result<ChannelRecord, E>,
    ) -> Result<ChannelRecord, E> {
        let mode = self
            .conditional(key_id, bucket)
            .await
            .map_err(ChannelError::from)?;
        let object = model::channel_key(channel);
        // The first attempt may start from the cache: a stale copy only
        // costs a 412 and a fresh read.
        let mut current = self.cached_entry(bucket, channel);
        for attempt in 1..=MAX_WRITE_ATTEMPTS {
            let mut read = match current.take() {
                Some(c) => c,
                None => self.read(key_id, bucket, channel).await?,
            };
            let mut rule = write_back(mode, read.record.is_some(), read.etag.as_deref());
            if rule == WriteBack::ReadAgain {
                read = self.read(key_id, bucket, channel).await?;
                rule = write_back(mode, read.record.is_some(), read.etag.as_deref());
            }
            let record = apply(read.record)?;
            let body = model::encode_channel(&record).map_err(|e| ChannelError::Corrupt {
                channel: channel.to_owned(),
                message: e.to_string(),
            })?;
            let written = self.write(key_id, bucket, &object, body, &rule).await;
            match written.map_err(ChannelError::from)? {
                PutIf::Stored { etag } => {
                    self.remember(
                        bucket,
                        channel,
                        Cached {
                            record: Some(record.clone()),
                            etag,
                        },
                    );
                    self.announce(bucket, channel);
                    return Ok(record);
                }
                PutIf::PreconditionFailed => info!(
                    bucket = %Esc(bucket),
                    channel = %Esc(channel),
                    attempt,
                    "channel record changed by another writer meanwhile; applying the change \
                     again to a fresh read"
                ),
            }
        }
        self.forget(bucket, channel);
        Err(ChannelError::Conflict {
            channel: channel.to_owned(),
        }
        .into())
    }

    /// One write-back under `rule`; a plain one always lands.
    async fn write(
        &self,
        key_id: &str,
        bucket: &str,
        object: &str,
        body: Vec<u8>,
        rule: &WriteBack,
    ) -> Result<PutIf, StoreError> {
        let body = Bytes::from(body);
        match rule {
            WriteBack::If(condition) => {
                self.store
                    .put_if(key_id, bucket, object, body, &ObjectMeta::JSON, condition)
                    .await
            }
            // ReadAgain cannot reach here (the caller read again), and a
            // plain PUT returns no ETag worth keeping.
            WriteBack::Plain | WriteBack::ReadAgain => {
                self.store
                    .put(key_id, bucket, object, body, &ObjectMeta::JSON)
                    .await?;
                Ok(PutIf::Stored { etag: None })
            }
        }
    }

    /// Adds a finished push to the channel's history (the last
    /// [`model::HISTORY_LEN`] are kept), under the same conditional rule as
    /// [`ChannelStore::update`], so two nodes ending pushes at once both
    /// land.
    pub async fn record_push(
        &self,
        key_id: &str,
        bucket: &str,
        channel: &str,
        push: LiveRecord,
    ) -> Result<(), ChannelError> {
        let mode = self.conditional(key_id, bucket).await?;
        let object = model::history_key(channel);
        for attempt in 1..=MAX_WRITE_ATTEMPTS {
            let (mut records, etag, existed) =
                match self.store.get_versioned(key_id, bucket, &object).await {
                    Ok(v) => (
                        model::decode_history(&v.body).map_err(|e| ChannelError::Corrupt {
                            channel: channel.to_owned(),
                            message: e.to_string(),
                        })?,
                        v.etag,
                        true,
                    ),
                    Err(StoreError::NotFound { .. }) => (Vec::new(), None, false),
                    Err(e) => return Err(e.into()),
                };
            model::record_push(&mut records, push.clone());
            let body = model::encode_history(&records).map_err(|e| ChannelError::Corrupt {
                channel: channel.to_owned(),
                message: e.to_string(),
            })?;
            let rule = match write_back(mode, existed, etag.as_deref()) {
                // Just read: no ETag means the store gives none; write plainly.
                WriteBack::ReadAgain => WriteBack::Plain,
                rule => rule,
            };
            match self.write(key_id, bucket, &object, body, &rule).await? {
                PutIf::Stored { .. } => return Ok(()),
                PutIf::PreconditionFailed => info!(
                    bucket = %Esc(bucket),
                    channel = %Esc(channel),
                    attempt,
                    "channel history changed by another writer meanwhile; adding the push \
                     to a fresh read"
                ),
            }
        }
        Err(ChannelError::Conflict {
            channel: channel.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_back_follows_the_store() {
        let rgw = Conditional::Supported { quoted_etag: false };
        let aws = Conditional::Supported { quoted_etag: true };
        let etag = Some("\"e1\"");
        // Garage: plain, whatever was read.
        assert_eq!(
            write_back(Conditional::Unsupported, true, etag),
            WriteBack::Plain
        );
        assert_eq!(
            write_back(Conditional::Unsupported, false, None),
            WriteBack::Plain
        );
        // A new record: only if still absent.
        assert_eq!(
            write_back(rgw, false, None),
            WriteBack::If(Precondition::Absent)
        );
        // An existing one: only if unchanged, in the form the store compares.
        assert_eq!(
            write_back(rgw, true, etag),
            WriteBack::If(Precondition::Matches("e1".into()))
        );
        assert_eq!(
            write_back(aws, true, etag),
            WriteBack::If(Precondition::Matches("\"e1\"".into()))
        );
        // Known to exist but no ETag to condition on: never write blind.
        assert_eq!(write_back(rgw, true, None), WriteBack::ReadAgain);
    }

    #[test]
    fn the_probe_uses_an_enabled_key_and_a_named_bucket() {
        let key = |id: &str, buckets: &[&str], disabled: bool| AccessKey {
            id: id.into(),
            secret: "s".into(),
            buckets: buckets.iter().map(|b| b.to_string()).collect(),
            disabled,
        };
        let keys = [
            key("off", &["a"], true),
            key("any", &["*"], false),
            key("k", &["*", "media"], false),
        ];
        assert_eq!(probe_target(&keys), Some(("k", "media")));
        assert_eq!(probe_target(&keys[..2]), None);
    }
}
