//! Which channels have uploads parked on a final answer from the store, and
//! why: what `GetLiveChannelStat` tells the bucket's keys (and so the
//! console) while the store refuses a channel's fragments, playlist or
//! manifests.
//!
//! [`super::upload`] parks a job whose last attempt got a final answer
//! (`AccessDenied`, `NoSuchBucket`, …; see [`crate::store::errors`]); it
//! notes each attempt's outcome here through the job's [`ParkedJob`]. A job
//! is listed from its first final answer until an attempt gets any other
//! outcome (stored, or a retriable failure) or the job ends (stored,
//! cancelled at shutdown); dropping the [`ParkedJob`] takes it off the list,
//! so nothing stays listed after its job is gone.
//!
//! Entries are keyed by bucket and channel, the scope the OSS API
//! authorises a key on, and hold only the S3 code as a metric label (a plain
//! identifier, [`crate::store::errors::metric_code`]) and the time: never an
//! S3 message, key or URL. `/healthz` reads the store's own per-key record
//! instead ([`crate::store::Store::refusals`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// One parked job: the S3 code of its latest refusal, when that came, and
/// when the job was first parked (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    code: String,
    latest: u64,
    since: u64,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    /// (bucket, channel) → job id → entry; a channel with none is absent.
    by_channel: HashMap<(String, String), BTreeMap<u64, Entry>>,
}

/// The parked uploads of every channel this node uploads for; cheap to
/// clone (shared).
#[derive(Clone, Default)]
pub(crate) struct ParkedUploads {
    inner: Arc<Mutex<Registry>>,
}

/// What a channel's parked uploads add up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChannelParked {
    /// Jobs parked now (fragments, playlist, manifests).
    pub uploads: usize,
    /// The S3 code of the latest refusal among them.
    pub code: String,
    /// When the longest-parked of them was first parked (Unix seconds).
    pub since: u64,
}

impl ParkedUploads {
    /// A handle for one upload job of `channel` in `bucket`, not parked yet.
    pub(crate) fn job(&self, bucket: &str, channel: &str) -> ParkedJob {
        let mut reg = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        reg.next_id += 1;
        ParkedJob {
            registry: self.clone(),
            at: (bucket.to_owned(), channel.to_owned()),
            id: reg.next_id,
        }
    }

    /// The parked uploads of `channel` in `bucket`; `None` when there are
    /// none.
    pub(crate) fn of(&self, bucket: &str, channel: &str) -> Option<ChannelParked> {
        let reg = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let jobs = reg
            .by_channel
            .get(&(bucket.to_owned(), channel.to_owned()))?;
        summarize(jobs)
    }
}

/// Count, earliest `since`, and the code of the latest refusal (ties go to
/// the job made last).
fn summarize(jobs: &BTreeMap<u64, Entry>) -> Option<ChannelParked> {
    let latest = jobs.iter().max_by_key(|(id, e)| (e.latest, **id))?.1;
    Some(ChannelParked {
        uploads: jobs.len(),
        code: latest.code.clone(),
        since: jobs.values().map(|e| e.since).min()?,
    })
}

/// One upload job's place in [`ParkedUploads`]; off the list when dropped.
pub(crate) struct ParkedJob {
    registry: ParkedUploads,
    at: (String, String),
    id: u64,
}

impl ParkedJob {
    /// Notes an attempt's outcome: `Some(code)` for a final answer (the job
    /// is parked; the time it was first parked is kept across attempts),
    /// `None` for anything else (not parked).
    pub(crate) fn note(&self, final_code: Option<&str>) {
        self.note_at(final_code, crate::clock::unix_now());
    }

    fn note_at(&self, final_code: Option<&str>, now: u64) {
        let mut reg = self
            .registry
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match final_code {
            Some(code) => {
                let jobs = reg.by_channel.entry(self.at.clone()).or_default();
                let since = jobs.get(&self.id).map_or(now, |e| e.since);
                jobs.insert(
                    self.id,
                    Entry {
                        code: code.to_owned(),
                        latest: now,
                        since,
                    },
                );
            }
            None => {
                if let Some(jobs) = reg.by_channel.get_mut(&self.at) {
                    jobs.remove(&self.id);
                    if jobs.is_empty() {
                        reg.by_channel.remove(&self.at);
                    }
                }
            }
        }
    }
}

impl Drop for ParkedJob {
    fn drop(&mut self) {
        self.note(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_lists_its_parked_jobs_until_each_moves_on() {
        let parked = ParkedUploads::default();
        let fragment = parked.job("media", "cam");
        let playlist = parked.job("media", "cam");
        assert_eq!(parked.of("media", "cam"), None);

        fragment.note_at(Some("AccessDenied"), 100);
        playlist.note_at(Some("AccessDenied"), 102);
        // Parked again: still parked since its first final answer.
        fragment.note_at(Some("NoSuchBucket"), 110);
        assert_eq!(
            parked.of("media", "cam"),
            Some(ChannelParked {
                uploads: 2,
                code: "NoSuchBucket".into(),
                since: 100,
            })
        );

        // A retriable failure (or success) is not parked any more.
        fragment.note_at(None, 120);
        assert_eq!(
            parked.of("media", "cam"),
            Some(ChannelParked {
                uploads: 1,
                code: "AccessDenied".into(),
                since: 102,
            })
        );
        // Parked again later: a new `since`.
        fragment.note_at(Some("AccessDenied"), 130);
        playlist.note_at(Some("EntityTooLarge"), 125);
        assert_eq!(
            parked.of("media", "cam"),
            Some(ChannelParked {
                uploads: 2,
                code: "AccessDenied".into(),
                since: 102,
            })
        );
        fragment.note_at(None, 140);
        drop(playlist);
        assert_eq!(parked.of("media", "cam"), None);
        assert!(parked.inner.lock().unwrap().by_channel.is_empty());
    }

    #[test]
    fn entries_are_scoped_to_their_bucket_and_channel() {
        let parked = ParkedUploads::default();
        let job = parked.job("media", "cam");
        job.note_at(Some("AccessDenied"), 5);
        assert!(parked.of("media", "cam").is_some());
        assert_eq!(parked.of("other", "cam"), None);
        assert_eq!(parked.of("media", "cam2"), None);
        // A job dropped while parked (cancelled at shutdown) is gone too.
        drop(job);
        assert_eq!(parked.of("media", "cam"), None);
    }
}
