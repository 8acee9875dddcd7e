//! S3's refusals, end to end against Garage: a configuration the store
//! refuses (a wrong secret) surfaces within seconds as a clear error (the
//! log line with the S3 code, `livebucket_s3_errors_total{code}`,
//! `livebucket_uploads_parked`, `/healthz` degraded), nothing is lost
//! meanwhile, and once the operator fixes the key and reloads, every
//! fragment is stored exactly once and the playlist ends. A wrong region
//! (`AuthorizationHeaderMalformed`, not reloadable) likewise, fixed by a
//! restart that recovers the captures.

use crate::common;

use common::bucket_check::{self, FinalPlaylist};
use common::fragments::{Ledger, Recorder};
use common::playlist_watch::{self, PlaylistWatch};
use common::*;

const CHANNEL: &str = "cam";

/// Writes `config` over livebucket's config file and reloads it (SIGHUP),
/// waiting for the reload to be logged `times` times in all.
async fn reload_with(stack: &mut Stack, config: &str, times: usize) {
    std::fs::write(stack.livebucket.config_path(), config).unwrap();
    stack.livebucket.reload();
    wait_until("the reload", secs(10), millis(100), async || {
        let n = stack
            .livebucket
            .log()
            .matches("configuration reloaded")
            .count();
        (n >= times)
            .then_some(())
            .ok_or(format!("{n} reloads logged"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_surfaces_in_seconds_and_a_reload_stores_everything_once() {
    // A short backoff would hide the parking; the reload must wake it.
    let mut stack = Stack::start_with(
        "s3-refused",
        "[upload]\nmax_backoff_secs = 600\n[live]\nwindow_segments = 200\n",
    );
    let config_path = stack.livebucket.config_path().to_owned();
    let good = std::fs::read_to_string(&config_path).unwrap();
    let secret = stack.key().secret.clone();
    let wrong = good.replace(&secret, &"0".repeat(secret.len()));
    assert_ne!(wrong, good);
    reload_with(&mut stack, &wrong, 1).await;

    let ledger = Ledger::new(stack.dir.join("nginx-wrote"));
    let recorder = Recorder::start(&stack.hls_dir, &ledger);
    let watch = PlaylistWatch::start(&stack.s3, BUCKET, CHANNEL);
    // Signed with the (wrong) secret livebucket now holds: the push is
    // accepted, only the store refuses the uploads.
    let mut push = stack.push(&stack.sign_push(CHANNEL), 10);

    // Garage answers a bad signature with 403 AccessDenied ("Forbidden:
    // Invalid signature"); AWS and RGW say SignatureDoesNotMatch.
    let refused = "livebucket_s3_errors_total{code=\"AccessDenied\"}";
    wait_until(
        "the refusal in /metrics",
        secs(20),
        millis(200),
        async || {
            let n = stack.livebucket.metric(refused);
            (n > 0).then_some(()).ok_or(format!(
                "{refused} = {n}; /metrics:\n{}",
                stack
                    .livebucket
                    .get("/metrics")
                    .map(|r| r.1)
                    .unwrap_or_default()
            ))
        },
    )
    .await;
    let (status, health) = stack.livebucket.get("/healthz").unwrap();
    assert_eq!(status, 200);
    assert!(
        health.starts_with("degraded: ") && health.contains("HTTP 403: AccessDenied"),
        "{health}"
    );
    assert!(stack.livebucket.metric("livebucket_uploads_parked") > 0);
    let log = stack.livebucket.log();
    assert!(
        log.contains("the store refused the upload") && log.contains("AccessDenied"),
        "{log}"
    );
    assert!(!log.contains(&secret), "the log holds the secret");
    // Parked: a few attempts, not a loop against the store.
    tokio::time::sleep(secs(3)).await;
    assert!(
        stack
            .s3
            .list(BUCKET, &format!("{CHANNEL}/"))
            .await
            .is_empty(),
        "nothing can have been stored with the wrong secret"
    );
    let attempts = stack.livebucket.metric("livebucket_upload_failures_total");
    tokio::time::sleep(secs(2)).await;
    let later = stack.livebucket.metric("livebucket_upload_failures_total");
    assert!(
        later.saturating_sub(attempts) <= 4,
        "parked uploads were retried {} times in 2 s",
        later - attempts
    );

    // The push ends first: a reload that changes its key's secret would
    // (rightly) end a live push signed with the old one at its next
    // on_update.
    let status = push.exit_within(secs(40)).await;
    assert!(status.success(), "the push failed; ffmpeg:\n{}", push.log());
    // The operator fixes the key: the parked uploads go at once.
    reload_with(&mut stack, &good, 2).await;
    watch
        .wait_for("#EXT-X-ENDLIST", secs(20), playlist_watch::ended)
        .await;
    let observed = watch.finish().await;
    drop(recorder);
    let stored = bucket_check::assert_bucket_matches(
        &ledger,
        &stack.s3,
        CHANNEL,
        &observed,
        FinalPlaylist::ListsAll,
    )
    .await;
    assert!(stored.len() >= 4, "{} fragments stored", stored.len());
    let (_, health) = stack.livebucket.get("/healthz").unwrap();
    assert_eq!(health, "ok\n");
    assert_eq!(stack.livebucket.metric("livebucket_uploads_parked"), 0);
}

/// A wrong region (not reloadable: a restart with the fixed config) is a
/// final answer too: parked and shown within seconds, stored once the
/// restarted livebucket recovers the captures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_region_surfaces_in_seconds_and_a_restart_stores_everything_once() {
    let mut stack = Stack::start_with(
        "s3-region",
        "[upload]\nmax_backoff_secs = 600\n[live]\nwindow_segments = 200\n",
    );
    let config_path = stack.livebucket.config_path().to_owned();
    let good = std::fs::read_to_string(&config_path).unwrap();
    let wrong = good.replace("region = \"garage\"", "region = \"eu-west-9\"");
    assert_ne!(wrong, good);
    std::fs::write(&config_path, &wrong).unwrap();
    stack.livebucket.restart();

    let ledger = Ledger::new(stack.dir.join("nginx-wrote"));
    let recorder = Recorder::start(&stack.hls_dir, &ledger);
    let watch = PlaylistWatch::start(&stack.s3, BUCKET, CHANNEL);
    let mut push = stack.push(&stack.sign_push(CHANNEL), 8);
    wait_until("a parked upload", secs(20), millis(200), async || {
        let n = stack.livebucket.metric("livebucket_uploads_parked");
        (n > 0).then_some(()).ok_or(format!("{n} parked"))
    })
    .await;
    let (_, health) = stack.livebucket.get("/healthz").unwrap();
    assert!(
        health.starts_with("degraded: ")
            && health.contains("HTTP 400: AuthorizationHeaderMalformed"),
        "{health}"
    );
    let log = stack.livebucket.log();
    assert!(log.contains("the store refused the upload"), "{log}");
    let status = push.exit_within(secs(40)).await;
    assert!(status.success(), "the push failed; ffmpeg:\n{}", push.log());
    assert!(
        stack
            .s3
            .list(BUCKET, &format!("{CHANNEL}/"))
            .await
            .is_empty()
    );

    std::fs::write(&config_path, &good).unwrap();
    stack.livebucket.restart();
    watch
        .wait_for("#EXT-X-ENDLIST", secs(30), playlist_watch::ended)
        .await;
    let observed = watch.finish().await;
    drop(recorder);
    let stored = bucket_check::assert_bucket_matches(
        &ledger,
        &stack.s3,
        CHANNEL,
        &observed,
        FinalPlaylist::ListsAll,
    )
    .await;
    assert!(stored.len() >= 3, "{} fragments stored", stored.len());
}
