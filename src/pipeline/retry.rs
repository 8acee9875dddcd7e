//! How an upload is retried: every attempt until it is stored or livebucket
//! stops, never dropped. "Retriable?" is decided by the store
//! ([`StoreError::is_retriable`]) and by [`UploadError`]; this module only
//! decides how long to wait ([`backoff`]) and runs the loop
//! ([`until_stored`]); [`super::upload`] builds the attempts.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use tokio::sync::Semaphore;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::StoreError;

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UploadError {
    /// The local copy could not be read (it is looked for again next time).
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The fence held the write back: this node cannot confirm it holds the
    /// channel (cluster coordinator unreachable).
    #[error(
        "held back: this node cannot confirm it holds channel {0} (cluster coordinator unreachable)"
    )]
    Fenced(String),
    /// A conditional playlist PUT was refused twice in a row while this
    /// node holds the channel, the second time right after reading the
    /// object's current ETag: another writer is active. Tried again after
    /// the backoff, with a new fence check and read.
    #[error("the playlist of channel {0} changed again under this node's write; retried later")]
    Contended(String),
    /// The attempt panicked (its message); retried at the longest backoff,
    /// as a bug is unlikely to go away sooner.
    #[error("the upload attempt panicked: {0}")]
    Panicked(String),
}

/// The text a panic was raised with, when it is text.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(not text)".into())
}

impl UploadError {
    pub(super) fn is_retriable(&self) -> bool {
        match self {
            UploadError::Read { .. } | UploadError::Fenced(_) | UploadError::Contended(_) => true,
            UploadError::Panicked(_) => false,
            UploadError::Store(e) => e.is_retriable(),
        }
    }

    /// A refusal only a change of configuration, keys or bucket can fix.
    pub(super) fn is_final_answer(&self) -> bool {
        matches!(self, UploadError::Store(e) if !e.is_retriable())
    }

    /// The S3 code a final answer parks its job under
    /// ([`super::parked`]); `None` for any other failure.
    pub(super) fn parked_code(&self) -> Option<String> {
        match self {
            UploadError::Store(e) if self.is_final_answer() => Some(e.metric_code()),
            _ => None,
        }
    }
}

/// Waits for the next change of `keys` (a reload); forever if its sender is
/// gone.
async fn next_reload(keys: &mut watch::Receiver<u64>) {
    if keys.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Full-jitter exponential backoff: a random wait in `[0, min(cap, base·1.5^n)]`,
/// at least 50 ms so a dead server is not hammered.
pub(crate) fn backoff(attempt: u32, cap: Duration) -> Duration {
    let base = 0.2_f64 * 1.5_f64.powi(attempt.min(40) as i32);
    let ceiling = base.min(cap.as_secs_f64());
    let jittered = ceiling * rand::random::<f64>();
    Duration::from_secs_f64(jittered.max(0.05))
}

/// Runs `attempt` until it succeeds; `None` if cancelled first. Holds an
/// upload permit only while a request is in flight, so a failing server does
/// not starve uploads of healthy buckets.
///
/// A final answer parks the job ([`UploadError::is_final_answer`]): the next
/// attempt comes after `max_backoff`, or as soon as `reloads` changes.
pub(crate) async fn until_stored<F, Fut>(
    what: &str,
    permits: &Arc<Semaphore>,
    cancel: &CancellationToken,
    metrics: &Metrics,
    max_backoff: Duration,
    mut reloads: watch::Receiver<u64>,
    mut attempt: F,
) -> Option<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), UploadError>>,
{
    let mut failures: u32 = 0;
    // The final answer last logged for this job, so each is logged once.
    let mut logged_final: Option<String> = None;
    let mut parked = false;
    let unpark = |parked: &mut bool| {
        if std::mem::take(parked) {
            metrics.gauge_add("livebucket_uploads_parked", -1);
        }
    };
    loop {
        // Only a reload after this attempt wakes a parked job.
        reloads.borrow_and_update();
        let result = {
            let _permit = tokio::select! {
                p = permits.acquire() => p.ok()?,
                _ = cancel.cancelled() => return None,
            };
            // Boxed, and only once a permit is held: an SDK request future
            // is tens of kB, and a backlog of thousands of queued uploads
            // must not each carry one (each waiting task is then a few
            // hundred bytes).
            // A panic in an attempt (a bug, or a peer's input that reached
            // one) is caught here, so the job is retried like a failure and
            // whatever waits on its report (a channel's playlist slot, a
            // session's close) is not left waiting forever.
            let request = Box::pin(AssertUnwindSafe(attempt()).catch_unwind());
            tokio::select! {
                r = request => r.unwrap_or_else(|panic| {
                    metrics.inc("livebucket_upload_panics_total", "");
                    Err(UploadError::Panicked(panic_message(panic.as_ref())))
                }),
                _ = cancel.cancelled() => {
                    unpark(&mut parked);
                    return None;
                }
            }
        };
        match result {
            Ok(()) => {
                unpark(&mut parked);
                if failures > 0 {
                    tracing::info!(what, failures, "stored after retries");
                }
                return Some(());
            }
            Err(e) => {
                failures += 1;
                metrics.inc("livebucket_upload_failures_total", "");
                if let UploadError::Store(se) = &e {
                    metrics.inc("livebucket_s3_errors_total", &se.metric_code());
                }
                let is_final = e.is_final_answer();
                let wait = if e.is_retriable() {
                    backoff(failures, max_backoff)
                } else {
                    max_backoff
                };
                if is_final {
                    if !parked {
                        parked = true;
                        metrics.gauge_add("livebucket_uploads_parked", 1);
                    }
                    let text = e.to_string();
                    if logged_final.as_deref() != Some(text.as_str()) {
                        tracing::error!(what, failures, error = %text, retry_in_s = wait.as_secs(), "the store refused the upload; kept on disk, retried after the wait or at the next reload");
                        logged_final = Some(text);
                    }
                } else {
                    unpark(&mut parked);
                    if failures == 1 || failures.is_multiple_of(10) {
                        tracing::warn!(what, failures, error = %e, wait_ms = wait.as_millis() as u64, "upload failed; will retry");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = next_reload(&mut reloads), if is_final => {
                        tracing::info!(what, "configuration reloaded; trying the refused upload again");
                    }
                    _ = cancel.cancelled() => {
                        unpark(&mut parked);
                        return None;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn backoff_is_capped_and_positive() {
        let cap = Duration::from_secs(3);
        for n in 0..100 {
            let b = backoff(n, cap);
            assert!(b <= cap && b >= Duration::from_millis(50), "{b:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_success_and_stops_on_cancel() {
        let permits = Arc::new(Semaphore::new(1));
        let cancel = CancellationToken::new();
        let metrics = Metrics::default();
        let calls = AtomicU32::new(0);
        let r = until_stored(
            "x",
            &permits,
            &cancel,
            &metrics,
            Duration::from_secs(1),
            watch::channel(0).1,
            || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 5 {
                        Err(UploadError::Store(StoreError::UnknownKey("k".into())))
                    } else {
                        Ok(())
                    }
                }
            },
        )
        .await;
        assert_eq!(r, Some(()));
        assert_eq!(calls.load(Ordering::SeqCst), 6);
        assert_eq!(metrics.counter("livebucket_upload_failures_total", ""), 5);

        cancel.cancel();
        let r = until_stored(
            "y",
            &permits,
            &cancel,
            &metrics,
            Duration::from_secs(1),
            watch::channel(0).1,
            || async { Err(UploadError::Store(StoreError::UnknownKey("k".into()))) },
        )
        .await;
        assert_eq!(r, None);
    }

    /// A final answer parks the job: counted by code, waited on at the
    /// longest backoff, and tried again at once after a reload.
    #[tokio::test(start_paused = true)]
    async fn a_final_answer_parks_the_job_until_a_reload() {
        let permits = Arc::new(Semaphore::new(1));
        let metrics = Arc::new(Metrics::default());
        let (reload, reloads) = watch::channel(0u64);
        let calls = Arc::new(AtomicU32::new(0));
        let refused = || {
            UploadError::Store(StoreError::Answered {
                op: "PUT",
                bucket: "media".into(),
                key: "cam/1.ts".into(),
                status: 403,
                code: Some("SignatureDoesNotMatch".into()),
                message: Some("wrong secret".into()),
                class: crate::store::errors::Class::Final,
            })
        };
        let job = {
            let (metrics, calls, permits) = (metrics.clone(), calls.clone(), permits.clone());
            tokio::spawn(async move {
                until_stored(
                    "x",
                    &permits,
                    &CancellationToken::new(),
                    &metrics,
                    Duration::from_secs(3600),
                    reloads,
                    || {
                        let n = calls.fetch_add(1, Ordering::SeqCst);
                        async move { if n < 2 { Err(refused()) } else { Ok(()) } }
                    },
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "parked, not retried fast");
        assert_eq!(
            metrics.counter("livebucket_s3_errors_total", "SignatureDoesNotMatch"),
            1
        );
        assert!(metrics.render().contains("livebucket_uploads_parked 1"));
        reload.send_modify(|n| *n += 1);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "the reload woke it");
        // Still refused: parked again until the longest backoff passes.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(job.await.unwrap(), Some(()));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert!(metrics.render().contains("livebucket_uploads_parked 0"));
    }

    /// A panicking attempt is counted, reported as a failure and retried;
    /// the job is then stored (it used to end the task, unreported).
    #[tokio::test(start_paused = true)]
    async fn a_panicking_attempt_is_counted_and_retried() {
        let permits = Arc::new(Semaphore::new(1));
        let metrics = Metrics::default();
        let calls = AtomicU32::new(0);
        let r = until_stored(
            "x",
            &permits,
            &CancellationToken::new(),
            &metrics,
            Duration::from_secs(1),
            watch::channel(0).1,
            || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 2 {
                        panic!("attempt {n} panics");
                    }
                    Ok(())
                }
            },
        )
        .await;
        assert_eq!(r, Some(()));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(metrics.counter("livebucket_upload_panics_total", ""), 2);
        assert_eq!(metrics.counter("livebucket_upload_failures_total", ""), 2);
        assert_eq!(permits.available_permits(), 1, "the permit came back");
    }
}
