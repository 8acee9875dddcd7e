//! The connection to etcd and the single requests livebucket makes (take,
//! take over, check, release a channel key; put, delete, list; grant a
//! lease and read its time to live), each bounded by
//! `cluster.request_timeout_ms` (a hook waits for some of them; an etcd that
//! does not answer in time counts as unreachable). The streams are not here:
//! [`super::tasks`] runs the lease keep-alive stream, the lease revokes and
//! the watch on `changes/` over [`Etcd::client`].

use std::time::Duration;

use std::path::Path;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, PutOptions,
    TlsOptions, Txn, TxnOp, TxnOpResponse,
};

use crate::config::ClusterConfig;

use super::decide::{Held, KeyState, Last};
use super::keys::HolderValue;

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("etcd holds an unreadable value at {key}: {message}")]
    BadValue { key: String, message: String },
    /// A TLS file named in `[cluster]` cannot be read.
    #[error("cannot read {field} ({path}): {message}")]
    File {
        field: &'static str,
        path: String,
        message: String,
    },
}

/// A client with the per-request time limit.
#[derive(Clone)]
pub(crate) struct Etcd {
    client: Client,
    timeout: Duration,
}

impl Etcd {
    /// Connects as `[cluster]` says: every request bounded by
    /// `request_timeout_ms`; HTTP/2 keep-alive pings every `keepalive_secs`
    /// (etcd sends GOAWAY `too_many_pings` below its minimum, 5 s by
    /// default), each answered within the request timeout or the connection
    /// is made again; TLS with `ca_file` (and a client certificate with
    /// `cert_file`/`key_file`); as etcd user `username` (its token renewed
    /// when it expires). A member that is down is tried again at each
    /// request.
    pub(crate) async fn connect(cfg: &ClusterConfig) -> Result<Etcd, EtcdError> {
        let timeout = Duration::from_millis(cfg.request_timeout_ms);
        let mut options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(cfg.keepalive_secs), timeout);
        if let Some(ca) = &cfg.ca_file {
            let mut tls = TlsOptions::new()
                .ca_certificate(Certificate::from_pem(read("cluster.ca_file", ca)?));
            if let (Some(cert), Some(key)) = (&cfg.cert_file, &cfg.key_file) {
                tls = tls.identity(Identity::from_pem(
                    read("cluster.cert_file", cert)?,
                    read("cluster.key_file", key)?,
                ));
            }
            options = options.with_tls(tls);
        }
        if let (Some(user), Some(password)) = (&cfg.username, &cfg.password) {
            options = options
                .with_user(user.clone(), password.0.clone())
                .with_auto_token_refresh(true);
        }
        let client = bounded(timeout, Client::connect(&cfg.endpoints, Some(options))).await?;
        Ok(Etcd { client, timeout })
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    /// Who holds `key`, if anyone.
    pub(crate) async fn holder(&self, key: &str) -> Result<Option<Held>, EtcdError> {
        let mut c = self.client.clone();
        let resp = bounded(self.timeout, c.get(key, None)).await?;
        resp.kvs().first().map(|kv| held(key, kv)).transpose()
    }

    /// Creates `key` on `lease` if nobody holds it, and records the taker at
    /// `last` (no lease); the new epoch, or `None` when someone holds it.
    pub(crate) async fn take(
        &self,
        key: &str,
        last: &str,
        value: &HolderValue,
        lease: i64,
    ) -> Result<Option<i64>, EtcdError> {
        let txn = Txn::new()
            .when([Compare::version(key, CompareOp::Equal, 0)])
            .and_then([
                TxnOp::put(
                    key,
                    encode(value),
                    Some(PutOptions::new().with_lease(lease)),
                ),
                TxnOp::put(last, encode(value), None),
            ]);
        let mut c = self.client.clone();
        let resp = bounded(self.timeout, c.txn(txn)).await?;
        Ok(resp
            .succeeded()
            .then(|| resp.header().map(|h| h.revision()))
            .flatten())
    }

    /// Creates `key` with `value` on `lease` if it does not exist; its
    /// create revision, or `None` when it exists.
    pub(crate) async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: i64,
    ) -> Result<Option<i64>, EtcdError> {
        let txn = Txn::new()
            .when([Compare::version(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let mut c = self.client.clone();
        let resp = bounded(self.timeout, c.txn(txn)).await?;
        Ok(resp
            .succeeded()
            .then(|| resp.header().map(|h| h.revision()))
            .flatten())
    }

    /// Rewrites `key` (this node's) for a new session or onto a new lease,
    /// if it is still at `epoch`, and records the taker at `last`. Whether
    /// it was.
    pub(crate) async fn take_over(
        &self,
        key: &str,
        last: &str,
        epoch: i64,
        value: &HolderValue,
        lease: i64,
    ) -> Result<bool, EtcdError> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, epoch)])
            .and_then([
                TxnOp::put(
                    key,
                    encode(value),
                    Some(PutOptions::new().with_lease(lease)),
                ),
                TxnOp::put(last, encode(value), None),
            ]);
        let mut c = self.client.clone();
        Ok(bounded(self.timeout, c.txn(txn)).await?.succeeded())
    }

    /// Who took a channel last (its `last/` key), if recorded.
    pub(crate) async fn last(&self, key: &str) -> Result<Option<Last>, EtcdError> {
        let mut c = self.client.clone();
        let resp = bounded(self.timeout, c.get(key, None)).await?;
        resp.kvs()
            .first()
            .map(|kv| {
                let v: HolderValue =
                    serde_json::from_slice(kv.value()).map_err(|e| EtcdError::BadValue {
                        key: key.to_owned(),
                        message: e.to_string(),
                    })?;
                Ok(Last {
                    node: v.node,
                    session: v.session,
                })
            })
            .transpose()
    }

    /// Deletes `key` if it is still at `epoch`.
    pub(crate) async fn release(&self, key: &str, epoch: i64) -> Result<(), EtcdError> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, epoch)])
            .and_then([TxnOp::delete(key, None)]);
        let mut c = self.client.clone();
        bounded(self.timeout, c.txn(txn)).await?;
        Ok(())
    }

    /// The fence: one transaction that compares the key's create revision
    /// with `epoch` and reads the key either way.
    pub(crate) async fn check(&self, key: &str, epoch: i64) -> Result<KeyState, EtcdError> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, epoch)])
            .and_then([TxnOp::get(key, None)])
            .or_else([TxnOp::get(key, None)]);
        let mut c = self.client.clone();
        let resp = bounded(self.timeout, c.txn(txn)).await?;
        if resp.succeeded() {
            return Ok(KeyState::Ours);
        }
        for op in resp.op_responses() {
            if let TxnOpResponse::Get(g) = op
                && let Some(kv) = g.kvs().first()
            {
                return Ok(KeyState::Other(held(key, kv)?));
            }
        }
        Ok(KeyState::Absent)
    }

    pub(crate) async fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<i64>,
    ) -> Result<(), EtcdError> {
        let mut c = self.client.clone();
        let options = lease.map(|l| PutOptions::new().with_lease(l));
        bounded(self.timeout, c.put(key, value, options)).await?;
        Ok(())
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), EtcdError> {
        let mut c = self.client.clone();
        bounded(self.timeout, c.delete(key, None)).await?;
        Ok(())
    }

    /// Every (key, value) under `prefix`.
    pub(crate) async fn list(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>, i64)>, EtcdError> {
        let mut c = self.client.clone();
        let resp = bounded(
            self.timeout,
            c.get(prefix, Some(GetOptions::new().with_prefix())),
        )
        .await?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.value().to_vec(),
                    kv.lease(),
                )
            })
            .collect())
    }

    pub(crate) async fn grant(&self, ttl_secs: u64) -> Result<i64, EtcdError> {
        let mut c = self.client.clone();
        let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX);
        Ok(bounded(self.timeout, c.lease_grant(ttl, None)).await?.id())
    }

    /// Seconds left on `lease`; `None` if it expired.
    pub(crate) async fn time_to_live(&self, lease: i64) -> Result<Option<i64>, EtcdError> {
        let mut c = self.client.clone();
        let ttl = bounded(self.timeout, c.lease_time_to_live(lease, None))
            .await?
            .ttl();
        Ok((ttl > 0).then_some(ttl))
    }
}

fn read(field: &'static str, path: &Path) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path).map_err(|e| EtcdError::File {
        field,
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

async fn bounded<T>(
    timeout: Duration,
    f: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, EtcdError> {
    match tokio::time::timeout(timeout, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(EtcdError::Timeout(timeout)),
    }
}

pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Plain structs of strings and numbers: serialising cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

fn held(key: &str, kv: &etcd_client::KeyValue) -> Result<Held, EtcdError> {
    let v: HolderValue = serde_json::from_slice(kv.value()).map_err(|e| EtcdError::BadValue {
        key: key.to_owned(),
        message: e.to_string(),
    })?;
    Ok(Held {
        node: v.node,
        session: v.session,
        epoch: kv.create_revision(),
    })
}
