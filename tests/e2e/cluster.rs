//! Several ingest nodes on one bucket, coordinated through a real 3-member
//! etcd: each node is nginx-rtmp + livebucket with its own tmpfs, all write
//! to one Garage bucket, and an nginx `stream` load balancer sits in front.
//!
//! 1. Two publishers of one channel through two nodes: exactly one is
//!    accepted. A streamer pushing through the balancer survives `kill -9`
//!    of its node: it reconnects, another node continues the channel's
//!    playlist (every version seen is a valid reload of the one before, with
//!    one discontinuity), and once the dead node restarts, every fragment of
//!    its window is in the bucket and in its VOD manifest. The same on Ceph
//!    RGW (`rgw_…`), where the playlist writes are conditional.
//! 2. GetLiveChannelStat asked of one node describes the stream another
//!    node publishes; a disable through one node drops the publisher on
//!    another. A node cut off from etcd stops writing its channel's playlist
//!    and drops its publisher; when etcd comes back (every member frozen,
//!    then resumed) it takes a new lease within seconds, ends the playlist
//!    it held and takes pushes again; a node cut off alone refuses to delete
//!    a channel (it cannot tell whether another node publishes it), and when
//!    another node took its channel meanwhile it still stores its manifest.
//!    Every stored fragment is in the VOD, with its true duration.
//! 3. A node restarted after a crash ends the playlist nobody continued;
//!    etcd over TLS with a user; a clean stop frees the channels at once.
//! 4. Fenced playlist writes on Ceph RGW (conditional PUTs) and Garage
//!    (plain): a playlist another writer stored after the node's last write
//!    makes the node's next write refused on RGW (then, as it still holds
//!    the channel, read again and written); on Garage it is overwritten as
//!    before. Consecutive writes go on either way, and so does a node that
//!    takes the channel over (conditional on the ETag it read then).

use crate::common;

use std::collections::BTreeSet;

use common::cluster::{Balancer, ChaosProxy, LEASE_TTL_SECS, Node};
use common::etcd::Etcd;
use common::ffmpeg::Push;
use common::playlist_watch::PlaylistWatch;
use common::stored::at_least_segments;
use common::*;

/// Short sessions' ends: a node restarted after a crash finishes its
/// recovered session soon (no `on_publish_done` ever comes for it), 6 s
/// (three 2 s target durations) after its last fragment.
const LIVE: &str = "[live]\nidle_end_factor = 3\ndone_grace_ms = 1000\n";

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn cli(args: &[&str]) -> String {
    let mut cmd = std::process::Command::new(common::livebucket::BIN);
    cmd.args(args);
    common::process::run(&format!("livebucket {args:?}"), &mut cmd)
}

fn sign(node: &Node, channel: &str, base: &str) -> String {
    sign_push(node.livebucket.config_path(), BUCKET, channel, base)
}

fn total_accepted(nodes: &[&Node]) -> Vec<u64> {
    nodes.iter().map(|n| n.accepted()).collect()
}

/// Pushes `url` until a node accepts it (a refused push ends at once;
/// streamers retry, as OBS does): the push and the index of that node.
async fn push_until_accepted(dir: &TestDir, url: &str, nodes: &[&Node]) -> (Push, usize) {
    let deadline = std::time::Instant::now() + secs(60);
    loop {
        let before = total_accepted(nodes);
        let mut p = push(dir, url, 600);
        let accepted = wait_until(
            "a node to accept or refuse the push",
            secs(15),
            millis(200),
            async || {
                let now = total_accepted(nodes);
                if let Some(i) = (0..nodes.len()).find(|&i| now[i] > before[i]) {
                    return Ok(Some(i));
                }
                match p.try_wait() {
                    Some(_) => Ok(None),
                    None => Err(format!("accepted counts {now:?}")),
                }
            },
        )
        .await;
        if let Some(i) = accepted {
            return (p, i);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no node accepted the push within 60 s"
        );
        tokio::time::sleep(millis(500)).await;
    }
}

/// The channels `livebucket cluster status` lists under `node`.
fn live_channels(status: &str, node: &str) -> Vec<String> {
    status
        .lines()
        .skip_while(|l| l.split('\t').next() != Some(node))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.trim_start().split('\t').next().map(str::to_owned))
        .collect()
}

/// The fragment names in nginx's own playlist of the node's one session.
fn nginx_window(node: &Node) -> Vec<String> {
    let dirs: Vec<_> = std::fs::read_dir(&node.hls_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "one session directory on {}", node.name);
    let text = std::fs::read_to_string(dirs[0].path().join("index.m3u8")).unwrap();
    text.lines()
        .filter(|l| l.ends_with(".ts"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn one_publisher_per_channel_and_failover_continues_the_playlist() {
    failover(StoreKind::Garage).await;
}

/// The same on Ceph RGW, where every playlist write is conditional: the
/// node that takes over writes `If-Match` the ETag it read, and the dead
/// node, restarted, yields its recovered session's playlist.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn rgw_one_publisher_per_channel_and_failover_continues_the_playlist() {
    failover(StoreKind::Rgw).await;
}

async fn failover(kind: StoreKind) {
    let dir = TestDir::new(&format!("cluster-{kind:?}"));
    let mut store = TestStore::start(kind, &dir);
    store.create_bucket(BUCKET);
    let s3 = store.s3();
    let etcd = blocking(|| Etcd::start(&dir, 3));
    let endpoints = etcd.endpoints_toml();
    let mut nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|n| blocking(|| Node::start_on(n, &store, &endpoints, LIVE)))
        .collect();
    let ports: Vec<u16> = nodes.iter().map(|n| n.nginx.rtmp_port()).collect();
    let balancer = blocking(|| Balancer::start(&dir, &ports));

    // Two publishers, one channel, two nodes: the second is refused.
    let mut first = push(&dir, &sign(&nodes[0], "dup", &nodes[0].push_base()), 600);
    wait_until("node a to accept", secs(20), millis(200), async || {
        if nodes[0].accepted() == 1 {
            Ok(())
        } else {
            Err(format!("{:?}", first.try_wait()))
        }
    })
    .await;
    let mut second = push(&dir, &sign(&nodes[1], "dup", &nodes[1].push_base()), 600);
    let status = second.exit_within(secs(20)).await;
    assert!(!status.success(), "the second publisher was not refused");
    assert_eq!(
        nodes[1]
            .livebucket
            .metric("livebucket_push_rejected_total{reason=\"channel_live\"}"),
        1
    );
    assert_eq!(
        total_accepted(&[&nodes[0], &nodes[1], &nodes[2]]),
        [1, 0, 0]
    );
    assert!(
        first.try_wait().is_none(),
        "the first publisher was dropped"
    );
    let status_text = cli(&[
        "cluster",
        "status",
        "--config",
        nodes[1].livebucket.config_path().to_str().unwrap(),
    ]);
    assert_eq!(
        live_channels(&status_text, "a"),
        [format!("{BUCKET}/dup")],
        "{status_text}"
    );
    assert!(status_text.contains("ok ("), "{status_text}");
    first.kill();

    // Fail-over: the node holding a live channel dies.
    let watch = PlaylistWatch::start(&s3, BUCKET, "fo");
    let url = sign(&nodes[0], "fo", &balancer.push_base());
    let refs: Vec<&Node> = nodes.iter().collect();
    let (mut streamer, holder) = push_until_accepted(&dir, &url, &refs).await;
    watch
        .wait_for("three segments", secs(60), |v| {
            at_least_segments(3)(&v.playlist)
        })
        .await;
    let before_kill = watch.latest().unwrap();
    let killed = std::time::Instant::now();
    blocking(|| nodes[holder].kill9());
    let window = nginx_window(&nodes[holder]);
    let dead_session_keys: BTreeSet<String> = window.iter().map(|n| format!("fo/{n}")).collect();
    let status = streamer.exit_within(secs(20)).await;
    assert!(!status.success(), "the push outlived its node");

    // The dead node's metrics cannot be read: it is not asked.
    let alive: Vec<&Node> = (0..nodes.len())
        .filter(|&i| i != holder)
        .map(|i| &nodes[i])
        .collect();
    let (mut streamer, next) = push_until_accepted(&dir, &url, &alive).await;
    // The fail-over gap: the dead node's key lives out its lease (TTL from
    // its last renewal, sent up to a third of the TTL before the kill),
    // then the streamer's next retry is accepted.
    let gap = killed.elapsed();
    eprintln!(
        "cluster: kill -9 to the next accepted push: {:.1} s (lease_ttl_secs = {LEASE_TTL_SECS})",
        gap.as_secs_f64()
    );
    assert!(
        gap < secs(LEASE_TTL_SECS + 10),
        "fail-over took {gap:?} with a {LEASE_TTL_SECS} s lease"
    );
    let next_name = alive[next].name.clone();
    let seq_before = before_kill.playlist.media_sequence;
    let resumed = watch
        .wait_for("the channel continued on another node", secs(60), |v| {
            let p = &v.playlist;
            let flags = &p.discontinuity_flags;
            match flags.iter().rposition(|&d| d) {
                Some(i) if flags.len() - i >= 2 => Ok(()),
                _ => Err(format!("no two segments after a discontinuity: {flags:?}")),
            }
        })
        .await;
    assert!(resumed.playlist.media_sequence >= seq_before);
    assert!(
        alive[next]
            .livebucket
            .log()
            .contains("continuing the channel's playlist from the bucket"),
        "the new node did not continue from the bucket's playlist"
    );
    let status_text = cli(&[
        "cluster",
        "status",
        "--config",
        alive[next].livebucket.config_path().to_str().unwrap(),
    ]);
    assert_eq!(
        live_channels(&status_text, &next_name),
        [format!("{BUCKET}/fo")],
        "{status_text}"
    );
    assert!(!resumed.playlist.ended);
    // Every key the dead node's playlist listed keeps its place: the watch
    // checked each version as a reload of the one before.

    // The dead node comes back: what was on its tmpfs reaches the bucket
    // and its VOD manifest, and it leaves the live playlist alone.
    blocking(|| nodes[holder].restart());
    let state = nodes[holder].state_dir.join("sessions");
    wait_until(
        "the restarted node to finish its session",
        secs(90),
        millis(500),
        async || {
            // Spare directories (an empty meta.json) are not sessions.
            let left: Vec<_> = std::fs::read_dir(&state)
                .unwrap()
                .flatten()
                .filter(|e| std::fs::read(e.path().join("meta.json")).is_ok_and(|m| !m.is_empty()))
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{} sessions left", left.len()))
            }
        },
    )
    .await;
    let objects: BTreeSet<String> = s3
        .list(BUCKET, "fo/")
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let missing: Vec<_> = dead_session_keys.difference(&objects).collect();
    assert!(
        missing.is_empty(),
        "fragments of the dead node's window missing: {missing:?}"
    );
    let mut indexed = BTreeSet::new();
    for (key, _) in s3.list(BUCKET, ".livebucket/index/fo/").await {
        let m: serde_json::Value = serde_json::from_slice(&s3.get(BUCKET, &key).await).unwrap();
        for f in m["fragments"].as_array().unwrap() {
            indexed.insert(format!("fo/{:013}.ts", f["k"].as_u64().unwrap()));
        }
    }
    let unindexed: Vec<_> = dead_session_keys.difference(&indexed).collect();
    assert!(unindexed.is_empty(), "not in any manifest: {unindexed:?}");
    assert!(
        nodes[holder]
            .livebucket
            .metric("livebucket_cluster_fence_total{verdict=\"yield\"}")
            > 0,
        "the restarted node never yielded the playlist"
    );
    let after = watch.latest().unwrap();
    assert!(
        !after.playlist.ended,
        "the restarted node ended the live playlist"
    );
    streamer.kill();
    let observed = watch.finish().await;
    assert!(observed.versions.len() >= 3);
    drop(balancer);
    drop(nodes);
    drop(etcd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn disable_reaches_other_nodes_and_a_cut_off_node_stops_its_playlist() {
    let dir = TestDir::new("cluster-cut");
    let mut garage = Garage::start(&dir);
    garage.create_bucket(BUCKET);
    let s3 = garage.s3();
    let etcd = blocking(|| Etcd::start(&dir, 3));
    let mut proxies = Vec::new();
    for e in &etcd.endpoints {
        let upstream = e.trim_start_matches("http://").parse().unwrap();
        proxies.push(ChaosProxy::start(upstream).await);
    }
    let via_proxies = format!(
        "[{}]",
        proxies
            .iter()
            .map(|p| format!("\"http://{}\"", p.addr))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let a = blocking(|| Node::start("a", &garage, &etcd.endpoints_toml(), LIVE));
    let c = blocking(|| Node::start("c", &garage, &via_proxies, LIVE));

    // A disable through node a drops the publisher on node c.
    let a_config = a.livebucket.config_path().to_str().unwrap().to_owned();
    let channel = |args: &[&str]| {
        let mut all = vec!["channel"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config", &a_config, "--bucket", BUCKET]);
        cli(&all)
    };
    channel(&["create", "--channel", "dis"]);
    let mut p = push(&dir, &sign(&c, "dis", &c.push_base()), 600);
    wait_until("node c to accept", secs(20), millis(200), async || {
        if c.accepted() == 1 {
            Ok(())
        } else {
            Err(format!("{:?}", p.try_wait()))
        }
    })
    .await;
    // Asked of node a, the stat comes from node c (etcd, then c's nginx).
    let stat = wait_until(
        "the stat through node a",
        secs(20),
        millis(500),
        async || {
            let text = channel(&["stat", "--channel", "dis"]);
            if text.contains("Width") {
                Ok(text)
            } else {
                Err(text)
            }
        },
    )
    .await;
    assert!(
        stat.contains("Status: Live")
            && stat.contains("Width: 320")
            && stat.contains("Codec: H264"),
        "{stat}"
    );
    channel(&["status", "--channel", "dis", "disabled"]);
    let status = p.exit_within(secs(30)).await;
    assert!(
        !status.success(),
        "the push survived disabling its channel on another node"
    );
    assert!(
        c.livebucket
            .metric("livebucket_push_rejected_total{reason=\"channel_disabled\"}")
            >= 1
    );

    // Node c loses etcd while it publishes a channel.
    let mut p = push(&dir, &sign(&c, "part", &c.push_base()), 600);
    let key = "part/index.m3u8";
    wait_until("c's playlist", secs(60), millis(300), async || {
        common::stored::read_playlist(&s3, key, &at_least_segments(2)).await
    })
    .await;
    assert_eq!(ready(&c), 200, "c not ready before the cut");
    // Keep-alive pings within etcd's limits: no GOAWAY broke the watch.
    assert_eq!(
        a.livebucket
            .metric("livebucket_cluster_watch_reconnects_total"),
        0,
        "{}",
        a.livebucket.log()
    );
    // etcd stops answering altogether: every member frozen (SIGSTOP).
    let cut_at = unix_now();
    etcd.freeze();
    wait_until(
        "c to say it is cut off",
        secs(3 * LEASE_TTL_SECS + 10),
        millis(200),
        async || {
            if c.livebucket.log().contains("CUT OFF FROM ETCD") {
                Ok(())
            } else {
                Err("not yet")
            }
        },
    )
    .await;
    // A balancer's health check sends no more streamers to c.
    wait_until(
        "c to say it is not ready",
        secs(2 * LEASE_TTL_SECS),
        millis(200),
        async || match ready(&c) {
            503 => Ok(()),
            s => Err(format!("/readyz {s}")),
        },
    )
    .await;
    // Uploads in flight when the lease could still be alive may land; after
    // that the playlist object must not change while media keeps coming.
    tokio::time::sleep(secs(2)).await;
    let frozen = s3.get(BUCKET, key).await;
    wait_until(
        "c to hold a playlist write back",
        secs(20),
        millis(300),
        async || {
            let held = c
                .livebucket
                .metric("livebucket_cluster_fence_total{verdict=\"hold\"}");
            if held > 0 {
                Ok(())
            } else {
                Err("no held write yet")
            }
        },
    )
    .await;
    tokio::time::sleep(secs(2 * LEASE_TTL_SECS)).await;
    assert_eq!(
        String::from_utf8_lossy(&s3.get(BUCKET, key).await),
        String::from_utf8_lossy(&frozen),
        "a node cut off from etcd changed its channel's playlist"
    );
    // The node kept storing media after its last playlist (fragments are
    // its own objects): without the fence the playlist would list them.
    let listed = common::hlscheck::check_playlist(&String::from_utf8_lossy(&frozen))
        .unwrap()
        .uris;
    let last = format!("part/{}", listed.last().unwrap());
    let newer: Vec<String> = s3
        .list(BUCKET, "part/")
        .await
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| common::is_fragment_key(k) && *k > last)
        .collect();
    assert!(
        !newer.is_empty(),
        "no fragment stored after the playlist froze, so the test proves nothing"
    );
    // Then its publisher is dropped at on_update.
    let status = p.exit_within(secs(30)).await;
    assert!(!status.success(), "the cut-off node kept its publisher");

    // etcd comes back, having revoked c's lease while it was frozen: c
    // takes a new lease within seconds, ends the playlist it held back, and
    // accepts pushes again.
    etcd.thaw();
    let thawed = std::time::Instant::now();
    wait_until(
        "c to hold a live lease again",
        secs(LEASE_TTL_SECS + 10),
        millis(200),
        async || match c.livebucket.metric("livebucket_cluster_lease_alive") {
            1 => Ok(()),
            _ => Err("no live lease"),
        },
    )
    .await;
    assert_eq!(ready(&c), 200, "c holds a lease but says it is not ready");
    let ended = wait_until(
        "the playlist c held back to be ended",
        secs(30),
        millis(300),
        async || {
            common::stored::read_playlist(&s3, key, &|p| {
                if p.ended {
                    Ok(())
                } else {
                    Err("no ENDLIST".to_owned())
                }
            })
            .await
        },
    )
    .await;
    assert!(
        ended.playlist.uris.last() > listed.last(),
        "the ended playlist lists nothing stored during the cut: {:?}",
        ended.playlist.uris
    );
    let accepted = c.accepted();
    let mut p = push(&dir, &sign(&c, "part", &c.push_base()), 6);
    wait_until(
        "c to accept a push after etcd came back",
        secs(15),
        millis(200),
        async || {
            if c.accepted() > accepted {
                Ok(())
            } else {
                Err(format!("{:?}", p.try_wait()))
            }
        },
    )
    .await;
    eprintln!(
        "cluster: c accepted a push {:.1} s after etcd came back",
        thawed.elapsed().as_secs_f64()
    );
    assert!(
        thawed.elapsed() < secs(LEASE_TTL_SECS + 15),
        "c took {:?} to take a push after etcd came back",
        thawed.elapsed()
    );
    let status = p.exit_within(secs(30)).await;
    assert!(status.success(), "the push after the outage failed");
    wait_sessions_finished(&c).await;

    // Every fragment stored, before, during and after the cut, is in the
    // VOD of the whole range, with its true duration.
    assert_vod_lists_every_fragment(&dir, &s3, &c, "part", cut_at - 120).await;

    // Handed over: c alone is cut off (its proxies to etcd), another node
    // takes its channel meanwhile; once c is back, its held manifest still
    // lands, so every fragment either node stored is in the VOD.
    let mut p = push(&dir, &sign(&c, "hand", &c.push_base()), 600);
    wait_until("c's playlist of hand", secs(60), millis(300), async || {
        common::stored::read_playlist(&s3, "hand/index.m3u8", &at_least_segments(2)).await
    })
    .await;
    let hand_at = unix_now();
    let cut_offs = c.livebucket.metric("livebucket_cluster_cut_off_total");
    for proxy in &proxies {
        proxy.cut();
    }
    let status = p.exit_within(secs(30)).await;
    assert!(!status.success(), "the cut-off node kept its publisher");
    assert!(c.livebucket.metric("livebucket_cluster_cut_off_total") > cut_offs);
    // Cut off, node c cannot tell whether another node publishes a channel:
    // it refuses to delete one (503 ServiceUnavailable) rather than guess.
    let c_config = c.livebucket.config_path().to_str().unwrap().to_owned();
    let out = blocking(|| {
        std::process::Command::new(common::livebucket::BIN)
            .args(["channel", "rm", "--channel", "dis"])
            .args(["--config", &c_config, "--bucket", BUCKET])
            .output()
            .unwrap()
    });
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && said.contains("ServiceUnavailable"),
        "delete through a node cut off from etcd: {said}"
    );
    // Still there (`channel` fails on NoSuchLiveChannel).
    channel(&["get", "--channel", "dis"]);
    let accepted = a.accepted();
    let mut q = push(&dir, &sign(&a, "hand", &a.push_base()), 8);
    wait_until(
        "a to take the channel once c's lease expired",
        secs(3 * LEASE_TTL_SECS + 10),
        millis(300),
        async || {
            if a.accepted() > accepted {
                return Ok(());
            }
            if q.try_wait().is_some() {
                // Refused while c's key lived: retry, as a streamer does.
                q = push(&dir, &sign(&a, "hand", &a.push_base()), 8);
            }
            Err("not accepted yet")
        },
    )
    .await;
    for proxy in &proxies {
        proxy.restore();
    }
    wait_until(
        "c to learn another node took its channel",
        secs(LEASE_TTL_SECS + 15),
        millis(300),
        async || {
            if c.livebucket
                .log()
                .contains("another node took this channel while this node was cut off")
            {
                Ok(())
            } else {
                Err("not yet")
            }
        },
    )
    .await;
    let status = q.exit_within(secs(30)).await;
    assert!(
        status.success(),
        "a's push of the handed-over channel failed"
    );
    wait_sessions_finished(&c).await;
    wait_sessions_finished(&a).await;
    assert_vod_lists_every_fragment(&dir, &s3, &a, "hand", hand_at - 120).await;
    drop(c);
    drop(a);
    drop(proxies);
    drop(etcd);
}

/// The VOD of `channel` from `from` (epoch seconds) to now, made with
/// `node`'s config, lists every fragment stored under `channel/` once, each
/// with an EXTINF within 0.5 s of the duration ffprobe measures.
async fn assert_vod_lists_every_fragment(
    dir: &TestDir,
    s3: &common::s3::S3,
    node: &Node,
    channel: &str,
    from: u64,
) {
    let vod = cli(&[
        "vod",
        "--config",
        node.livebucket.config_path().to_str().unwrap(),
        "--bucket",
        BUCKET,
        "--channel",
        channel,
        "--start",
        &from.to_string(),
        "--end",
        &(unix_now() + 5).to_string(),
    ]);
    let listed = vod_segments(&vod, channel);
    let stored: BTreeSet<String> = s3
        .list(BUCKET, &format!("{channel}/"))
        .await
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| common::is_fragment_key(k))
        .collect();
    let in_vod: BTreeSet<String> = listed.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(
        in_vod.len(),
        listed.len(),
        "a fragment is listed twice:\n{vod}"
    );
    let missing: Vec<_> = stored.difference(&in_vod).collect();
    assert!(
        missing.is_empty(),
        "stored but not in the VOD: {missing:?}\n{vod}"
    );
    for (key, extinf) in &listed {
        let file = dir.join(key.replace('/', "_"));
        std::fs::write(&file, s3.get(BUCKET, key).await).unwrap();
        let probed = probe_duration(&file);
        assert!(
            (probed - extinf).abs() <= 0.5,
            "{key}: EXTINF {extinf} but ffprobe measures {probed}\n{vod}"
        );
    }
}

/// The status of `GET /readyz` on the node's operator listener.
fn ready(node: &Node) -> u16 {
    common::livebucket::http_get(node.livebucket.operator_addr(), "/readyz")
        .unwrap()
        .0
}

/// Waits until `node` has finished every session (stored, playlist ended,
/// state removed). Spare directories (an empty meta.json) are not sessions.
async fn wait_sessions_finished(node: &Node) {
    let state = node.state_dir.join("sessions");
    wait_until(
        &format!("node {} to finish its sessions", node.name),
        secs(90),
        millis(500),
        async || {
            let left: Vec<_> = std::fs::read_dir(&state)
                .unwrap()
                .flatten()
                .filter(|e| std::fs::read(e.path().join("meta.json")).is_ok_and(|m| !m.is_empty()))
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{} sessions left", left.len()))
            }
        },
    )
    .await;
}

/// (object key, EXTINF seconds) of each segment of a VOD playlist of
/// `channel` (its URIs name `<ms>.ts` of the channel, relative or
/// presigned).
fn vod_segments(text: &str, channel: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut extinf = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("#EXTINF:") {
            extinf = v.split(',').next().and_then(|d| d.parse::<f64>().ok());
        } else if !line.starts_with('#') && !line.is_empty() {
            // `NAME.ts`, or a presigned URL ending in it.
            let path = line.split('?').next().unwrap_or(line);
            let name = path.rsplit('/').next().unwrap_or(path);
            assert!(name.ends_with(".ts"), "VOD URI is no fragment: {line}");
            let extinf = extinf.take().expect("EXTINF before URI");
            out.push((format!("{channel}/{name}"), extinf));
        }
    }
    out
}

/// ffprobe's duration of one MPEG-TS file, in seconds.
fn probe_duration(path: &std::path::Path) -> f64 {
    let mut cmd = std::process::Command::new("ffprobe");
    cmd.args([
        "-v",
        "error",
        "-show_entries",
        "format=duration",
        "-of",
        "default=nw=1:nk=1",
    ])
    .arg(path);
    let out = common::process::run("ffprobe", &mut cmd);
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("ffprobe duration of {}: {out:?}", path.display()))
}

/// A node dies (kill -9) while it publishes a channel and nobody continues
/// the channel: once restarted, it stores what was left on its tmpfs, ends
/// the channel's live playlist, and every fragment (the last one cut short,
/// never listed by nginx) is in the VOD with its true duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_node_restarted_after_a_crash_ends_the_playlist_nobody_continued() {
    let dir = TestDir::new("cluster-crash");
    let mut garage = Garage::start(&dir);
    garage.create_bucket(BUCKET);
    let s3 = garage.s3();
    let etcd = blocking(|| Etcd::start(&dir, 1));
    let mut node = blocking(|| Node::start("solo", &garage, &etcd.endpoints_toml(), LIVE));
    let started = unix_now();
    let mut p = push(&dir, &sign(&node, "crash", &node.push_base()), 600);
    let key = "crash/index.m3u8";
    wait_until("three segments", secs(60), millis(300), async || {
        common::stored::read_playlist(&s3, key, &at_least_segments(3)).await
    })
    .await;
    // Half-way into a fragment, so the last one is cut short.
    tokio::time::sleep(millis(900)).await;
    blocking(|| node.kill9());
    let _ = p.exit_within(secs(20)).await;
    blocking(|| node.restart());
    wait_sessions_finished(&node).await;
    let ended = common::stored::read_playlist(&s3, key, &|p| {
        if p.ended {
            Ok(())
        } else {
            Err("no ENDLIST".to_owned())
        }
    })
    .await;
    if let Err(e) = ended {
        panic!(
            "the restarted node left the playlist open ({e}):\n{}",
            node.livebucket.log()
        );
    }
    assert_eq!(
        node.livebucket
            .metric("livebucket_cluster_fence_total{verdict=\"yield\"}"),
        0,
        "the restarted node yielded a channel nobody continued"
    );
    assert_vod_lists_every_fragment(&dir, &s3, &node, "crash", started - 5).await;
    drop(node);
    drop(etcd);
}

/// etcd with its own TLS (a CA, a server certificate for 127.0.0.1, client
/// certificates required) and auth enabled: a node configured with the CA,
/// a client certificate and an etcd user takes a push and `cluster status`
/// reads the cluster; a wrong password is refused without being echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn etcd_over_tls_with_a_user() {
    let dir = TestDir::new("cluster-tls");
    let mut garage = Garage::start(&dir);
    garage.create_bucket(BUCKET);
    let s3 = garage.s3();
    let certs = common::etcd::Certs::make(&dir.subdir("certs"));
    let etcd = blocking(|| Etcd::start_tls(&dir, &certs, "lb", "lb-pw-4242"));
    let tls = format!(
        "ca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n\
         username = \"lb\"\npassword = \"lb-pw-4242\"\n",
        certs.ca, certs.client, certs.client_key
    );
    let node = blocking(|| Node::start_with("t", &garage, &etcd.endpoints_toml(), &tls, LIVE));
    let mut p = push(&dir, &sign(&node, "sec", &node.push_base()), 600);
    wait_until(
        "a playlist over TLS etcd",
        secs(60),
        millis(300),
        async || {
            if let Some(status) = p.try_wait() {
                return Err(format!("the push ended: {status}"));
            }
            common::stored::read_playlist(&s3, "sec/index.m3u8", &at_least_segments(1)).await
        },
    )
    .await;
    let config = node.livebucket.config_path().to_str().unwrap().to_owned();
    let status = cli(&["cluster", "status", "--config", &config]);
    assert_eq!(
        live_channels(&status, "t"),
        [format!("{BUCKET}/sec")],
        "{status}"
    );
    // Without the user's password etcd refuses; the password is not shown.
    let wrong = dir.join("wrong.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&wrong, text.replace("lb-pw-4242", "not-the-pw-7171")).unwrap();
    let out = std::process::Command::new(common::livebucket::BIN)
        .args(["cluster", "status", "--config"])
        .arg(&wrong)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a wrong etcd password was accepted");
    assert!(
        !stderr.contains("not-the-pw-7171") && !stderr.contains("lb-pw-4242"),
        "{stderr}"
    );
    p.kill();
    drop(node);
    drop(etcd);
}

/// A node stopped cleanly (SIGTERM) frees its channels at once, not after
/// its lease's TTL nor after its drains: S3 is down, so the upload drain
/// waits its full 5 s, and the TTL here is 60 s. The streamer is then
/// accepted by another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_clean_stop_frees_its_channels_at_once() {
    let dir = TestDir::new("cluster-stop");
    let mut garage = Garage::start(&dir);
    garage.create_bucket(BUCKET);
    let etcd = blocking(|| Etcd::start(&dir, 1));
    let ttl = "lease_ttl_secs = 60\n";
    let mut a = blocking(|| Node::start_with("a", &garage, &etcd.endpoints_toml(), ttl, LIVE));
    let b = blocking(|| Node::start_with("b", &garage, &etcd.endpoints_toml(), ttl, LIVE));
    let mut p = push(&dir, &sign(&a, "stop", &a.push_base()), 600);
    wait_until("node a to accept", secs(20), millis(200), async || {
        if a.accepted() == 1 {
            Ok(())
        } else {
            Err(format!("{:?}", p.try_wait()))
        }
    })
    .await;
    let b_config = b.livebucket.config_path().to_str().unwrap().to_owned();
    let status = cli(&["cluster", "status", "--config", &b_config]);
    assert_eq!(live_channels(&status, "a"), [format!("{BUCKET}/stop")]);
    // S3 down: the next fragment's upload keeps failing, so the upload
    // drain at shutdown waits its full 5 s.
    garage.stop();
    let captured = a.livebucket.metric("livebucket_fragments_captured_total");
    wait_until(
        "a fragment whose upload fails",
        secs(20),
        millis(100),
        async || match a.livebucket.metric("livebucket_fragments_captured_total") {
            n if n > captured => Ok(()),
            _ => Err("no new fragment"),
        },
    )
    .await;
    let stopped = std::time::Instant::now();
    let stopping = std::thread::spawn(move || {
        a.livebucket.terminate(secs(30));
        a
    });
    let freed = wait_until(
        "node a's channel to be free",
        secs(20),
        millis(100),
        async || {
            let status = cli(&["cluster", "status", "--config", &b_config]);
            if live_channels(&status, "a").is_empty() && !status.contains("\na\t") {
                Ok(stopped.elapsed())
            } else {
                Err(status)
            }
        },
    )
    .await;
    assert!(
        freed < secs(4),
        "a clean stop freed the channel after {freed:?}"
    );
    garage.start_again();
    p.kill();
    let mut p = push(&dir, &sign(&b, "stop", &b.push_base()), 600);
    wait_until(
        "node b to accept the channel",
        secs(20),
        millis(200),
        async || {
            if b.accepted() == 1 {
                Ok(())
            } else {
                Err(format!("{:?}", p.try_wait()))
            }
        },
    )
    .await;
    eprintln!(
        "cluster: clean stop freed the channel after {:.1} s; another node accepted it {:.1} s after SIGTERM (lease_ttl_secs = 60)",
        freed.as_secs_f64(),
        stopped.elapsed().as_secs_f64()
    );
    p.kill();
    let a = stopping.join().unwrap();
    drop(a);
    drop(b);
    drop(etcd);
}

/// The refusals of conditional playlist PUTs, by what followed.
fn playlist_refusals(node: &Node) -> [u64; 4] {
    ["retry", "drop", "hold", "contended"].map(|what| {
        node.livebucket.metric(&format!(
            "livebucket_cluster_playlist_refusals_total{{outcome=\"{what}\"}}"
        ))
    })
}

/// Sequence number one past the playlist's last segment.
fn next_sequence(p: &common::hlscheck::CheckedPlaylist) -> u64 {
    p.media_sequence + p.uris.len() as u64
}

/// A channel's playlist written by "another node" (the test PUTs it
/// directly) after the holder's last write: on a store with conditional
/// writes the holder's next PUT (`If-Match` its own last ETag) is refused;
/// the holder, still holding the channel, reads the object again and writes
/// once more with its ETag. On Garage the next plain PUT overwrites it.
async fn a_playlist_written_underneath(kind: StoreKind) {
    let dir = TestDir::new(&format!("cluster-ifmatch-{kind:?}"));
    let mut store = TestStore::start(kind, &dir);
    store.create_bucket(BUCKET);
    let s3 = store.s3();
    let etcd = blocking(|| Etcd::start(&dir, 1));
    let node = blocking(|| Node::start_on("solo", &store, &etcd.endpoints_toml(), LIVE));
    let mut p = push(&dir, &sign(&node, "fenced", &node.push_base()), 600);
    let key = "fenced/index.m3u8";
    let first = wait_until("three segments", secs(60), millis(300), async || {
        if let Some(status) = p.try_wait() {
            panic!("the push ended ({status}):\n{}", p.log());
        }
        common::stored::read_playlist(&s3, key, &at_least_segments(3)).await
    })
    .await;
    // Three versions written one after another, each conditional on the
    // one before on RGW: none refused.
    assert_eq!(
        playlist_refusals(&node),
        [0; 4],
        "{}",
        node.livebucket.log()
    );
    let conditional = node
        .livebucket
        .log()
        .contains("the store honours conditional writes");
    assert_eq!(
        conditional,
        kind == StoreKind::Rgw,
        "{}",
        node.livebucket.log()
    );

    let other = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n\
                 #EXT-X-MEDIA-SEQUENCE:0\n#written-by-another-node\n";
    s3.put(BUCKET, key, other.into(), "application/vnd.apple.mpegurl")
        .await;
    let before = next_sequence(&first.playlist);
    let again = wait_until(
        "the node's playlist again",
        secs(30),
        millis(200),
        async || {
            let text = String::from_utf8(s3.get(BUCKET, key).await).expect("UTF-8");
            if text.contains("#written-by-another-node") {
                return Err("still the other writer's".to_owned());
            }
            common::stored::read_playlist(&s3, key, &|p| {
                if next_sequence(p) > before {
                    Ok(())
                } else {
                    Err("not past the first read".into())
                }
            })
            .await
        },
    )
    .await;
    let expected = match kind {
        // Refused once; the node still holds the channel: read, written.
        StoreKind::Rgw => [1, 0, 0, 0],
        StoreKind::Garage => [0; 4],
    };
    assert_eq!(
        playlist_refusals(&node),
        expected,
        "{}",
        node.livebucket.log()
    );
    // And the writes after it go on, conditional on the retry's ETag.
    let after = next_sequence(&again.playlist);
    wait_until("two more segments", secs(30), millis(300), async || {
        common::stored::read_playlist(&s3, key, &|p| {
            if next_sequence(p) >= after + 2 {
                Ok(())
            } else {
                Err("not yet".into())
            }
        })
        .await
    })
    .await;
    assert_eq!(
        playlist_refusals(&node),
        expected,
        "{}",
        node.livebucket.log()
    );

    // Another node takes the channel over once this session has ended: it
    // read the playlist (and its ETag) when it took it, so a write landing
    // after that read (a former holder's late PUT, played by the test) makes
    // its first write refused too, not overwritten blindly.
    p.kill();
    wait_until("the playlist to end", secs(30), millis(300), async || {
        common::stored::read_playlist(&s3, key, &common::stored::ended).await
    })
    .await;
    let b = blocking(|| Node::start_on("b", &store, &etcd.endpoints_toml(), LIVE));
    let (mut p, _) = push_until_accepted(&dir, &sign(&b, "fenced", &b.push_base()), &[&b]).await;
    s3.put(BUCKET, key, other.into(), "application/vnd.apple.mpegurl")
        .await;
    let before = next_sequence(&again.playlist);
    wait_until("node b's playlist", secs(30), millis(300), async || {
        let text = String::from_utf8(s3.get(BUCKET, key).await).expect("UTF-8");
        if text.contains("#written-by-another-node") {
            return Err("still the other writer's".to_owned());
        }
        common::stored::read_playlist(&s3, key, &|p| {
            if !p.ended && next_sequence(p) > before + 1 {
                Ok(())
            } else {
                Err("not node b's yet".into())
            }
        })
        .await
    })
    .await;
    assert_eq!(playlist_refusals(&b), expected, "{}", b.livebucket.log());
    p.kill();
    drop(b);
    drop(node);
    drop(etcd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn rgw_a_playlist_written_underneath_the_holder_is_refused_then_rewritten() {
    a_playlist_written_underneath(StoreKind::Rgw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_playlist_written_underneath_the_holder_is_overwritten_on_garage() {
    a_playlist_written_underneath(StoreKind::Garage).await;
}
