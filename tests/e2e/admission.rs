//! Admission and identity end to end (livebucket and Garage, nginx-rtmp
//! where the relay matters), each test played as an attacker on the same
//! host would:
//!
//! - a one-time push URL admits one push, whatever spelling of its signature
//!   is sent again, and a push refused after its signature was checked does
//!   not spend it;
//! - `on_publish_done` ends only the session whose publisher it names, with
//!   that publisher's own signed URL;
//! - after a SIGHUP that changes the hooks secret, nginx's callbacks with the
//!   previous one are still answered for `hooks.previous_secret_grace_secs`,
//!   then refused;
//! - nothing but nginx's one relay per approved session publishes into the
//!   internal HLS application, even from this host with a live session's
//!   id, and session ids stay out of the bucket.

use crate::common;

use std::net::SocketAddr;

use common::fake_nginx::http_post_form;
use common::garage::{Garage, Key};
use common::livebucket::{
    ConfigParams, HOOKS_SECRET, Livebucket, config_toml, push_signature, unix_now,
};
use common::stored::{at_least_segments, ended, read_playlist, wait_for_playlist};
use common::*;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// Garage and livebucket, no nginx: the test plays nginx's callbacks.
/// Fields drop in order: livebucket, Garage, then the directory.
struct Rig {
    livebucket: Livebucket,
    garage: Garage,
    _dir: TestDir,
}

impl Rig {
    fn start(name: &str, extra: &str) -> Rig {
        let dir = TestDir::new(name);
        let mut garage = Garage::start(&dir);
        garage.create_bucket(BUCKET);
        let key = garage.key().clone();
        let config = config_toml(&ConfigParams {
            listen: free_addr(),
            stat_url: None,
            state_dir: &dir.subdir("state"),
            hls_dir: &dir.subdir("hls"),
            relay_url: "rtmp://127.0.0.1:1935/hls",
            s3_endpoint: garage.endpoint(),
            keys: &[(&key, &[BUCKET])],
            extra,
        });
        let livebucket = Livebucket::start(&dir, &config);
        Rig {
            livebucket,
            garage,
            _dir: dir,
        }
    }

    fn hooks(&self) -> SocketAddr {
        self.livebucket.listen()
    }

    fn key(&self) -> &Key {
        self.garage.key()
    }

    fn rejected(&self, reason: &str) -> u64 {
        self.livebucket.metric(&format!(
            "livebucket_push_rejected_total{{reason=\"{reason}\"}}"
        ))
    }

    /// Posts callback `call` of publisher `clientid` on `channel` with the
    /// client's `query`: (status, Location).
    fn callback(
        &self,
        call: &str,
        channel: &str,
        clientid: u32,
        query: &str,
    ) -> (u16, Option<String>) {
        self.callback_with(HOOKS_SECRET, call, channel, clientid, query)
    }

    /// [`Rig::callback`] with `secret` in the hooks path.
    fn callback_with(
        &self,
        secret: &str,
        call: &str,
        channel: &str,
        clientid: u32,
        query: &str,
    ) -> (u16, Option<String>) {
        // nginx's fields after `call`, in its order.
        let fields = match call {
            "publish" => format!("&name={}&type=live", enc(channel)),
            "update_publish" => format!("&time=10&timestamp=10000&name={}", enc(channel)),
            _ => format!("&name={}", enc(channel)),
        };
        let hook = match call {
            "publish" => "on_publish",
            "update_publish" => "on_update",
            _ => "on_publish_done",
        };
        let body = format!(
            "app=live&flashver=FMLE%2F3.0&swfurl=&tcurl={}&pageurl=&addr=127.0.0.1\
             &clientid={clientid}&call={call}{fields}&{query}",
            enc("rtmp://127.0.0.1:1935/live"),
        );
        let answer = http_post_form(self.hooks(), &format!("/hooks/{secret}/{hook}"), &body)
            .unwrap_or_else(|e| panic!("{hook}: {e}"));
        (answer.status, answer.header("location").map(str::to_owned))
    }
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// A push URL's query for `channel` whose signature holds a `/` (so it has a
/// second, `z`, spelling), with an Expires at or after `from`: (query with
/// the standard spelling, query with the `z` spelling).
fn slash_signed(key: &Key, channel: &str, from: u64) -> (String, String) {
    let (expires, sig) = (from..from + 10_000)
        .map(|e| (e, push_signature(&key.secret, BUCKET, channel, e)))
        .find(|(_, s)| s.contains('/'))
        .expect("no signature with a '/' in 10,000 tries");
    let query = |sig: &str| {
        format!(
            "Bucket={BUCKET}&AccessKeyId={}&Expires={expires}&Signature={}",
            enc(&key.id),
            enc(sig)
        )
    };
    (query(&sig), query(&sig.replace('/', "z")))
}

#[test]
fn a_one_time_url_admits_one_push_in_any_spelling() {
    let rig = Rig::start("adm-once", "[auth]\none_time_push = true\n");
    let now = unix_now();
    let (a, a_z) = slash_signed(rig.key(), "once", now + 600);
    let (b, _) = slash_signed(rig.key(), "once", now + 1200);

    assert_eq!(rig.callback("publish", "once", 1, &a).0, 302);
    // Refused after its signature was checked (the channel is live): B is
    // not spent by this refusal.
    assert_ne!(rig.callback("publish", "once", 2, &b).0, 302);
    assert_eq!(rig.rejected("channel_live"), 1);
    assert_eq!(rig.callback("publish_done", "once", 1, &a).0, 200);

    // A again, as sent and re-spelled: the same grant, refused both times.
    assert_ne!(rig.callback("publish", "once", 3, &a).0, 302);
    assert_ne!(
        rig.callback("publish", "once", 4, &a_z).0,
        302,
        "the z spelling of a used signature was admitted"
    );
    assert_eq!(rig.rejected("replayed"), 2);

    // B was never admitted, so it still is.
    assert_eq!(
        rig.callback("publish", "once", 5, &b).0,
        302,
        "a URL refused as channel_live was spent"
    );
}

#[test]
fn publish_done_ends_only_its_own_publishers_session() {
    let rig = Rig::start("adm-done", "");
    let now = unix_now();
    let (a, _) = slash_signed(rig.key(), "cam", now + 600);
    let (other, _) = slash_signed(rig.key(), "cam", now + 1200);
    assert_eq!(rig.callback("publish", "cam", 1, &a).0, 302);

    // Same client id and name (nginx restarted its counter, or a caller
    // holding the hooks secret), but another genuine URL for the channel:
    // refused, and the session stays live.
    assert_eq!(rig.callback("publish_done", "cam", 1, &other).0, 403);
    assert_eq!(rig.rejected("unknown_session"), 1);
    assert_eq!(
        rig.callback("publish_done", "cam", 2, &a).0,
        403,
        "another client id"
    );
    assert_ne!(rig.callback("publish", "cam", 3, &other).0, 302);
    assert_eq!(rig.rejected("channel_live"), 1, "the session was ended");

    // Its own publisher ends it; the channel is free again.
    assert_eq!(rig.callback("publish_done", "cam", 1, &a).0, 200);
    assert_eq!(rig.callback("publish", "cam", 4, &other).0, 302);
}

/// The one session directory nginx made in the stack's HLS directory: the
/// live session's id.
fn live_session_id(stack: &Stack) -> String {
    std::fs::read_dir(&stack.hls_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.len() == 32)
        .expect("no session directory")
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_relay_publishes_into_the_internal_application() {
    let stack = Stack::start("adm-relay");
    let channel = "relayed";
    let mut push = stack.push(&stack.sign_push(channel), 10);
    wait_for_playlist(
        &stack.s3,
        channel,
        "index.m3u8",
        &mut push,
        "a first segment",
        at_least_segments(1),
    )
    .await;
    let session = live_session_id(&stack);
    let internal = format!("{}/{session}", stack.nginx.relay_url());
    let refused = |reason: &str| {
        stack.livebucket.metric(&format!(
            "livebucket_relay_refused_total{{reason=\"{reason}\"}}"
        ))
    };

    // A local publisher with the live session's id, while the relay is live.
    let mut intruder = stack.push(&internal, 3);
    assert!(
        !intruder.exit_within(secs(20)).await.success(),
        "a second publish into a live session was admitted"
    );
    assert_eq!(refused("relay_already_relayed"), 1);
    assert!(
        push.exit_within(secs(30)).await.success(),
        "the real push was disturbed: {}",
        push.log()
    );

    // Right after the streamer left, before the session is finished.
    let mut late = stack.push(&internal, 3);
    assert!(
        !late.exit_within(secs(20)).await.success(),
        "a publish into an ended session was admitted"
    );
    assert_eq!(
        refused("relay_session_ended") + refused("relay_unknown_session"),
        1
    );
    // nginx's own on_update and on_publish_done named the approved session.
    assert_eq!(
        stack
            .livebucket
            .metric("livebucket_push_rejected_total{reason=\"unknown_session\"}"),
        0
    );

    wait_until("the playlist to end", secs(40), millis(500), async || {
        read_playlist(&stack.s3, &format!("{channel}/index.m3u8"), &ended).await
    })
    .await;
    // The VOD index names the session by an id that is not the session's.
    let manifests = stack
        .s3
        .list(BUCKET, &format!(".livebucket/index/{channel}/"))
        .await;
    assert!(!manifests.is_empty(), "no manifest stored");
    for (key, _) in &manifests {
        assert!(!key.contains(&session), "{key} holds the session id");
        let body = stack.s3.get(BUCKET, key).await;
        assert!(
            !String::from_utf8_lossy(&body).contains(&session),
            "{key}'s body holds the session id"
        );
    }
    // Nor does any fragment's metadata.
    for (key, _) in stack.s3.list(BUCKET, &format!("{channel}/")).await {
        if key.ends_with(".ts") {
            let head = stack.s3.head(BUCKET, &key).await;
            assert!(
                head.metadata.values().all(|v| !v.contains(&session)),
                "{key}'s metadata holds the session id: {:?}",
                head.metadata
            );
        }
    }
    // The harness logs livebucket at debug; info and above must not show it.
    let log = stack.livebucket.log();
    let shown: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains(" DEBUG ") && !l.contains(" TRACE ") && l.contains(&session))
        .collect();
    assert!(shown.is_empty(), "the session id is logged: {shown:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reloaded_hooks_secret_keeps_live_streams_for_the_grace_period() {
    let mut rig = Rig::start("adm-rotate", "");
    let (a, _) = slash_signed(rig.key(), "cam", unix_now() + 600);
    assert_eq!(rig.callback("publish", "cam", 1, &a).0, 302);

    let new_secret = "rotated-hooks-secret-0123456789abcdef";
    let path = rig.livebucket.config_path().to_owned();
    let text = std::fs::read_to_string(&path).unwrap();
    let rotated = text.replace(HOOKS_SECRET, new_secret).replacen(
        "[hooks]\n",
        "[hooks]\nprevious_secret_grace_secs = 4\n",
        1,
    );
    assert_ne!(rotated, text);
    std::fs::write(&path, rotated).unwrap();
    rig.livebucket.reload();
    let reloaded = std::time::Instant::now();
    wait_until("the reload", secs(10), millis(100), async || {
        rig.livebucket
            .log()
            .contains("configuration reloaded")
            .then_some(())
            .ok_or("not reloaded yet")
    })
    .await;

    // nginx still calls with the old secret until it is reloaded itself.
    assert_eq!(
        rig.callback("update_publish", "cam", 1, &a).0,
        200,
        "on_update with the previous secret was refused: the stream would drop"
    );
    assert_eq!(
        rig.callback_with(new_secret, "update_publish", "cam", 1, &a)
            .0,
        200
    );
    assert_eq!(
        rig.livebucket
            .metric("livebucket_hooks_previous_secret_total{call=\"on_update\"}"),
        1
    );
    let log = rig.livebucket.log();
    assert!(!log.contains(new_secret) && !log.contains(HOOKS_SECRET));

    // Past the grace period only the new one.
    tokio::time::sleep(secs(4).saturating_sub(reloaded.elapsed()) + millis(300)).await;
    assert_eq!(rig.callback("update_publish", "cam", 1, &a).0, 403);
    assert_eq!(
        rig.callback_with(new_secret, "publish_done", "cam", 1, &a)
            .0,
        200
    );
}
