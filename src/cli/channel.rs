//! `livebucket channel create|ls|get|status|stat|history|rm`: the OSS
//! LiveChannel API of a running livebucket, called as Alibaba's SDKs call it
//! (path-style requests signed with OSS signature V1), so the CLI exercises
//! exactly what SDK users get.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use http_body_util::BodyExt;
use percent_encoding::{AsciiSet, utf8_percent_encode};
use quick_xml::events::Event;

use super::args::{KeyArgs, signing_key};
use livebucket::config::{Config, ListenAddr};
use livebucket::oss::channel::{HlsTarget, LiveChannelConfig, Renditions};
use livebucket::oss::xml;
use livebucket::outbound;
use livebucket::sign::encode::UNRESERVED;
use livebucket::sign::oss_v1;
use livebucket::sign::url::{parse_port, split_host_port};
use livebucket::store::errors::ErrorBody;

#[derive(Subcommand)]
pub(super) enum Channel {
    /// Create (or overwrite) a channel: PutLiveChannel.
    Create {
        #[command(flatten)]
        at: Target,
        #[arg(long, default_value = "")]
        description: String,
        /// Create it disabled (pushes refused).
        #[arg(long)]
        disabled: bool,
        /// Seconds per fragment (1–100).
        #[arg(long, default_value_t = 5)]
        frag_duration: u32,
        /// Fragments in the live playlist (1–100; livebucket keeps at least 3).
        #[arg(long, default_value_t = 3)]
        frag_count: u32,
        /// The live playlist's object name.
        #[arg(long, default_value = "playlist.m3u8")]
        playlist_name: String,
        /// Delete this channel's recordings once they are this many seconds
        /// old (livebucket's `RetentionSeconds`; 0 keeps them forever;
        /// default: the server's `[retention] default_period_secs`).
        #[arg(long)]
        retention_secs: Option<u64>,
        /// The `[renditions]` rungs this channel's pushes are transcoded to,
        /// comma-separated (`720p,360p`), or `none` for the source only
        /// (livebucket's `LivebucketRenditions`; default: the server's
        /// `[renditions] default`). The server refuses rungs its ladder does
        /// not have.
        #[arg(long)]
        renditions: Option<String>,
    },
    /// List channels: ListLiveChannel.
    Ls {
        #[command(flatten)]
        api: Api,
        #[arg(long)]
        bucket: String,
        #[arg(long, default_value = "")]
        prefix: String,
        #[arg(long, default_value = "")]
        marker: String,
        #[arg(long, default_value_t = 100)]
        max_keys: u16,
    },
    /// A channel's configuration: GetLiveChannelInfo.
    Get {
        #[command(flatten)]
        at: Target,
    },
    /// Enable or disable a channel: PutLiveChannelStatus. Disabling drops a
    /// live publisher at nginx's next on_update.
    Status {
        #[command(flatten)]
        at: Target,
        /// enabled or disabled
        status: String,
    },
    /// Who is live, with what: GetLiveChannelStat.
    Stat {
        #[command(flatten)]
        at: Target,
    },
    /// The last pushes: GetLiveChannelHistory.
    History {
        #[command(flatten)]
        at: Target,
    },
    /// Delete a channel (its media stays): DeleteLiveChannel.
    Rm {
        #[command(flatten)]
        at: Target,
    },
}

#[derive(Args)]
pub(super) struct Api {
    #[command(flatten)]
    key: KeyArgs,
    /// livebucket's public URL (default: `listen.public` of --config).
    #[arg(long)]
    api_url: Option<String>,
}

#[derive(Args)]
pub(super) struct Target {
    #[command(flatten)]
    api: Api,
    #[arg(long)]
    bucket: String,
    #[arg(long)]
    channel: String,
}

/// Path segments and query values: unreserved characters stay, the rest is
/// encoded (oss2 quotes keys with `safe=''`).
const SEGMENT: &AsciiSet = UNRESERVED;

pub(super) async fn run(cmd: Channel) -> anyhow::Result<()> {
    match cmd {
        Channel::Create {
            at,
            description,
            disabled,
            frag_duration,
            frag_count,
            playlist_name,
            retention_secs,
            renditions,
        } => {
            let config = LiveChannelConfig {
                description,
                status: if disabled {
                    livebucket::oss::channel::ChannelStatus::Disabled
                } else {
                    livebucket::oss::channel::ChannelStatus::Enabled
                },
                target: HlsTarget {
                    frag_duration,
                    frag_count,
                    playlist_name,
                    low_latency: None,
                },
                snapshot: None,
                retention_secs,
                renditions: renditions.as_deref().and_then(Renditions::parse),
            };
            config.validate().map_err(|e| anyhow::anyhow!("{}", e))?;
            let body = xml::render_info(&config);
            let out = call(
                &at.api,
                &at.bucket,
                &at.channel,
                &[("live", "")],
                "PUT",
                body,
            )
            .await?;
            print_xml(&out);
        }
        Channel::Ls {
            api,
            bucket,
            prefix,
            marker,
            max_keys,
        } => {
            let max = max_keys.to_string();
            let query = [
                ("live", ""),
                ("prefix", prefix.as_str()),
                ("marker", marker.as_str()),
                ("max-keys", max.as_str()),
            ];
            print_xml(&call(&api, &bucket, "", &query, "GET", String::new()).await?);
        }
        Channel::Get { at } => print_xml(&get(&at, &[("live", "")]).await?),
        Channel::Status { at, status } => {
            if !matches!(status.as_str(), "enabled" | "disabled") {
                bail!("status must be enabled or disabled");
            }
            let q = [("live", ""), ("status", status.as_str())];
            call(&at.api, &at.bucket, &at.channel, &q, "PUT", String::new()).await?;
            println!("{}/{}: {status}", at.bucket, at.channel);
        }
        Channel::Stat { at } => print_xml(&get(&at, &[("live", ""), ("comp", "stat")]).await?),
        Channel::History { at } => {
            print_xml(&get(&at, &[("live", ""), ("comp", "history")]).await?)
        }
        Channel::Rm { at } => {
            call(
                &at.api,
                &at.bucket,
                &at.channel,
                &[("live", "")],
                "DELETE",
                String::new(),
            )
            .await?;
            println!("deleted {}/{} (its media stays)", at.bucket, at.channel);
        }
    }
    Ok(())
}

async fn get(at: &Target, query: &[(&str, &str)]) -> anyhow::Result<String> {
    call(
        &at.api,
        &at.bucket,
        &at.channel,
        query,
        "GET",
        String::new(),
    )
    .await
}

/// One signed request; the body of a 2xx answer, else the OSS error as the
/// error.
async fn call(
    api: &Api,
    bucket: &str,
    object: &str,
    query: &[(&str, &str)],
    method: &str,
    body: String,
) -> anyhow::Result<String> {
    let (key, config) = signing_key(&api.key, bucket)?;
    let base = api_url(api.api_url.as_deref(), config.as_ref())?;
    let (host, port) = host_port(&base)?;
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let content_type = if body.is_empty() {
        ""
    } else {
        "application/xml"
    };
    let headers: Vec<(&str, &[u8])> = vec![
        ("date", date.as_bytes()),
        ("content-type", content_type.as_bytes()),
    ];
    let query_owned: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let view = oss_v1::RequestView {
        method,
        bucket,
        object,
        query: &query_owned,
        headers: &headers,
    };
    let authorization = oss_v1::authorization_header(&key.id, &key.secret, &view)
        .map_err(|e| anyhow::anyhow!("cannot sign the request: {e}"))?;
    let mut path = format!("/{}/{}", bucket, utf8_percent_encode(object, SEGMENT));
    let q: Vec<String> = query
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                (*k).to_owned()
            } else {
                format!("{k}={}", utf8_percent_encode(v, SEGMENT))
            }
        })
        .collect();
    path = format!("{path}?{}", q.join("&"));
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("host", format!("{host}:{port}"))
        .header("date", &date)
        .header("authorization", authorization);
    if !content_type.is_empty() {
        req = req.header("content-type", content_type);
    }
    let req = req.body(outbound::full(body))?;
    let client = outbound::plain()?;
    let resp = tokio::time::timeout(Duration::from_secs(60), client.send(req))
        .await
        .context("no answer within 60 s")?
        .with_context(|| format!("{method} {base}{path}"))?;
    let status = resp.status();
    let text = String::from_utf8_lossy(&resp.into_body().collect().await?.to_bytes()).into_owned();
    if !status.is_success() {
        let error = ErrorBody::parse(text.as_bytes());
        let code = error.code.unwrap_or_else(|| status.to_string());
        let message = error.message.unwrap_or_default();
        bail!("{method} {path}: {code}: {message}");
    }
    Ok(text)
}

/// `http://host:port` of the API: the flag, or the config's public listener.
fn api_url(flag: Option<&str>, config: Option<&Config>) -> anyhow::Result<String> {
    if let Some(u) = flag {
        return Ok(u.trim_end_matches('/').to_owned());
    }
    match config.map(|c| &c.listen.public) {
        Some(ListenAddr::Tcp(a)) => Ok(format!("http://{a}")),
        _ => bail!("give --api-url (livebucket's public URL, e.g. http://127.0.0.1:8080)"),
    }
}

fn host_port(base: &str) -> anyhow::Result<(String, u16)> {
    let rest = base
        .strip_prefix("http://")
        .context("--api-url must be http://HOST:PORT (put TLS in front of livebucket)")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) =
        split_host_port(authority).map_err(|e| anyhow::anyhow!("bad host in --api-url: {e}"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    match port {
        Some(p) => Ok((
            host,
            parse_port(p).map_err(|e| anyhow::anyhow!("bad port in --api-url: {e}"))?,
        )),
        None => Ok((host, 80)),
    }
}

/// An XML answer as an indented outline: elements with text as
/// `Name: text` (the whole text, entities resolved), others as headings.
fn print_xml(text: &str) {
    print!("{}", outline(text));
}

fn outline(text: &str) -> String {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut out = String::new();
    let mut depth = 0usize;
    // The element just opened, and the text read inside it so far.
    let mut pending: Option<(String, String)> = None;
    let indent = |d: usize| "  ".repeat(d.saturating_sub(1));
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                if let Some((open, _)) = pending.take() {
                    out.push_str(&format!("{}{open}\n", indent(depth)));
                }
                depth += 1;
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                pending = Some((name, String::new()));
            }
            Ok(Event::Text(t)) => {
                if let (Some((_, text)), Ok(piece)) = (pending.as_mut(), t.decode()) {
                    text.push_str(&piece);
                }
            }
            Ok(Event::GeneralRef(r)) => {
                if let Some((_, text)) = pending.as_mut() {
                    let name = r.decode().unwrap_or_default();
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => text.push(c),
                        _ => text.push_str(
                            quick_xml::escape::resolve_predefined_entity(&name).unwrap_or(""),
                        ),
                    }
                }
            }
            Ok(Event::Empty(e)) => {
                if let Some((open, _)) = pending.take() {
                    out.push_str(&format!("{}{open}\n", indent(depth)));
                }
                out.push_str(&format!(
                    "{}{}:\n",
                    indent(depth + 1),
                    String::from_utf8_lossy(e.name().as_ref())
                ));
            }
            Ok(Event::End(_)) => {
                if let Some((open, text)) = pending.take() {
                    let text = text.trim();
                    if text.is_empty() {
                        out.push_str(&format!("{}{open}:\n", indent(depth)));
                    } else {
                        out.push_str(&format!("{}{open}: {text}\n", indent(depth)));
                    }
                }
                depth = depth.saturating_sub(1);
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn outlines_keep_whole_texts() {
        let xml = "<LiveChannel>\n  <Description>Tom &amp; Jerry&#39;s</Description>\n  <Status>enabled</Status><Empty/>\n</LiveChannel>";
        assert_eq!(
            super::outline(xml),
            "LiveChannel\n  Description: Tom & Jerry's\n  Status: enabled\n  Empty:\n"
        );
    }
}
