//! The OSS LiveChannel REST API on the public listener, for Alibaba's SDKs
//! (`oss2`, …) and our own `livebucket channel` CLI.
//!
//! Thin: [`crate::oss`] resolves the bucket from the host or path, checks the
//! OSS V1 signature and decides the operation; [`crate::channels`] reads and
//! writes the records; this file only wires them and renders the answer.
//! Every refusal is OSS's error XML with an `x-oss-request-id`, logged here
//! with its precise reason (never a secret or signature). An unknown access
//! key id is answered exactly like a wrong signature.
//!
//! Authorisation: the signing key must be enabled and allowed to write the
//! bucket (`keys[].buckets`), the same rule as for pushes.
//!
//! GetLiveChannelStat also carries the channel's uploads parked on this node
//! ([`crate::pipeline::parked`]): the count, the S3 code and since when, in
//! livebucket's `LivebucketParkedUploads` element, so a key allowed on the
//! bucket (and the console signed in with it) learns that the store refuses
//! them. Only this node's: in a cluster, another node's parked uploads show
//! on that node's answers and in its `/healthz`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tracing::{info, warn};

use super::AppState;
use super::play::unix_now;
use crate::channels::ChannelError;
use crate::clock::unix_now_ms;
use crate::cluster::decide::Elsewhere;
use crate::config::{AccessKey, Config};
use crate::events::{Change, Event};
use crate::logfmt::Esc;
use crate::oss::channel::{self as model, ChannelRecord, LiveSession};
use crate::oss::error::OssError;
use crate::oss::route::{self, Addressing, Operation};
use crate::oss::xml;
use crate::sign::oss_v1;
use crate::vod::{self, Uris};

const XML: &str = "application/xml";

/// Everything not routed elsewhere on the public listener.
pub(crate) async fn api(
    State(app): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = crate::session::new_session_id()[..24].to_uppercase();
    let cfg = app.config();
    let head = method == Method::HEAD;
    let result = match axum::body::to_bytes(body, xml::MAX_CONFIG_BYTES).await {
        Ok(body) => handle(&app, &cfg, &method, &uri, &headers, &body).await,
        Err(_) => Err(OssError::EntityTooLarge {
            max: xml::MAX_CONFIG_BYTES,
        }),
    };
    match result {
        Ok(resp) => with_request_id(resp, &request_id),
        Err(e) => {
            let parts = e.parts();
            if parts.status >= 500 {
                warn!(request_id, error = %e, "OSS API request failed");
            }
            let status = StatusCode::from_u16(parts.status).unwrap_or(StatusCode::BAD_REQUEST);
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default();
            let body = if head {
                String::new()
            } else {
                xml::render_error(&parts, &request_id, host)
            };
            let resp = (status, [(header::CONTENT_TYPE, XML)], body).into_response();
            with_request_id(resp, &request_id)
        }
    }
}

fn with_request_id(mut resp: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(id) {
        resp.headers_mut().insert("x-oss-request-id", v);
    }
    resp
}

fn addressing(cfg: &Config) -> Addressing {
    Addressing {
        api_domain: cfg.api.domain.clone(),
        custom_domains: cfg
            .api
            .custom_domains
            .iter()
            .map(|(h, b)| (h.clone(), b.clone()))
            .collect(),
    }
}

async fn handle(
    app: &AppState,
    cfg: &Config,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, OssError> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let target = route::resolve(host, uri.path(), &addressing(cfg))?;
    let query = route::parse_query(uri.query().unwrap_or_default())?;
    let header_pairs: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_bytes()))
        .collect();
    let view = oss_v1::RequestView {
        method: method.as_str(),
        bucket: &target.bucket,
        object: &target.object,
        query: &query,
        headers: &header_pairs,
    };
    let key = authenticate(app, cfg, &view)?;
    // After authentication: an unsigned caller learns nothing from it.
    let md5 = headers.get("content-md5").map(|v| v.as_bytes());
    route::check_content_md5(md5, body).inspect_err(|e| {
        info!(reason = %e, key_id = %Esc(&key.id), "OSS API request refused");
    })?;
    let op = route::route(method.as_str(), &target.object, &query)?;
    execute(app, cfg, &key, &target.bucket, op, body).await
}

/// The key that signed the request, enabled and allowed on its bucket.
fn authenticate(
    app: &AppState,
    cfg: &Config,
    view: &oss_v1::RequestView<'_>,
) -> Result<AccessKey, OssError> {
    let refuse = |reason: &str, key_id: &str, e: OssError| {
        app.metrics.inc("livebucket_api_refused_total", "auth");
        info!(
            reason,
            key_id = %Esc(key_id),
            bucket = %Esc(view.bucket),
            "OSS API request refused"
        );
        e
    };
    let creds = oss_v1::parse(view).map_err(|e| refuse(&e.to_string(), "", e.into()))?;
    let key = cfg.key(creds.key_id());
    let now = unix_now() as i64;
    let window = Duration::from_secs(cfg.api.date_window_secs);
    let max_lifetime = Duration::from_secs(cfg.api.max_presigned_lifetime_secs);
    creds
        .verify(
            view,
            key.map(|k| k.secret.as_str()),
            now,
            window,
            max_lifetime,
        )
        .map_err(|e| refuse(&e.to_string(), creds.key_id(), e.into()))?;
    match key {
        Some(k) if !k.disabled && k.may_write(view.bucket) => Ok(k.clone()),
        _ => Err(refuse(
            "key disabled or not allowed on this bucket",
            creds.key_id(),
            OssError::AccessDenied("this access key may not manage this bucket".into()),
        )),
    }
}

fn internal(e: impl std::fmt::Display) -> OssError {
    warn!(error = %Esc(&e.to_string()), "OSS API storage failure");
    OssError::InternalError
}

impl From<ChannelError> for OssError {
    fn from(e: ChannelError) -> Self {
        match e {
            ChannelError::Conflict { .. } => {
                info!(error = %Esc(&e.to_string()), "OSS API change refused");
                OssError::ConcurrentUpdate
            }
            ChannelError::Store(_) | ChannelError::Corrupt { .. } => internal(e),
        }
    }
}

fn xml_ok(body: String) -> Response {
    ([(header::CONTENT_TYPE, XML)], body).into_response()
}

async fn existing(
    app: &AppState,
    key: &AccessKey,
    bucket: &str,
    channel: &str,
) -> Result<ChannelRecord, OssError> {
    app.channels
        .get(&key.id, bucket, channel)
        .await?
        .ok_or(OssError::NoSuchLiveChannel)
}

/// Refuses a change to a channel that is live here or, in cluster mode, on
/// another node; when etcd cannot tell, the change waits (503) rather than
/// risk changing a channel another node publishes.
async fn check_not_live(app: &AppState, bucket: &str, channel: &str) -> Result<(), OssError> {
    if app.sessions.live_of(bucket, channel).is_some() {
        return Err(OssError::ChannelStillLive);
    }
    let Some(cluster) = &app.cluster else {
        return Ok(());
    };
    match cluster.live_elsewhere(bucket, channel).await {
        Elsewhere::No => Ok(()),
        Elsewhere::Yes { .. } => Err(OssError::ChannelStillLive),
        Elsewhere::Unknown => Err(OssError::ServiceUnavailable(
            "whether the live channel is live on another node cannot be confirmed now; \
             retry shortly"
                .into(),
        )),
    }
}

async fn execute(
    app: &AppState,
    cfg: &Config,
    key: &AccessKey,
    bucket: &str,
    op: Operation,
    body: &Bytes,
) -> Result<Response, OssError> {
    let live = |channel: &str| app.sessions.live_of(bucket, channel);
    match op {
        Operation::PutLiveChannel { channel } => {
            model::validate_channel_name(&channel)?;
            let config = xml::parse_config(body)?;
            // The ladder is the config's: a record may only name its rungs.
            config.check_ladder(&cfg.renditions)?;
            check_not_live(app, bucket, &channel).await?;
            if let Some(s) = &config.snapshot {
                crate::names::validate_bucket(&s.dest_bucket)
                    .map_err(|e| OssError::InvalidArgument(format!("Snapshot DestBucket: {e}")))?;
                crate::snapshot::SnapshotPlan::new(s, key).map_err(|e| match e {
                    crate::snapshot::PlanError::BucketNotAllowed { .. } => OssError::AccessDenied(
                        "this access key may not write the snapshot's DestBucket".into(),
                    ),
                    other => OssError::InvalidArgument(other.to_string()),
                })?;
            }
            let (publish, play) = urls(cfg, bucket, &channel, &config.target.playlist_name);
            // A whole new record, whatever was there: written back under
            // the store's conditional rule like every change.
            let stored = app
                .channels
                .update(&key.id, bucket, &channel, |_| {
                    Ok::<_, OssError>(ChannelRecord {
                        name: channel.clone(),
                        config: config.clone(),
                        last_modified: unix_now() as i64,
                    })
                })
                .await?;
            app.events.emit(Event::channel_changed(
                bucket,
                &channel,
                Change::Created,
                stored.notify_topic(),
                unix_now_ms(),
            )); // events:
            Ok(xml_ok(xml::render_create_result(&publish, &play)))
        }
        Operation::ListLiveChannel(p) => {
            let (records, next) = app
                .channels
                .list(&key.id, bucket, &p.prefix, &p.marker, p.max_keys)
                .await?;
            let listed: Vec<xml::ListedChannel> = records
                .into_iter()
                .map(|r| {
                    let (publish_url, play_url) =
                        urls(cfg, bucket, &r.name, &r.config.target.playlist_name);
                    xml::ListedChannel {
                        name: r.name,
                        description: r.config.description,
                        status: r.config.status,
                        last_modified: r.last_modified,
                        publish_url,
                        play_url,
                    }
                })
                .collect();
            Ok(xml_ok(xml::render_list(&xml::ListResult {
                prefix: &p.prefix,
                marker: &p.marker,
                max_keys: p.max_keys,
                next_marker: next.as_deref(),
                channels: &listed,
            })))
        }
        Operation::GetLiveChannelInfo { channel } => {
            let r = existing(app, key, bucket, &channel).await?;
            Ok(xml_ok(xml::render_info(&r.config)))
        }
        Operation::DeleteLiveChannel { channel } => {
            let was = existing(app, key, bucket, &channel).await?;
            check_not_live(app, bucket, &channel).await?;
            app.channels.delete(&key.id, bucket, &channel).await?;
            app.events.emit(Event::channel_changed(
                bucket,
                &channel,
                Change::Deleted,
                was.notify_topic(),
                unix_now_ms(),
            )); // events:
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Operation::PutLiveChannelStatus { channel, status } => {
            // Applied to the record as stored when written back (another
            // change meanwhile is kept, not overwritten). A live publisher of
            // a disabled channel is dropped at its next on_update (nginx's
            // notify_update_timeout).
            let stored = app
                .channels
                .update(&key.id, bucket, &channel, |current| {
                    let mut r = current.ok_or(OssError::NoSuchLiveChannel)?;
                    r.config.status = status;
                    r.last_modified = unix_now() as i64;
                    Ok::<_, OssError>(r)
                })
                .await?;
            app.events.emit(Event::channel_changed(
                bucket,
                &channel,
                Change::status(status),
                stored.notify_topic(),
                unix_now_ms(),
            )); // events:
            Ok(StatusCode::OK.into_response())
        }
        Operation::GetLiveChannelStat { channel } => {
            let r = existing(app, key, bucket, &channel).await?;
            let session = match live(&channel) {
                // In a cluster another node may publish it.
                None => match &app.cluster {
                    Some(c) => c.remote_session(bucket, &channel).await,
                    None => None,
                },
                Some(s) => {
                    // Measured by nginx from the stream itself; without the
                    // page the answer is Live with no Video/Audio, as OSS
                    // gives just after a publisher connects.
                    let stat = app.stat.session_stat(&s.id).await;
                    Some(LiveSession {
                        connected: (s.started_ms / 1000) as i64,
                        remote_addr: s.addr.clone(),
                        video: stat.as_ref().and_then(|m| m.video.clone()),
                        audio: stat.and_then(|m| m.audio),
                    })
                }
            };
            // This node's parked uploads of the channel: the bucket's keys
            // learn that the store refuses them, and the S3 code (never its
            // message, a key or a URL).
            let parked = app.parked.of(bucket, &channel).map(|p| model::ParkedStat {
                uploads: p.uploads as u64,
                code: p.code,
                since: p.since as i64,
            });
            let stat = model::ChannelStat::new(r.config.status, session).with_parked(parked);
            Ok(xml_ok(xml::render_stat(&stat)))
        }
        Operation::GetLiveChannelHistory { channel } => {
            existing(app, key, bucket, &channel).await?;
            let records = app.channels.history(&key.id, bucket, &channel).await?;
            Ok(xml_ok(xml::render_history(&records)))
        }
        Operation::PostVodPlaylist {
            channel,
            playlist,
            range,
        } => {
            existing(app, key, bucket, &channel).await?;
            if playlist == crate::oss::channel::MASTER_PLAYLIST_NAME {
                return Err(OssError::InvalidArgument(format!(
                    "{playlist} is reserved for the channel's master playlist (renditions)"
                )));
            }
            if app
                .is_live_playlist(&key.id, bucket, &channel, &playlist)
                .await
            {
                return Err(OssError::InvalidArgument(format!(
                    "{playlist} is this channel's live playlist"
                )));
            }
            let text = vod_playlist(app, cfg, key, bucket, &channel, range).await?;
            app.store
                .put(
                    &key.id,
                    bucket,
                    &crate::layout::playlist_key(&channel, &playlist),
                    text.into_bytes(),
                    &crate::store::ObjectMeta::playlist("max-age=60"),
                )
                .await
                .map_err(internal)?;
            Ok(StatusCode::OK.into_response())
        }
        Operation::GetSnapshot { object } => {
            let jpeg = app
                .store
                .get(&key.id, bucket, &object)
                .await
                .map_err(|e| match e {
                    crate::store::StoreError::NotFound { .. } => OssError::NoSuchKey,
                    other => internal(other),
                })?;
            Ok((
                [
                    (header::CONTENT_TYPE, crate::store::SNAPSHOT_CONTENT_TYPE),
                    (header::CACHE_CONTROL, "private, max-age=5"),
                ],
                jpeg,
            )
                .into_response())
        }
        Operation::GetVodPlaylist { channel, range } => {
            existing(app, key, bucket, &channel).await?;
            let text = vod_playlist(app, cfg, key, bucket, &channel, range).await?;
            Ok(([(header::CONTENT_TYPE, "application/x-mpegURL")], text).into_response())
        }
    }
}

/// A VOD playlist with relative URIs (next to the fragments, as OSS writes
/// it), within the same bounds as livebucket's own VOD API.
async fn vod_playlist(
    app: &AppState,
    cfg: &Config,
    key: &AccessKey,
    bucket: &str,
    channel: &str,
    range: route::VodRange,
) -> Result<String, OssError> {
    let (frags, _, _permit) =
        super::vod::range_fragments(app, cfg, &key.id, bucket, channel, (range.start, range.end))
            .await
            .map_err(|e| match e {
                super::vod::RangeError::Busy => OssError::InvalidArgument(
                    "too many VOD playlists are being built; retry shortly".into(),
                ),
                super::vod::RangeError::Vod(e) => vod_error(e),
            })?;
    vod::render(bucket, channel, &frags, &Uris::Relative).map_err(vod_error)
}

fn vod_error(e: vod::VodError) -> OssError {
    match e {
        vod::VodError::Empty { .. }
        | vod::VodError::TooManyFragments { .. }
        | vod::VodError::BadRange(_) => OssError::InvalidArgument(e.to_string()),
        other => internal(other),
    }
}

/// `PublishUrls` and `PlayUrls` of a channel.
pub(crate) fn urls(cfg: &Config, bucket: &str, channel: &str, playlist: &str) -> (String, String) {
    let publish = cfg
        .api
        .publish_url
        .clone()
        .unwrap_or_else(|| match &cfg.auth.oss_live_domain {
            Some(d) => format!("rtmp://{{bucket}}.{d}/live"),
            None => "rtmp://127.0.0.1:1935/live".to_owned(),
        });
    let play = cfg.api.play_url.clone().unwrap_or_else(|| {
        format!(
            "{}/{{bucket}}",
            cfg.s3.viewer_endpoint().trim_end_matches('/')
        )
    });
    model::channel_urls(&publish, &play, bucket, channel, playlist)
}
