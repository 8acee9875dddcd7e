//! Several ingest nodes on one bucket: a [`Node`] is nginx-rtmp + livebucket
//! with its own directories (its HLS directory on a tmpfs of its own) and
//! `[cluster]` pointing at a real etcd; a [`Balancer`] is nginx's `stream`
//! module in front of the nodes' RTMP ports (libnginx-mod-stream), as an
//! operator would put an RTMP TCP load balancer; a [`ChaosProxy`] sits
//! between one node and etcd and can cut that node off.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use super::garage::{Garage, Key};
use super::livebucket::{ConfigParams, Livebucket, config_toml};
use super::nginx::Nginx;
use super::process::{Proc, Stop, run};
use super::store::TestStore;
use super::tmpfs::Tmpfs;
use super::{BUCKET, TestDir, free_addr};

/// The lease TTL the nodes run with: a dead node's channels free after it.
pub const LEASE_TTL_SECS: u64 = 3;

pub struct Node {
    pub name: String,
    pub livebucket: Livebucket,
    pub nginx: Nginx,
    pub hls_dir: PathBuf,
    pub state_dir: PathBuf,
    hooks_url: String,
    ports: (u16, u16),
    /// After the processes: unmounted once they are gone.
    _tmpfs: Tmpfs,
    pub dir: TestDir,
}

impl Node {
    /// Starts nginx and livebucket for node `name`, storing into [`BUCKET`]
    /// of `garage` with its key, coordinating through etcd at `endpoints`
    /// (`["http://…", …]`). `extra` is more livebucket config (whole tables).
    pub fn start(name: &str, garage: &Garage, endpoints: &str, extra: &str) -> Node {
        Node::start_with(name, garage, endpoints, "", extra)
    }

    /// [`Node::start`] with `cluster` (lines) added to `[cluster]`; a
    /// `lease_ttl_secs` there replaces [`LEASE_TTL_SECS`].
    pub fn start_with(
        name: &str,
        garage: &Garage,
        endpoints: &str,
        cluster: &str,
        extra: &str,
    ) -> Node {
        Node::start_at(
            name,
            garage.endpoint(),
            garage.key(),
            endpoints,
            cluster,
            extra,
        )
    }

    /// [`Node::start`] on any [`TestStore`] (Garage or RGW).
    pub fn start_on(name: &str, store: &TestStore, endpoints: &str, extra: &str) -> Node {
        Node::start_at(name, store.endpoint(), store.key(), endpoints, "", extra)
    }

    fn start_at(
        name: &str,
        s3_endpoint: &str,
        key: &Key,
        endpoints: &str,
        cluster: &str,
        extra: &str,
    ) -> Node {
        let dir = TestDir::new(&format!("cluster-{name}"));
        let tmpfs = Tmpfs::mount(&format!("cluster-{name}"), "128m");
        let hls_dir = tmpfs.path().join("hls");
        let listen = free_addr();
        let hooks_url = format!("http://{listen}");
        let nginx = Nginx::start(&dir, &hooks_url, &hls_dir);
        let state_dir = dir.subdir("state");
        // `cluster` may set its own TTL.
        let ttl = if cluster.contains("lease_ttl_secs") {
            String::new()
        } else {
            format!("lease_ttl_secs = {LEASE_TTL_SECS}\n")
        };
        let extra = format!(
            "[cluster]\nendpoints = {endpoints}\nnode_id = \"{name}\"\n\
             {ttl}request_timeout_ms = 700\n\
             advertise = \"http://@OPERATOR@\"\n{cluster}\n{extra}"
        );
        let config = config_toml(&ConfigParams {
            listen,
            stat_url: Some(&nginx.stat_url()),
            state_dir: &state_dir,
            hls_dir: &hls_dir,
            relay_url: &nginx.relay_url(),
            s3_endpoint,
            keys: &[(key, &[BUCKET])],
            extra: &extra,
        });
        // The node advertises its operator listener, whose port
        // `config_toml` picked.
        let table: toml::Table = toml::from_str(&config.replace("@OPERATOR@", "x")).unwrap();
        let operator = table["listen"]["operator"].as_str().unwrap().to_owned();
        let config = config.replace("@OPERATOR@", &operator);
        let livebucket = Livebucket::start(&dir, &config);
        Node {
            name: name.to_owned(),
            ports: (nginx.rtmp_port(), nginx.stat_port()),
            livebucket,
            nginx,
            hls_dir,
            state_dir,
            hooks_url,
            _tmpfs: tmpfs,
            dir,
        }
    }

    /// The machine dies: nginx and livebucket get SIGKILL. What nginx wrote
    /// stays on the node's tmpfs for [`Node::restart`].
    pub fn kill9(&mut self) {
        self.livebucket.kill9();
        self.nginx.kill9();
    }

    /// nginx on the same ports, then livebucket with the same config.
    pub fn restart(&mut self) {
        self.nginx = Nginx::start_on(&self.dir, &self.hooks_url, &self.hls_dir, self.ports, &[]);
        self.livebucket.restart();
    }

    /// `rtmp://127.0.0.1:PORT/live`
    pub fn push_base(&self) -> String {
        self.nginx.push_base()
    }

    /// Pushes this node approved.
    pub fn accepted(&self) -> u64 {
        self.livebucket.metric("livebucket_push_accepted_total")
    }
}

/// nginx `stream` proxying RTMP round-robin to the nodes.
pub struct Balancer {
    pub port: u16,
    _proc: Proc,
}

impl Balancer {
    pub fn start(dir: &TestDir, upstreams: &[u16]) -> Balancer {
        let prefix = dir.subdir("balancer");
        let port = super::free_port();
        let servers: String = upstreams
            .iter()
            .map(|p| format!("        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;\n"))
            .collect();
        let conf = format!(
            "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n\
             worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             stream {{\n    upstream rtmp {{\n{servers}    }}\n    server {{\n        \
             listen 127.0.0.1:{port};\n        proxy_pass rtmp;\n        \
             proxy_connect_timeout 1s;\n    }}\n}}\n",
            prefix = prefix.display()
        );
        let path = prefix.join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        run(
            "nginx -t (stream balancer)",
            Command::new("nginx")
                .arg("-t")
                .arg("-p")
                .arg(&prefix)
                .arg("-c")
                .arg(&path),
        );
        let mut cmd = Command::new("nginx");
        cmd.arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&path)
            .args(["-g", "daemon off;"]);
        let mut proc = Proc::spawn(
            "nginx stream balancer",
            cmd,
            &prefix.join("stderr.log"),
            Stop::Term {
                grace: Duration::from_secs(5),
            },
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            proc.assert_running();
            assert!(Instant::now() < deadline, "the balancer did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Balancer { port, _proc: proc }
    }

    /// `rtmp://127.0.0.1:PORT/live`
    pub fn push_base(&self) -> String {
        format!(
            "rtmp://127.0.0.1:{}/{}",
            self.port,
            super::nginx::PUBLIC_APP
        )
    }
}

/// A TCP proxy to one upstream that can cut every connection and refuse
/// new ones ([`ChaosProxy::cut`]) until [`ChaosProxy::restore`].
pub struct ChaosProxy {
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl ChaosProxy {
    /// Needs a tokio runtime.
    pub async fn start(upstream: SocketAddr) -> ChaosProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (o, c) = (open.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !o.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                c.lock().unwrap().push(task.abort_handle());
            }
        })
        .abort_handle();
        ChaosProxy {
            addr,
            open,
            conns,
            accept,
        }
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
