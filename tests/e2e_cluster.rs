#![cfg(feature = "e2e")]
//! Several ingest nodes on one bucket, coordinated through a real 3-member
//! etcd: each node is nginx-rtmp + livebucket with its own tmpfs, all write
//! to one Garage bucket, and an nginx `stream` load balancer sits in front.
//!
//! 1. Two publishers of one channel through two nodes: exactly one is
//!    accepted. A streamer pushing through the balancer survives `kill -9`
//!    of its node: it reconnects, another node continues the channel's
//!    playlist (every version seen is a valid reload of the one before, with
//!    one discontinuity), and once the dead node restarts, every fragment of
//!    its window is in the bucket and in its VOD manifest.
//! 2. GetLiveChannelStat asked of one node describes the stream another
//!    node publishes; a disable through one node drops the publisher on
//!    another. A node cut off from etcd stops writing its channel's playlist,
//!    drops its publisher and refuses to delete a channel (it cannot tell
//!    whether another node publishes it).

mod common;

use std::collections::BTreeSet;

use common::cluster::{Balancer, ChaosProxy, LEASE_TTL_SECS, Node};
use common::etcd::Etcd;
use common::ffmpeg::Push;
use common::playlist_watch::PlaylistWatch;
use common::stored::at_least_segments;
use common::*;

/// Short sessions' ends: a node restarted after a crash finishes its
/// recovered session soon (no `on_publish_done` ever comes for it).
const LIVE: &str = "[live]\nidle_end_factor = 1\ndone_grace_ms = 1000\n";

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
    let dir = TestDir::new("cluster");
    let mut garage = Garage::start(&dir);
    garage.create_bucket(BUCKET);
    let s3 = garage.s3();
    let etcd = blocking(|| Etcd::start(&dir, 3));
    let endpoints = etcd.endpoints_toml();
    let mut nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|n| blocking(|| Node::start(n, &garage, &endpoints, LIVE)))
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
    for proxy in &proxies {
        proxy.cut();
    }
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
        .filter(|k| k.ends_with(".ts") && *k > last)
        .collect();
    assert!(
        !newer.is_empty(),
        "no fragment stored after the playlist froze, so the test proves nothing"
    );
    // Then its publisher is dropped at on_update.
    let status = p.exit_within(secs(30)).await;
    assert!(!status.success(), "the cut-off node kept its publisher");
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
    for proxy in &proxies {
        proxy.restore();
    }
    drop(c);
    drop(a);
    drop(proxies);
    drop(etcd);
}
