//! What a cluster node tells the others, on its operator listener (never
//! public: it names publishers' streams): the stream statistics of a channel
//! it publishes, for GetLiveChannelStat asked of another node.
//!
//! Only the other nodes may ask (`cluster.peers_allow`); a node outside a
//! cluster answers 404 to everyone. Each answer reads nginx's stat page
//! through the shared [`crate::stat::StatSource`], at most once a second
//! whatever the request rate.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{Extensions, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::info;

use super::AppState;
use super::server::Peer;
use crate::cluster::keys::PeerStat;
use crate::config::ClusterConfig;

/// Whether a peer may ask for statistics: a node in a cluster answers the
/// other nodes (`cluster.peers_allow`) and local Unix-socket peers (the
/// socket's permissions decide who they are), nobody else.
pub(crate) fn may_ask(cluster: Option<&ClusterConfig>, peer: Option<SocketAddr>) -> bool {
    match (cluster, peer) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(c), Some(addr)) => crate::config::listen::ip_allowed(&c.peers_allow, addr.ip()),
    }
}

/// `GET /cluster/v1/stat/{bucket}/{channel}`: nginx's measurements of the
/// channel's live session here; 404 when it is not live on this node (or
/// this node is in no cluster), 403 to a peer that is not a node.
pub(crate) async fn stat(
    State(app): State<Arc<AppState>>,
    Path((bucket, channel)): Path<(String, String)>,
    extensions: Extensions,
) -> Response {
    let config = app.config();
    let Some(cluster) = config.cluster.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let peer = extensions.get::<Peer>().and_then(|p| p.0);
    if !may_ask(Some(cluster), peer) {
        app.metrics.inc(
            "livebucket_requests_refused_total",
            "cluster_peer_not_allowed",
        );
        info!(
            peer = ?peer.map(|a| a.ip()),
            reason = "cluster_peer_not_allowed",
            "stat request refused: the peer is not in cluster.peers_allow"
        );
        return (StatusCode::FORBIDDEN, "forbidden\n").into_response();
    }
    let Some(s) = app.sessions.live_of(&bucket, &channel) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let m = app.stat.session_stat(&s.id).await;
    Json(PeerStat {
        video: m.as_ref().and_then(|m| m.video.clone()),
        audio: m.and_then(|m| m.audio),
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_other_nodes_may_ask() {
        let cluster = crate::config::for_tests(
            "[cluster]\nendpoints = [\"http://127.0.0.1:2379\"]\nnode_id = \"a\"\n\
             peers_allow = [\"10.0.0.0/24\"]\n",
        )
        .cluster
        .clone()
        .unwrap();
        let from = |a: &str| Some(a.parse::<SocketAddr>().unwrap());
        assert!(may_ask(Some(&cluster), from("10.0.0.7:40000")));
        assert!(may_ask(Some(&cluster), from("[::ffff:10.0.0.7]:40000")));
        assert!(!may_ask(Some(&cluster), from("10.0.1.7:40000")));
        assert!(!may_ask(Some(&cluster), from("127.0.0.1:40000")));
        assert!(may_ask(Some(&cluster), None), "a Unix-socket peer");
        assert!(
            !may_ask(None, from("127.0.0.1:40000")),
            "not a cluster node"
        );
        assert!(!may_ask(None, None));
    }
}
