//! Storing one object, retried until it is stored or livebucket stops.
//!
//! Uploads never give up: the bytes stay in their capture or spool file (the
//! queue of record) and a failing upload waits at most `max_backoff` between
//! attempts, visible in `livebucket_upload_failures_total`. A stop cancels the
//! wait; the file is still there for the next start. "Retriable?" is decided
//! by the store; this module only decides how long to wait.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::StoreError;

/// Full-jitter exponential backoff: a random wait in `[0, min(cap, base·1.5^n)]`,
/// at least 50 ms so a dead server is not hammered.
pub fn backoff(attempt: u32, cap: Duration) -> Duration {
    let base = 0.2_f64 * 1.5_f64.powi(attempt.min(40) as i32);
    let ceiling = base.min(cap.as_secs_f64());
    let jittered = ceiling * rand::random::<f64>();
    Duration::from_secs_f64(jittered.max(0.05))
}

/// Runs `attempt` until it succeeds; `None` if cancelled first. Holds an
/// upload permit only while a request is in flight, so a failing server does
/// not starve uploads of healthy buckets.
pub async fn until_stored<F, Fut>(
    what: &str,
    permits: &Arc<Semaphore>,
    cancel: &CancellationToken,
    metrics: &Metrics,
    max_backoff: Duration,
    mut attempt: F,
) -> Option<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), StoreError>>,
{
    let mut failures: u32 = 0;
    loop {
        let result = {
            let _permit = tokio::select! {
                p = permits.acquire() => p.ok()?,
                _ = cancel.cancelled() => return None,
            };
            tokio::select! {
                r = attempt() => r,
                _ = cancel.cancelled() => return None,
            }
        };
        match result {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(what, failures, "stored after retries");
                }
                return Some(());
            }
            Err(e) => {
                failures += 1;
                metrics.inc("livebucket_upload_failures_total", "");
                let wait = if e.is_retriable() {
                    backoff(failures, max_backoff)
                } else {
                    max_backoff
                };
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(what, failures, error = %e, wait_ms = wait.as_millis() as u64, "upload failed; will retry");
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = cancel.cancelled() => return None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

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
            || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 5 {
                        Err(StoreError::UnknownKey("k".into()))
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
            || async { Err(StoreError::UnknownKey("k".into())) },
        )
        .await;
        assert_eq!(r, None);
    }
}
