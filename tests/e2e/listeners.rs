//! livebucket's listeners under connection floods, end to end, each played
//! as an attacker on the same host would:
//!
//! - a process without the hooks secret holding more keep-alive connections
//!   than `limits.max_connections` on the TCP hooks listener, sending a
//!   forged callback on each every second, does not stop nginx's `on_update`
//!   from being answered: every refusal closes its connection, so a signed
//!   push stays live through several update rounds;
//! - clients that stop reading a response are cut off after
//!   `limits.write_timeout_secs`, and an idle keep-alive connection after
//!   `limits.header_read_timeout_secs`;
//! - one client IP gets at most `limits.max_connections_per_peer`
//!   connections to the public listener while another still gets answers.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::livebucket::{ConfigParams, Livebucket, config_toml, sign_push};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// One forger: keeps a connection to the hooks listener and sends a forged
/// `on_update` on it every second, reconnecting only when livebucket has
/// closed it (as the attacker did, with keep-alive).
async fn forge(hooks: SocketAddr, stop: Arc<AtomicBool>, answered: Arc<AtomicU64>) {
    let request = b"POST /hooks/not-the-secret-0123456789abcdef0123/on_update HTTP/1.1\r\n\
        Host: hooks\r\nContent-Type: application/x-www-form-urlencoded\r\n\
        Content-Length: 0\r\n\r\n";
    let mut conn: Option<TcpStream> = None;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            conn = TcpStream::connect(hooks).await.ok();
        }
        if let Some(s) = conn.as_mut() {
            let mut buf = [0u8; 1024];
            let answer = match s.write_all(request).await {
                Ok(()) => tokio::time::timeout(secs(2), s.read(&mut buf)).await,
                Err(e) => Ok(Err(e)),
            };
            match answer {
                Ok(Ok(n)) if n > 0 => {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                _ => conn = None,
            }
        }
        tokio::time::sleep(secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_keep_alive_flood_on_the_hooks_listener_does_not_drop_a_push() {
    const CAP: usize = 64;
    const FORGERS: usize = 80;
    let dir = TestDir::new("lst-hooks-flood");
    let mut garage = Garage::start(&dir);
    garage.create_bucket(BUCKET);
    let key = garage.key().clone();
    let hooks = free_addr();
    let hls_dir = dir.join("hls");
    // on_update every 2 s: a 12 s push spans several rounds.
    let nginx = Nginx::start_with(
        &dir,
        &format!("http://{hooks}"),
        &hls_dir,
        &[("NOTIFY_UPDATE_TIMEOUT", "2s")],
    );
    let config = config_toml(&ConfigParams {
        listen: hooks,
        stat_url: Some(&nginx.stat_url()),
        state_dir: &dir.subdir("state"),
        hls_dir: &hls_dir,
        relay_url: &nginx.relay_url(),
        s3_endpoint: garage.endpoint(),
        keys: &[(&key, &[BUCKET])],
        extra: &format!("[limits]\nmax_connections = {CAP}\n"),
    });
    let livebucket = Livebucket::start(&dir, &config);
    let url = sign_push(
        livebucket.config_path(),
        BUCKET,
        "flood",
        &nginx.push_base(),
    );
    let mut push = push(&dir, &url, 12);
    wait_until(
        "the push's approval",
        secs(15),
        millis(100),
        async || match livebucket.metric("livebucket_push_accepted_total") {
            0 => Err("not yet approved"),
            _ => Ok(()),
        },
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let forgers: Vec<_> = (0..FORGERS)
        .map(|_| tokio::spawn(forge(hooks, stop.clone(), answered.clone())))
        .collect();
    let updates_before = livebucket.metric("livebucket_hooks_total{call=\"update\"}");
    let status = push.exit_within(secs(30)).await;
    stop.store(true, Ordering::Relaxed);
    for f in forgers {
        let _ = f.await;
    }
    let forged = answered.load(Ordering::Relaxed);
    assert!(
        forged >= 2 * CAP as u64,
        "the flood did not run: {forged} forged requests answered"
    );
    assert!(
        status.success(),
        "the push was dropped during the flood:\n{}\nnginx:\n{}",
        push.log(),
        nginx.error_log()
    );
    let updates = livebucket.metric("livebucket_hooks_total{call=\"update\"}") - updates_before;
    assert!(
        updates >= 3,
        "only {updates} on_update answered during the flood"
    );
    assert!(
        !nginx.error_log().contains("update failed"),
        "nginx reports failed updates"
    );
}

/// livebucket alone (no S3 needed: nothing is published) with `limits`.
fn start_alone(name: &str, limits: &str) -> (TestDir, Livebucket) {
    let dir = TestDir::new(name);
    let key = common::garage::Key {
        id: "GK000000000000000000000001".into(),
        secret: "0123456789abcdef0123456789abcdef".into(),
    };
    let config = config_toml(&ConfigParams {
        listen: free_addr(),
        stat_url: None,
        state_dir: &dir.subdir("state"),
        hls_dir: &dir.join("hls"),
        relay_url: "rtmp://127.0.0.1:1935/hls",
        s3_endpoint: "http://127.0.0.1:9",
        keys: &[(&key, &[BUCKET])],
        extra: &format!("[limits]\n{limits}"),
    });
    let lb = Livebucket::start(&dir, &config);
    (dir, lb)
}

/// A connection from `source` with a small receive buffer, so that a large
/// response fills it and livebucket's send buffer quickly.
async fn connect_from(source: &str, to: SocketAddr, recv_buffer: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Reads until the peer closes (EOF or reset) within `timeout`: the bytes
/// read, or `None` if the connection is still open then.
async fn read_until_closed(s: &mut TcpStream, timeout: std::time::Duration) -> Option<usize> {
    let mut total = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(total),
            Ok(Ok(n)) => total += n,
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_readers_and_idle_keep_alive_connections_are_closed() {
    const STALLED: usize = 8;
    let (_dir, lb) = start_alone(
        "lst-stalled",
        // A small send buffer, so that the file does not fit in the
        // kernel's buffers of a loopback connection.
        "write_timeout_secs = 2\nheader_read_timeout_secs = 3\nsend_buffer_bytes = 16384\n",
    );
    let public = lb.public_addr();
    // The console's largest file (about 540 KB), never read.
    let request =
        format!("GET /console/vendor/hls.js/hls.min.js HTTP/1.1\r\nHost: {public}\r\n\r\n");
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let mut s = connect_from("127.0.0.1", public, Some(4096)).await;
        s.write_all(request.as_bytes()).await.unwrap();
        stalled.push(s);
    }
    let started = std::time::Instant::now();
    let closed = "livebucket_connections_closed_total{reason=\"write_stalled\"}";
    wait_until(
        "the stalled readers' close",
        secs(10),
        millis(200),
        async || match lb.metric(closed) {
            n if n >= STALLED as u64 => Ok(()),
            n => Err(format!("{n} closed")),
        },
    )
    .await;
    assert!(
        started.elapsed() >= secs(2),
        "closed before the write timeout"
    );
    // Each got part of the file, then the close.
    for mut s in stalled {
        let got = read_until_closed(&mut s, secs(5))
            .await
            .expect("a stalled reader's connection is still open");
        assert!(
            got < 540_000,
            "a stalled reader got the whole file ({got} bytes)"
        );
    }

    // An idle keep-alive connection after a whole answer: closed after the
    // header-read timeout.
    let mut idle = connect_from("127.0.0.1", public, None).await;
    idle.write_all(format!("GET /console HTTP/1.1\r\nHost: {public}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 "));
    let answered = std::time::Instant::now();
    assert!(
        read_until_closed(&mut idle, secs(6)).await.is_some(),
        "an idle keep-alive connection is still open 6 s later"
    );
    assert!(answered.elapsed() >= secs(2), "closed before the timeout");
    assert!(lb.metric("livebucket_connections_closed_total{reason=\"header_timeout\"}") >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_peer_gets_its_cap_and_another_peer_is_still_served() {
    const CAP: usize = 8;
    let (_dir, lb) = start_alone(
        "lst-per-peer",
        &format!("max_connections_per_peer = {CAP}\n"),
    );
    let public = lb.public_addr();
    let mut held = Vec::new();
    for _ in 0..CAP + 4 {
        held.push(connect_from("127.0.0.2", public, None).await);
    }
    // livebucket accepts in order: the first CAP stay open, the rest are
    // closed at once.
    let mut open = 0;
    let mut closed = 0;
    for s in &mut held {
        match read_until_closed(s, millis(500)).await {
            Some(0) => closed += 1,
            Some(n) => panic!("an idle connection got {n} bytes"),
            None => open += 1,
        }
    }
    assert_eq!((open, closed), (CAP, 4), "(open, closed) from one peer");
    assert_eq!(
        lb.metric("livebucket_connections_closed_total{reason=\"max_connections_per_peer\"}"),
        4
    );
    // Another peer is served meanwhile.
    let mut other = connect_from("127.0.0.3", public, None).await;
    other
        .write_all(format!("GET /console HTTP/1.0\r\nHost: {public}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(secs(5), other.read_to_end(&mut answer))
        .await
        .expect("no answer to another peer")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.0 3") || answer.starts_with("HTTP/1.0 2"),
        "{answer}"
    );
    // Once the first peer lets connections go, it gets new ones.
    drop(held);
    wait_until(
        "the first peer's slots back",
        secs(5),
        millis(100),
        async || {
            let mut s = connect_from("127.0.0.2", public, None).await;
            s.write_all(format!("GET /console HTTP/1.0\r\nHost: {public}\r\n\r\n").as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(secs(2), s.read_to_end(&mut answer)).await;
            if answer.starts_with(b"HTTP/1.0 ") {
                Ok(())
            } else {
                Err("refused".to_string())
            }
        },
    )
    .await;
}
