//! `[cluster]`: several livebucket nodes writing one bucket, coordinated
//! through etcd (see `crate::cluster`). Absent, livebucket runs alone and
//! talks to no coordinator.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, invalid};

/// `[cluster]`: where etcd is and who this node is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// etcd's client URLs, every member (`http://10.0.0.1:2379`); the client
    /// fails over between them.
    pub endpoints: Vec<String>,
    /// This node's name, unique in the cluster: it is written beside every
    /// channel the node holds and shown by `livebucket cluster status`.
    pub node_id: String,
    /// Prefix of every key livebucket writes in etcd, so several clusters
    /// (or other applications) may share one etcd.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Lifetime of the node's lease: a node that stops renewing it (dead, or
    /// cut off from etcd) loses its channels after this long, and stops
    /// writing their playlists by then.
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl_secs: u64,
    /// How long one etcd request may take before it counts as failed (the
    /// hooks wait for it; nginx's callback timeout is longer).
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Interval of the HTTP/2 keep-alive pings on the connection to etcd
    /// (a dead connection is noticed within this plus `request_timeout_ms`).
    /// At least 5 s: etcd answers pings more frequent than its
    /// `--grpc-keepalive-min-time` (5 s by default) with GOAWAY
    /// `too_many_pings`, which breaks every request and watch on the
    /// connection.
    #[serde(default = "default_keepalive_secs")]
    pub keepalive_secs: u64,
    /// PEM file of the CA that signed etcd's server certificates: the
    /// connection is TLS, and etcd's certificate must name the endpoint's
    /// host (an IP SAN for an IP). Required with `https://` endpoints, and
    /// only with them.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate livebucket presents to etcd (etcd's
    /// `--client-cert-auth`); with `key_file`, over TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// etcd user (etcd `auth enable`), with `password`: its role needs
    /// read-write on `prefix`. The token etcd hands out is renewed when it
    /// expires.
    #[serde(default)]
    pub username: Option<String>,
    /// The etcd user's password (never logged).
    #[serde(default)]
    pub password: Option<EtcdPassword>,
    /// This node's operator URL (`http://10.0.0.2:8091`), advertised in etcd
    /// for `livebucket cluster status` and for peers that forward channel
    /// statistics. Optional.
    #[serde(default)]
    pub advertise: Option<String>,
    /// The addresses (IPs or networks) of the other nodes: only they may ask
    /// this node's operator listener for a channel's statistics
    /// (`/cluster/v1/stat/…`); any other TCP peer gets 403. Loopback by
    /// default (every node on one host); list the nodes' networks, e.g.
    /// `["10.0.0.0/24"]`.
    #[serde(default = "default_peers_allow")]
    pub peers_allow: Vec<ipnet::IpNet>,
}

fn default_peers_allow() -> Vec<ipnet::IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// `cluster.password`, kept out of `Debug` output.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct EtcdPassword(pub String);

impl std::fmt::Debug for EtcdPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

fn default_prefix() -> String {
    "/livebucket/".into()
}

fn default_lease_ttl() -> u64 {
    10
}

fn default_request_timeout_ms() -> u64 {
    1500
}

fn default_keepalive_secs() -> u64 {
    10
}

pub(crate) fn validate(c: &ClusterConfig) -> Result<(), ConfigError> {
    if c.endpoints.is_empty() {
        return Err(invalid(
            "cluster.endpoints",
            "must list etcd's client URLs, e.g. [\"http://127.0.0.1:2379\"]",
        ));
    }
    for e in &c.endpoints {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            return Err(invalid(
                "cluster.endpoints",
                "must be http:// or https:// URLs, e.g. http://127.0.0.1:2379",
            ));
        }
    }
    if c.node_id.is_empty()
        || c.node_id.len() > 64
        || !c
            .node_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(invalid(
            "cluster.node_id",
            "must be 1 to 64 characters of A-Z a-z 0-9 . _ -, unique in the cluster",
        ));
    }
    if !c.prefix.starts_with('/') || !c.prefix.ends_with('/') {
        return Err(invalid(
            "cluster.prefix",
            "must start and end with '/', e.g. \"/livebucket/\"",
        ));
    }
    if !(2..=300).contains(&c.lease_ttl_secs) {
        return Err(invalid(
            "cluster.lease_ttl_secs",
            "must be 2 to 300 seconds (renewed every third of it)",
        ));
    }
    if !(100..=5000).contains(&c.request_timeout_ms) {
        return Err(invalid(
            "cluster.request_timeout_ms",
            "must be 100 to 5000 ms (nginx waits for on_publish meanwhile)",
        ));
    }
    let https = c
        .endpoints
        .iter()
        .filter(|e| e.starts_with("https://"))
        .count();
    if https != 0 && https != c.endpoints.len() {
        return Err(invalid(
            "cluster.endpoints",
            "must be all https:// (TLS, with cluster.ca_file) or all http://",
        ));
    }
    match (https != 0, &c.ca_file) {
        (true, None) => {
            return Err(invalid(
                "cluster.ca_file",
                "is required with https:// endpoints: the PEM file of the CA that signed etcd's certificates",
            ));
        }
        (false, Some(_)) => {
            return Err(invalid(
                "cluster.ca_file",
                "needs https:// endpoints (TLS); with http:// nothing is encrypted",
            ));
        }
        _ => {}
    }
    match (&c.cert_file, &c.key_file) {
        (Some(_), None) | (None, Some(_)) => {
            return Err(invalid(
                "cluster.cert_file",
                "and cluster.key_file go together (a client certificate and its key)",
            ));
        }
        (Some(_), Some(_)) if https == 0 => {
            return Err(invalid(
                "cluster.cert_file",
                "needs https:// endpoints and cluster.ca_file (a client certificate is presented over TLS)",
            ));
        }
        _ => {}
    }
    match (&c.username, &c.password) {
        (Some(u), Some(_)) if u.is_empty() => {
            return Err(invalid("cluster.username", "must not be empty"));
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(invalid(
                "cluster.username",
                "and cluster.password go together (an etcd user)",
            ));
        }
        _ => {}
    }
    if !(5..=300).contains(&c.keepalive_secs) {
        return Err(invalid(
            "cluster.keepalive_secs",
            "must be 5 to 300 seconds (etcd refuses keep-alive pings more often than every 5 s by default)",
        ));
    }
    if let Some(a) = &c.advertise
        && !(a.starts_with("http://") || a.starts_with("https://"))
    {
        return Err(invalid(
            "cluster.advertise",
            "must be this node's operator URL, e.g. http://10.0.0.2:8091",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::for_tests;

    fn err(extra: &str) -> String {
        let text = format!(
            "[hooks]\nsecret = \"hooks-secret-for-the-unit-tests-0001\"\n\
             [nginx]\nhls_dir = \"/dev/shm/livebucket/hls\"\n\
             [s3]\nendpoint = \"http://127.0.0.1:3900\"\n{extra}"
        );
        match crate::config::Config::parse(&text, std::path::Path::new("t.toml")) {
            Ok(_) => panic!("accepted {extra}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn absent_means_single_node() {
        assert!(for_tests("").cluster.is_none());
    }

    #[test]
    fn defaults() {
        let c = for_tests("[cluster]\nendpoints = [\"http://127.0.0.1:2379\"]\nnode_id = \"a\"\n");
        let c = c.cluster.as_ref().unwrap();
        assert_eq!(c.prefix, "/livebucket/");
        assert_eq!(c.lease_ttl_secs, 10);
        assert_eq!(c.keepalive_secs, 10);
        assert!(
            c.peers_allow
                .iter()
                .any(|n| n.contains(&"127.0.0.1".parse::<std::net::IpAddr>().unwrap()))
        );
    }

    #[test]
    fn errors_name_the_field() {
        let e = err("[cluster]\nendpoints = []\nnode_id = \"a\"\n");
        assert!(e.contains("cluster.endpoints"), "{e}");
        let e = err("[cluster]\nendpoints = [\"http://x:1\"]\nnode_id = \"a b\"\n");
        assert!(e.contains("cluster.node_id"), "{e}");
        let e =
            err("[cluster]\nendpoints = [\"http://x:1\"]\nnode_id = \"a\"\nlease_ttl_secs = 1\n");
        assert!(e.contains("cluster.lease_ttl_secs"), "{e}");
        let e = err("[cluster]\nendpoints = [\"http://x:1\"]\nnode_id = \"a\"\nprefix = \"lb\"\n");
        assert!(e.contains("cluster.prefix"), "{e}");
        let e = err("[cluster]\nendpoints = [\"x:1\"]\nnode_id = \"a\"\n");
        assert!(e.contains("cluster.endpoints"), "{e}");
        let e =
            err("[cluster]\nendpoints = [\"http://x:1\"]\nnode_id = \"a\"\nkeepalive_secs = 2\n");
        assert!(e.contains("cluster.keepalive_secs"), "{e}");
    }

    #[test]
    fn tls_and_users() {
        let base = "[cluster]\nnode_id = \"a\"\n";
        let e = err(&format!("{base}endpoints = [\"https://x:1\"]\n"));
        assert!(e.contains("cluster.ca_file"), "{e}");
        let e = err(&format!(
            "{base}endpoints = [\"https://x:1\", \"http://y:1\"]\nca_file = \"/ca.pem\"\n"
        ));
        assert!(e.contains("cluster.endpoints"), "{e}");
        let e = err(&format!(
            "{base}endpoints = [\"http://x:1\"]\nca_file = \"/ca.pem\"\n"
        ));
        assert!(e.contains("cluster.ca_file"), "{e}");
        let e = err(&format!(
            "{base}endpoints = [\"https://x:1\"]\nca_file = \"/ca.pem\"\ncert_file = \"/c.pem\"\n"
        ));
        assert!(e.contains("cluster.cert_file"), "{e}");
        let e = err(&format!(
            "{base}endpoints = [\"http://x:1\"]\nusername = \"lb\"\n"
        ));
        assert!(e.contains("cluster.username"), "{e}");
        let ok = for_tests(&format!(
            "{base}endpoints = [\"https://x:1\"]\nca_file = \"/ca.pem\"\n\
             cert_file = \"/c.pem\"\nkey_file = \"/k.pem\"\n\
             username = \"lb\"\npassword = \"pw-secret\"\n"
        ));
        let c = ok.cluster.as_ref().unwrap();
        assert!(!format!("{c:?}").contains("pw-secret"));
    }
}
