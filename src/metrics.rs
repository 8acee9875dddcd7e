//! Counters, gauges and histograms in the Prometheus text format, served at
//! `/metrics`.
//!
//! A handful of named series with at most one label each; maps behind
//! mutexes are all that needs, and they keep the exposition format in one
//! small place.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
    gauges: Mutex<BTreeMap<(&'static str, String), i64>>,
    histograms: Mutex<BTreeMap<(&'static str, String), Histogram>>,
}

/// Upper bounds (seconds) of the histogram buckets: fine below 10 ms, where
/// a callback's answer should be, coarse above.
const BUCKETS: [f64; 12] = [
    0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    /// Observations per bucket (not cumulative); the last counts those
    /// above every bound.
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
}

/// Help text for each series, so `/metrics` explains itself.
const HELP: &[(&str, &str)] = &[
    (
        "livebucket_s3_errors_total",
        "Failed upload attempts by S3 error code (HTTP_<status> without one, transport when no answer came, unknown_key for a key missing from the configuration).",
    ),
    (
        "livebucket_uploads_parked",
        "Uploads the store refused with a final answer (wrong key, region, bucket, …): kept on disk, retried every upload.max_backoff_secs and at each reload.",
    ),
    (
        "livebucket_cluster_fence_total",
        "Cluster mode: fence checks before playlist and manifest uploads, by verdict: write, hold (etcd unreachable or lease past its TTL; retried), yield (another node holds the channel).",
    ),
    (
        "livebucket_cluster_playlist_refusals_total",
        "Cluster mode, store with conditional writes: playlist PUTs the store refused because the object changed since this node wrote or read it, by what followed: drop (another node holds the channel), hold (the fence cannot tell; retried), retry (this node holds it: read again, tried once more), contended (refused again after that read; retried after the backoff).",
    ),
    (
        "livebucket_cluster_lease_alive",
        "Cluster mode: 1 while this node's etcd lease was renewed less than a TTL ago.",
    ),
    (
        "livebucket_cluster_channels_held",
        "Cluster mode: channels whose etcd key this node holds.",
    ),
    (
        "livebucket_cluster_cut_off_total",
        "Cluster mode: times this node found itself cut off from etcd past its lease TTL.",
    ),
    (
        "livebucket_cluster_lease_failures_total",
        "Cluster mode: lease grants and renewals etcd did not answer, by reason (timeout, transient); each is retried with backoff of at most a third of the TTL.",
    ),
    (
        "livebucket_cluster_leases_total",
        "Cluster mode: lease events, by event: granted (a new lease, the node registered), lost (etcd no longer knew the lease; a new one is asked for at once).",
    ),
    (
        "livebucket_cluster_watch_reconnects_total",
        "Cluster mode: times the etcd watch of channel changes broke and was reopened (cached channel records are dropped each time).",
    ),
    (
        "livebucket_cluster_channel_changes_total",
        "Cluster mode: channel-record changes seen through the etcd watch (cached records dropped).",
    ),
    (
        "livebucket_push_accepted_total",
        "Pushes approved by on_publish.",
    ),
    (
        "livebucket_push_rejected_total",
        "Callbacks refused, by reason (the reason codes are listed in docs/push.md).",
    ),
    (
        "livebucket_fragments_captured_total",
        "Fragments copied out of nginx's HLS directory.",
    ),
    (
        "livebucket_fragments_uploaded_total",
        "Fragments stored in S3.",
    ),
    (
        "livebucket_fragment_misfit_total",
        "Fragments that start without a keyframe or whose EXTINF rounds above the live playlist's target duration: the encoder's keyframe interval does not fit the fragment length (the first of each session is logged with the fix).",
    ),
    (
        "livebucket_fragments_lost_total",
        "Fragments nginx listed that were gone before capture.",
    ),
    (
        "livebucket_playlists_uploaded_total",
        "Playlist objects stored in S3.",
    ),
    (
        "livebucket_upload_failures_total",
        "Failed upload attempts (each is retried).",
    ),
    (
        "livebucket_upload_panics_total",
        "Upload attempts that panicked (a bug; each is counted in the failures too and retried at the longest backoff).",
    ),
    (
        "livebucket_uploads_pending",
        "Fragments and playlists waiting to be stored.",
    ),
    (
        "livebucket_parts_uploaded_total",
        "LL-HLS partial segments stored in S3.",
    ),
    (
        "livebucket_parts_failed_total",
        "LL-HLS partial segments not stored within their deadline (never retried; that fragment's parts are not offered).",
    ),
    (
        "livebucket_sessions_live",
        "Approved publish sessions not yet finished.",
    ),
    (
        "livebucket_stream_dir_errors_total",
        "Approved pushes refused because their HLS directory could not be made in nginx.hls_dir.",
    ),
    (
        "livebucket_unknown_dirs_total",
        "HLS directories that belong to no approved session.",
    ),
    (
        "livebucket_hooks_total",
        "nginx callbacks answered, by call (publish, update_publish, publish_done, ...).",
    ),
    (
        "livebucket_hook_seconds",
        "Time to answer an nginx callback, from accepting its connection to the answer, by call (refusals, which are delayed on purpose, included).",
    ),
    (
        "livebucket_hooks_forged_total",
        "Requests on the hooks listener without the hooks secret or from a peer outside hooks.allow.",
    ),
    (
        "livebucket_hooks_previous_secret_total",
        "Callbacks accepted with the hooks secret a reload replaced (hooks.previous_secret_grace_secs), by call: nginx still needs its reload.",
    ),
    (
        "livebucket_relay_refused_total",
        "Publishes into the internal HLS application refused, by reason (relay_already_relayed, relay_session_ended, relay_unknown_session, relay_not_a_session, relay_wrong_call).",
    ),
    (
        "livebucket_connections_refused_total",
        "Connections closed at accept because their listener was at limits.max_connections or their peer at limits.max_connections_per_peer.",
    ),
    (
        "livebucket_connections_closed_total",
        "Connections livebucket closed on its own, by reason: max_connections and max_connections_per_peer (at accept), header_timeout (no whole request head within limits.header_read_timeout_secs, new or idle keep-alive), write_stalled (the client read nothing for limits.write_timeout_secs).",
    ),
    (
        "livebucket_requests_refused_total",
        "Signed /play and VOD requests, and cluster peers' stat requests (cluster_peer_not_allowed), refused, by reason.",
    ),
    (
        "livebucket_api_refused_total",
        "OSS API requests refused before their operation (authentication, key policy).",
    ),
    (
        "livebucket_play_renders_total",
        "/play playlists presigned (each under one of play.max_concurrent_renders slots).",
    ),
    (
        "livebucket_play_cache_hits_total",
        "/play answers served from the signed copy of an ended playlist.",
    ),
    (
        "livebucket_vod_refused_total",
        "VOD requests refused for cost, by reason (busy, too_many_fragments, too_many_fallback_fragments).",
    ),
    (
        "livebucket_vod_range_cache_hits_total",
        "VOD requests whose closed range's fragments came from the cache (no S3 request).",
    ),
    (
        "livebucket_snapshots_total",
        "Channel snapshots stored (the timestamped JPEG and latest.jpg).",
    ),
    (
        "livebucket_snapshot_failures_total",
        "Channel snapshots that failed, by reason (fragment, no_picture, ffmpeg, timeout, not_jpeg, upload); the next due fragment tries again.",
    ),
    (
        "livebucket_snapshots_skipped_total",
        "Due snapshots not started, by reason: busy (one is running for the channel) or capacity (the global cap is reached).",
    ),
    (
        "livebucket_events_delivered_total",
        "Events a receiver answered 2xx, by type (once per endpoint).",
    ),
    (
        "livebucket_events_failed_total",
        "Event POSTs that got no 2xx (each is retried until events.max_age_secs), by type.",
    ),
    (
        "livebucket_events_dropped_total",
        "Events given up, by type: older than events.max_age_secs, not writable to disk, for endpoints no longer configured, or stream.refused past events.max_queued.",
    ),
    (
        "livebucket_events_queued",
        "Events on disk waiting for at least one endpoint.",
    ),
    (
        "livebucket_events_oldest_age_seconds",
        "Age of the oldest queued event (0 when none).",
    ),
    (
        "livebucket_events_write_seconds",
        "Time to write one event to disk (file and directory fsync'd) before the call site goes on, by type.",
    ),
    (
        "livebucket_retention_sweeps_total",
        "Retention sweeps finished, by outcome: ok, errors (some channel stopped early; the next sweep retries), dry_run.",
    ),
    (
        "livebucket_retention_deleted_objects_total",
        "Objects the retention sweep deleted (fragments, manifests, LL-HLS parts, stored playlists, snapshots).",
    ),
    (
        "livebucket_retention_deleted_bytes_total",
        "Bytes of the objects the retention sweep deleted, as listed (manifests not counted).",
    ),
    (
        "livebucket_retention_errors_total",
        "Channels whose retention sweep stopped early, by reason (store, channel_record, bad_manifest, live_unknown, etcd).",
    ),
    (
        "livebucket_retention_sweep_seconds",
        "Time one retention sweep of every bucket took.",
    ),
    (
        "livebucket_transcoders_running",
        "Transcoders (one ffmpeg per rung of a live push, [renditions]) running now.",
    ),
    (
        "livebucket_rendition_restarts_total",
        "Transcoders restarted after they died while their source was live, by rung.",
    ),
    (
        "livebucket_rendition_dropped_total",
        "Rungs dropped for the rest of a push (the source goes on), by reason: lag (over renditions.max_lag_secs behind), restarts (died renditions.max_restarts times), spawn (ffmpeg would not start), session (its rendition session could not be recorded).",
    ),
    (
        "livebucket_play_refused_total",
        "Plays in the internal HLS application refused by on_play, by reason (play_unknown_token, play_no_token, play_wrong_stream, play_source_ended, play_no_such_rung, play_wrong_call).",
    ),
];

/// The label name of each labelled series; `reason` when not listed.
const LABEL_NAMES: &[(&str, &str)] = &[
    ("livebucket_events_delivered_total", "type"),
    ("livebucket_events_failed_total", "type"),
    ("livebucket_events_dropped_total", "type"),
    ("livebucket_events_write_seconds", "type"),
    ("livebucket_hooks_total", "call"),
    ("livebucket_rendition_restarts_total", "rung"),
    ("livebucket_hook_seconds", "call"),
    ("livebucket_hooks_previous_secret_total", "call"),
    ("livebucket_connections_refused_total", "listener"),
    ("livebucket_cluster_fence_total", "verdict"),
    ("livebucket_cluster_playlist_refusals_total", "outcome"),
    ("livebucket_cluster_leases_total", "event"),
    ("livebucket_s3_errors_total", "code"),
];

impl Metrics {
    pub fn inc(&self, name: &'static str, label: &str) {
        self.add(name, label, 1);
    }

    pub fn add(&self, name: &'static str, label: &str, n: u64) {
        let mut c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        *c.entry((name, label.to_owned())).or_default() += n;
    }

    pub fn gauge_add(&self, name: &'static str, delta: i64) {
        let mut g = self.gauges.lock().unwrap_or_else(|p| p.into_inner());
        *g.entry((name, String::new())).or_default() += delta;
    }

    pub fn gauge_set(&self, name: &'static str, value: i64) {
        let mut g = self.gauges.lock().unwrap_or_else(|p| p.into_inner());
        g.insert((name, String::new()), value);
    }

    pub fn observe(&self, name: &'static str, label: &str, took: Duration) {
        let secs = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(BUCKETS.len());
        let mut h = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        let h = h.entry((name, label.to_owned())).or_default();
        h.counts[bucket] += 1;
        h.sum += secs;
    }

    pub fn counter(&self, name: &'static str, label: &str) -> u64 {
        let c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        c.get(&(name, label.to_owned())).copied().unwrap_or(0)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut seen = std::collections::HashSet::new();
        let mut header = |out: &mut String, name: &'static str, kind: &str| {
            if seen.insert(name) {
                let help = HELP.iter().find(|(n, _)| *n == name).map_or("", |(_, h)| h);
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            }
        };
        let label_name = |name: &str| {
            LABEL_NAMES
                .iter()
                .find(|(n, _)| *n == name)
                .map_or("reason", |(_, l)| *l)
        };
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        for ((name, label), v) in counters.iter() {
            header(&mut out, name, "counter");
            if label.is_empty() {
                let _ = writeln!(out, "{name} {v}");
            } else {
                let _ = writeln!(out, "{name}{{{}=\"{label}\"}} {v}", label_name(name));
            }
        }
        drop(counters);
        let gauges = self.gauges.lock().unwrap_or_else(|p| p.into_inner());
        for ((name, _), v) in gauges.iter() {
            header(&mut out, name, "gauge");
            let _ = writeln!(out, "{name} {v}");
        }
        drop(gauges);
        let histograms = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        for ((name, label), h) in histograms.iter() {
            header(&mut out, name, "histogram");
            let labels = if label.is_empty() {
                String::new()
            } else {
                format!("{}=\"{label}\",", label_name(name))
            };
            let mut below = 0;
            for (le, n) in BUCKETS.iter().zip(h.counts) {
                below += n;
                let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {below}");
            }
            let count: u64 = h.counts.iter().sum();
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
            let labels = labels.trim_end_matches(',');
            let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_histograms_cumulatively() {
        let m = Metrics::default();
        let ms = |n| Duration::from_micros(n);
        m.observe("livebucket_hook_seconds", "on_publish", ms(300));
        m.observe("livebucket_hook_seconds", "on_publish", ms(1000));
        m.observe("livebucket_hook_seconds", "on_publish", ms(30_000));
        m.observe(
            "livebucket_hook_seconds",
            "on_publish",
            Duration::from_secs(60),
        );
        let text = m.render();
        let line =
            |le: &str| format!("livebucket_hook_seconds_bucket{{call=\"on_publish\",le=\"{le}\"}}");
        for (le, n) in [("0.00025", 0), ("0.0005", 1), ("0.001", 2), ("0.025", 2)] {
            assert!(
                text.contains(&format!("{} {n}\n", line(le))),
                "{le}: {text}"
            );
        }
        assert!(text.contains(&format!("{} 3\n", line("0.1"))));
        assert!(text.contains(&format!("{} 3\n", line("10"))));
        assert!(text.contains(&format!("{} 4\n", line("+Inf"))));
        assert!(text.contains("livebucket_hook_seconds_count{call=\"on_publish\"} 4\n"));
        assert!(text.contains("livebucket_hook_seconds_sum{call=\"on_publish\"} 60.0313\n"));
        assert!(text.contains("# TYPE livebucket_hook_seconds histogram\n"));
    }

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.inc("livebucket_push_rejected_total", "expired");
        m.inc("livebucket_push_rejected_total", "expired");
        m.inc("livebucket_fragments_uploaded_total", "");
        m.gauge_add("livebucket_uploads_pending", 3);
        let text = m.render();
        assert!(text.contains("livebucket_push_rejected_total{reason=\"expired\"} 2\n"));
        assert!(text.contains("livebucket_fragments_uploaded_total 1\n"));
        assert!(
            text.contains(
                "# TYPE livebucket_uploads_pending gauge\nlivebucket_uploads_pending 3\n"
            )
        );
        assert_eq!(
            text.matches("# TYPE livebucket_push_rejected_total")
                .count(),
            1
        );
    }
}
