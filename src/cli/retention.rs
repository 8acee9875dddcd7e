//! `livebucket retention sweep [--dry-run]`: asks the running livebucket
//! (its operator listener, from `--config`) for one retention sweep now, and
//! prints its report: what was deleted, or in a dry run what would be. The
//! server sweeps, so the report knows which channels are live there and, in
//! cluster mode, anywhere.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use http_body_util::BodyExt;

use livebucket::config::{Config, ListenAddr};
use livebucket::outbound;

/// How long a sweep may take before the command gives up waiting (the
/// sweep itself goes on in the server).
const WAIT: Duration = Duration::from_secs(3600);

pub(super) async fn sweep(config: &Path, dry_run: bool) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let path = format!("/retention/sweep?dry_run={dry_run}");
    let req = |uri: String| {
        hyper::Request::builder()
            .method("POST")
            .uri(uri)
            .header("host", "localhost")
            .body(outbound::full(Vec::new()))
    };
    let answer = match &config.listen.operator {
        ListenAddr::Tcp(a) => {
            let client = outbound::plain()?;
            tokio::time::timeout(WAIT, client.send(req(format!("http://{a}{path}"))?)).await
        }
        ListenAddr::Unix(socket) => {
            tokio::time::timeout(WAIT, outbound::send_unix(socket, req(path.clone())?)).await
        }
    }
    .context("the sweep did not finish within an hour (it goes on in the server)")?
    .with_context(|| {
        format!(
            "POST {path} on the operator listener ({})",
            config.listen.operator
        )
    })?;
    let status = answer.status();
    let body = answer.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!("POST {path}: {status}: {}", String::from_utf8_lossy(&body));
    }
    println!("{}", String::from_utf8_lossy(&body));
    Ok(())
}
