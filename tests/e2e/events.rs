//! Stream and channel events (`[events]`) against real nginx-rtmp, ffmpeg,
//! Garage and livebucket, received by an HTTP server of this test's own:
//! every event arrives with a Standard Webhooks signature that Python's
//! `hmac` (not livebucket's code) verifies, in order per channel;
//! `recording.ready` only once the recording is in the bucket; and a
//! receiver that is down while a push starts and ends, with livebucket
//! killed (-9) and restarted meanwhile, still gets every event, and never
//! one event under two ids.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::*;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The signing secret: 24 random bytes, Standard Webhooks' `whsec_` form.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One POST as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
    json: Value,
    /// For `recording.ready`: the channel's fragment objects in the bucket
    /// when it arrived.
    fragments_in_bucket: Option<usize>,
}

#[derive(Clone)]
struct Inbox {
    got: Arc<Mutex<Vec<Received>>>,
    s3: S3,
}

/// The test's webhook receiver: records every POST and answers 204. It can
/// be stopped and started again on the same address.
struct Receiver {
    addr: SocketAddr,
    inbox: Inbox,
    running: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

async fn hook(State(inbox): State<Inbox>, headers: HeaderMap, body: String) -> StatusCode {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let fragments_in_bucket = if json["type"] == "recording.ready" {
        let channel = json["data"]["channel"].as_str().unwrap_or_default();
        let listed = inbox.s3.list(BUCKET, &format!("{channel}/")).await;
        Some(listed.iter().filter(|(k, _)| is_fragment_key(k)).count())
    } else {
        None
    };
    inbox.got.lock().unwrap().push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body,
        json,
        fragments_in_bucket,
    });
    StatusCode::NO_CONTENT
}

impl Receiver {
    fn new(addr: SocketAddr, s3: S3) -> Receiver {
        Receiver {
            addr,
            inbox: Inbox {
                got: Arc::default(),
                s3,
            },
            running: None,
        }
    }

    async fn start(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        let app = axum::Router::new()
            .route("/hook", post(hook))
            .with_state(self.inbox.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped.cancelled_owned())
                .await
                .unwrap();
        });
        self.running = Some((stop, task));
    }

    async fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            stop.cancel();
            let _ = task.await;
        }
    }

    fn got(&self) -> Vec<Received> {
        self.inbox.got.lock().unwrap().clone()
    }

    /// Waits until events of every type in `types` arrived for `channel`.
    async fn wait_for(&self, channel: &str, types: &[&str]) -> Vec<Received> {
        wait_until(
            &format!("events {types:?} of {channel}"),
            secs(60),
            millis(300),
            async || {
                let got: Vec<Received> = self
                    .got()
                    .into_iter()
                    .filter(|r| r.json["data"]["channel"] == channel)
                    .collect();
                let seen: BTreeSet<&str> =
                    got.iter().filter_map(|r| r.json["type"].as_str()).collect();
                if types.iter().all(|t| seen.contains(t)) {
                    Ok(got)
                } else {
                    Err(format!("got {seen:?}"))
                }
            },
        )
        .await
    }
}

/// `[events]` sending to `url` with [`SECRET`], retrying within 2 s.
fn events_config(url: &str) -> String {
    format!(
        "[events]\nsecret = \"{SECRET}\"\nmax_backoff_secs = 2\ntimeout_secs = 2\n\
         [[events.endpoints]]\nname = \"app\"\nurl = \"{url}\"\n"
    )
}

/// Checks every signature with Python's `hmac` over `id.timestamp.body`
/// (Standard Webhooks), independently of livebucket's code; panics naming
/// the first that does not verify.
fn verify_with_python(got: &[Received]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("received.json");
    let list: Vec<Value> = got
        .iter()
        .map(|r| serde_json::json!([r.id, r.timestamp, r.signature, r.body]))
        .collect();
    std::fs::write(&path, serde_json::to_vec(&list).unwrap()).unwrap();
    let script = r#"
import base64, hashlib, hmac, json, sys
secret = sys.argv[1]
key = base64.b64decode(secret[len("whsec_"):])
for msg_id, ts, sig, body in json.load(open(sys.argv[2])):
    mac = hmac.new(key, f"{msg_id}.{ts}.{body}".encode(), hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(mac).decode()
    if not any(hmac.compare_digest(expected, s) for s in sig.split(" ")):
        sys.exit(f"bad signature for {msg_id}: {sig}")
    if json.loads(body)["id"] != msg_id:
        sys.exit(f"webhook-id {msg_id} is not the body's id")
print("verified", len(json.load(open(sys.argv[2]))))
"#;
    let mut cmd = std::process::Command::new("python3");
    cmd.args(["-c", script, SECRET, path.to_str().unwrap()]);
    let out = common::process::run("python3 signature check", &mut cmd);
    assert!(
        out.contains(&format!("verified {}", got.len())),
        "python: {out}"
    );
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// `livebucket channel ARGS… --config … --bucket media`, which must succeed.
fn channel_cli(stack: &Stack, args: &[&str]) {
    let config = stack.livebucket.config_path().to_str().unwrap().to_owned();
    let out = blocking(|| {
        std::process::Command::new(common::livebucket::BIN)
            .arg("channel")
            .args(args)
            .args(["--config", &config, "--bucket", BUCKET])
            .output()
            .unwrap()
    });
    assert!(
        out.status.success(),
        "livebucket channel {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn types(got: &[Received]) -> Vec<&str> {
    got.iter().filter_map(|r| r.json["type"].as_str()).collect()
}

/// Created, started, ended, ready, refused, disabled, enabled, deleted:
/// each arrives, signed, in the order it happened for its channel; `recording.ready`
/// names as many fragments as the bucket holds for the channel when it
/// arrives, and its VOD range covers the push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_signed_and_in_order() {
    // The receiver needs the stack's S3, and the stack its URL.
    let addr = free_addr();
    let stack = Stack::start_with(
        "events_order",
        &events_config(&format!("http://{addr}/hook")),
    );
    let mut receiver = Receiver::new(addr, stack.s3.clone());
    receiver.start().await;

    let started = unix_now();
    channel_cli(&stack, &["create", "--channel", "cam"]);
    let mut push = stack.push(&stack.sign_push("cam"), 6);
    assert!(push.exit_within(secs(60)).await.success(), "{}", push.log());
    // A push with a forged signature is refused, and says so.
    let url = stack.sign_push("cam");
    let expires: u64 = query_param(&url, "Expires").unwrap().parse().unwrap();
    let wrong = push_signature("not-the-secret", BUCKET, "cam", expires);
    let forged = with_query_param(&url, "Signature", &wrong);
    let mut refused = stack.push(&forged, 2);
    assert!(!refused.exit_within(secs(30)).await.success());
    let got = receiver
        .wait_for(
            "cam",
            &[
                "stream.started",
                "stream.ended",
                "recording.ready",
                "stream.refused",
            ],
        )
        .await;
    channel_cli(&stack, &["status", "--channel", "cam", "disabled"]);
    channel_cli(&stack, &["status", "--channel", "cam", "enabled"]);
    channel_cli(&stack, &["rm", "--channel", "cam"]);
    drop(got);
    let got = wait_until("the channel's changes", secs(30), millis(300), async || {
        let got = receiver.got();
        let changes: BTreeSet<&str> = got
            .iter()
            .filter_map(|r| r.json["data"]["change"].as_str())
            .collect();
        if changes.len() == 4 {
            Ok(got)
        } else {
            Err(format!("changes {changes:?}"))
        }
    })
    .await;
    verify_with_python(&got);

    // Per channel, in the order it happened (duplicates of one id allowed).
    let mut first_seen: Vec<&Received> = Vec::new();
    for r in &got {
        if !first_seen.iter().any(|f| f.id == r.id) {
            first_seen.push(r);
        }
    }
    let lane: Vec<String> = first_seen
        .iter()
        .filter(|r| r.json["type"] != "stream.refused")
        .map(|r| {
            let t = r.json["type"].as_str().unwrap();
            match r.json["data"]["change"].as_str() {
                Some(change) => format!("{t}:{change}"),
                None => t.to_owned(),
            }
        })
        .collect();
    assert_eq!(
        lane,
        [
            "channel.changed:created",
            "stream.started",
            "stream.ended",
            "recording.ready",
            "channel.changed:disabled",
            "channel.changed:enabled",
            "channel.changed:deleted"
        ],
        "all: {:?}",
        types(&got)
    );

    let by_type: BTreeMap<&str, &Received> = first_seen
        .iter()
        .map(|r| (r.json["type"].as_str().unwrap(), *r))
        .collect();
    let start = &by_type["stream.started"].json["data"];
    assert_eq!(start["bucket"], BUCKET);
    assert_eq!(start["remote_addr"], "127.0.0.1");
    let recording = start["recording"].as_str().unwrap();
    assert_eq!(recording.len(), 32, "the public recording id: {start}");
    assert!(!start["node"].as_str().unwrap_or_default().is_empty());
    let ended = &by_type["stream.ended"].json["data"];
    assert_eq!(ended["recording"], recording);
    assert!(ended["duration_secs"].as_f64().unwrap() >= 4.0, "{ended}");
    let ready = by_type["recording.ready"];
    let fragments = ready.json["data"]["fragments"].as_u64().unwrap();
    assert!(fragments >= 1, "{}", ready.json);
    assert_eq!(
        ready.fragments_in_bucket,
        Some(fragments as usize),
        "recording.ready before every fragment was in the bucket"
    );
    let vod = &ready.json["data"]["vod"];
    let (from, to) = (
        vod["start_time"].as_u64().unwrap(),
        vod["end_time"].as_u64().unwrap(),
    );
    assert!(
        from >= started - 1 && to <= unix_now() + 1 && from < to,
        "{vod}"
    );
    let refusal = &by_type["stream.refused"];
    assert_eq!(
        refusal.json["data"]["reason"], "bad_signature",
        "{}",
        refusal.json
    );
    assert!(
        !refusal.body.contains(&wrong) && !refusal.body.contains("Signature"),
        "a refusal carries no signature: {}",
        refusal.body
    );
    for r in &got {
        assert!(!r.body.contains(&stack.key().secret), "{}", r.body);
    }
    assert!(
        stack
            .livebucket
            .metric("livebucket_events_delivered_total{type=\"recording.ready\"}")
            >= 1
    );
    receiver.stop().await;
}

/// The receiver is down for 30 s while a push starts and ends; livebucket is
/// killed (-9) with the events queued and restarted; the receiver comes back: every
/// event arrives, each type of the session under one id only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_a_receiver_outage_and_kill_9() {
    let addr = free_addr();
    let mut stack = Stack::start_with(
        "events_outage",
        &events_config(&format!("http://{addr}/hook")),
    );
    let mut receiver = Receiver::new(addr, stack.s3.clone());
    let down_since = std::time::Instant::now();

    let mut push = stack.push(&stack.sign_push("cam"), 5);
    assert!(push.exit_within(secs(60)).await.success(), "{}", push.log());
    wait_until(
        "stream.ended queued and tried",
        secs(60),
        millis(300),
        async || {
            let failed = stack
                .livebucket
                .metric("livebucket_events_failed_total{type=\"stream.started\"}");
            let queued = stack.livebucket.metric("livebucket_events_queued");
            if failed >= 1 && queued >= 2 {
                Ok(())
            } else {
                Err(format!("failed {failed}, queued {queued}"))
            }
        },
    )
    .await;
    blocking(|| stack.livebucket.kill9());
    blocking(|| stack.livebucket.restart());
    // Down for a while after the restart too: the restarted node retries.
    wait_until(
        "a retry after the restart",
        secs(30),
        millis(300),
        async || {
            // Counters start again at 0: these are the new process's.
            let failed = stack
                .livebucket
                .metric("livebucket_events_failed_total{type=\"stream.started\"}");
            let queued = stack.livebucket.metric("livebucket_events_queued");
            if failed >= 1 && queued >= 2 {
                Ok(())
            } else {
                Err(format!("failed {failed}, queued {queued}"))
            }
        },
    )
    .await;
    // The outage the issue names: the receiver is down 30 s in all, a few
    // retries' worth at the test's backoff, across the restart.
    let rest = std::time::Duration::from_secs(30).saturating_sub(down_since.elapsed());
    tokio::time::sleep(rest).await;
    receiver.start().await;
    let down_for = down_since.elapsed();
    let got = receiver
        .wait_for(
            "cam",
            &["stream.started", "stream.ended", "recording.ready"],
        )
        .await;
    verify_with_python(&got);
    let mut ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &got {
        ids.entry(r.json["type"].as_str().unwrap().to_owned())
            .or_default()
            .insert(r.id.clone());
    }
    for (t, set) in &ids {
        assert_eq!(set.len(), 1, "{t} arrived under several ids: {set:?}");
    }
    let order: Vec<&str> = {
        let mut seen = Vec::new();
        for r in &got {
            let t = r.json["type"].as_str().unwrap();
            if !seen.contains(&t) {
                seen.push(t);
            }
        }
        seen
    };
    assert_eq!(
        order,
        ["stream.started", "stream.ended", "recording.ready"],
        "receiver down for {down_for:?}"
    );
    wait_until("the queue drained", secs(30), millis(300), async || {
        let queued = stack.livebucket.metric("livebucket_events_queued");
        if queued == 0 {
            Ok(())
        } else {
            Err(format!("{queued} queued"))
        }
    })
    .await;
    receiver.stop().await;
}
