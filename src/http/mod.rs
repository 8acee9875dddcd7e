//! livebucket's HTTP surfaces, one router each, never sharing a listener:
//! - hooks: nginx's callbacks at `/hooks/SECRET/on_publish|on_update|on_publish_done`,
//!   `/hooks/SECRET/on_relay` (`on_publish` of the internal HLS applications)
//!   and `/hooks/SECRET/on_play` (their `on_play`: the transcoders' plays);
//!   a request without the per-install secret gets 403 and changes nothing;
//! - public: `/play/…`, the VOD API and the OSS LiveChannel API, for
//!   viewers and API clients, and the web console at `/console/`;
//! - operator: `/metrics`, `/healthz`, `/readyz`, and in cluster mode the
//!   peers' `/cluster/v1/stat/…` ([`peer`]).
//!
//! Handlers stay thin: what they decide is in the modules they call (`auth`,
//! `session`, `channels`, `oss`, `vod`, `llhls`, the pipeline). [`server`]
//! runs each router with timeouts and connection caps.

pub(crate) mod console;
pub(crate) mod error;
pub(crate) mod hooks;
pub(crate) mod llplay;
pub(crate) mod oss;
pub(crate) mod peer;
pub(crate) mod play;
pub(crate) mod retention;
pub(crate) mod server;
pub(crate) mod signed;
pub(crate) mod vod;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use tokio::sync::Semaphore;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::info;

use crate::auth::callback::MAX_BODY_BYTES;
use crate::auth::hooks_secret::{HookSecrets, Matched};
use crate::auth::limiter::FailureLimiter;
use crate::auth::replay::PushReplay;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::{LiveCache, PipelineHandle};
use crate::session::Sessions;
use crate::store::Store;

pub(crate) struct AppState {
    config: RwLock<Arc<Config>>,
    /// The hooks secrets accepted now: the configured one, and the one a
    /// reload replaced during `hooks.previous_secret_grace_secs`.
    hooks_secrets: RwLock<HookSecrets>,
    pub sessions: Arc<Sessions>,
    pub pipeline: PipelineHandle,
    pub metrics: Arc<Metrics>,
    pub limiter: FailureLimiter,
    pub store: Store,
    pub live_cache: LiveCache,
    /// Push signatures already used, for `auth.one_time_push`.
    pub replay: PushReplay,
    /// One permit per VOD build in progress (`vod.max_concurrent_builds`).
    pub vod_builds: Arc<Semaphore>,
    /// `/play`'s render slots and signed copies of ended playlists (`[play]`).
    pub play: play::PlayLimits,
    /// Closed VOD ranges' fragments (see [`crate::vod::RangeCache`]).
    pub vod_ranges: crate::vod::RangeCache,
    /// Channel records (the OSS LiveChannel API's state).
    pub channels: Arc<crate::channels::ChannelStore>,
    /// The etcd coordination, when `[cluster]` is configured.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// nginx-rtmp's statistics page, for GetLiveChannelStat.
    pub stat: crate::stat::StatSource,
    /// The main runtime, for the S3 requests a callback makes (a channel
    /// record's lookup, a push recorded in its history): the connections
    /// they open stay there, and the hooks listener's own thread stays free
    /// for nginx's next callback.
    pub background: tokio::runtime::Handle,
    /// LL-HLS playlists of the channels this node publishes with parts.
    pub ll: Arc<crate::llhls::hub::Hub>,
    /// Stream and channel events (`[events]`); inert without endpoints.
    pub events: crate::events::Events,
    /// The retention sweep, when the server runs one.
    pub retention: Option<Arc<crate::retention::Retention>>,
    /// The pipeline's uploads parked on a final answer, by channel (shown
    /// in GetLiveChannelStat).
    pub parked: crate::pipeline::parked::ParkedUploads,
    /// Every push's transcoders (`[renditions]`).
    pub transcoders: crate::transcode::Transcoders,
}

impl AppState {
    pub(crate) fn new(
        config: Arc<Config>,
        sessions: Arc<Sessions>,
        pipeline: PipelineHandle,
        metrics: Arc<Metrics>,
        store: Store,
        live_cache: LiveCache,
        channels: Arc<crate::channels::ChannelStore>,
    ) -> AppState {
        AppState {
            limiter: FailureLimiter::from_config(&config.auth),
            replay: PushReplay::open(&config.state_dir.join("push-signatures.json")),
            vod_builds: Arc::new(Semaphore::new(config.vod.max_concurrent_builds)),
            play: play::PlayLimits::new(&config.play),
            vod_ranges: crate::vod::RangeCache::new(crate::vod::RANGE_CACHE_FRAGMENTS),
            channels,
            cluster: None,
            stat: crate::stat::StatSource::from_config(&config.nginx),
            background: tokio::runtime::Handle::current(),
            ll: Arc::new(crate::llhls::hub::Hub::new(
                config.play.max_blocking_reloads,
            )),
            events: crate::events::Events::disabled(),
            retention: None,
            parked: Default::default(),
            transcoders: crate::transcode::Transcoders::new(
                sessions.clone(),
                pipeline.clone(),
                metrics.clone(),
                tokio::runtime::Handle::current(),
            ),
            hooks_secrets: RwLock::new(HookSecrets::new(config.hooks_secret())),
            config: RwLock::new(config),
            sessions,
            pipeline,
            metrics,
            store,
            live_cache,
        }
    }

    /// Cluster mode: the hooks coordinate through `cluster`.
    pub(crate) fn with_cluster(
        mut self,
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> AppState {
        if let Some(c) = &cluster {
            self.transcoders.continue_in(c.clone(), self.store.clone());
        }
        self.cluster = cluster;
        self
    }

    /// Emits stream and channel events through `events`.
    pub(crate) fn with_events(mut self, events: crate::events::Events) -> AppState {
        self.events = events;
        self
    }

    /// The retention sweep (its reloads and `POST /retention/sweep`).
    pub(crate) fn with_retention(
        mut self,
        retention: Arc<crate::retention::Retention>,
    ) -> AppState {
        self.retention = Some(retention);
        self
    }

    /// Shares the pipeline's LL-HLS hub.
    pub(crate) fn with_ll(mut self, ll: Arc<crate::llhls::hub::Hub>) -> AppState {
        self.ll = ll;
        self
    }

    /// Shares the pipeline's record of parked uploads.
    pub(crate) fn with_parked(
        mut self,
        parked: crate::pipeline::parked::ParkedUploads,
    ) -> AppState {
        self.parked = parked;
        self
    }

    pub(crate) fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Swaps in a reloaded configuration; live streams are untouched, and
    /// the next `on_update` of each checks its key against the new one. The
    /// failure limiter takes the new policy and keeps what it counted. A
    /// changed hooks secret is accepted at once, and the previous one for
    /// `hooks.previous_secret_grace_secs` more (nginx calls with it until it
    /// is reloaded). Listener addresses and limits take a restart.
    pub(crate) fn set_config(&self, config: Arc<Config>) {
        self.limiter.reconfigure(&config.auth);
        let grace = Duration::from_secs(config.hooks.previous_secret_grace_secs);
        let mut secrets = self
            .hooks_secrets
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if secrets.rotate(config.hooks_secret(), grace, Instant::now()) {
            info!(
                grace_secs = grace.as_secs(),
                "hooks secret changed; the previous one is accepted for grace_secs: reload nginx with the new one"
            );
        }
        drop(secrets);
        if let Some(r) = &self.retention {
            r.set_config(config.clone());
        }
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// A VOD build slot, or `None` (counted) when `vod.max_concurrent_builds`
    /// are in progress. Held while the fragment list is found (and, for a
    /// stored playlist, rendered), never while a body is streamed.
    pub(crate) fn vod_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let permit = self.vod_builds.clone().try_acquire_owned().ok();
        if permit.is_none() {
            self.metrics.inc("livebucket_vod_refused_total", "busy");
        }
        permit
    }

    /// Whether `name` is (or was configured as) a live playlist of the
    /// channel, which no VOD playlist may replace: `index.m3u8`, the
    /// playlist of any session livebucket knows for it, or its channel's
    /// `PlaylistName`.
    pub(crate) async fn is_live_playlist(
        &self,
        key_id: &str,
        bucket: &str,
        channel: &str,
        name: &str,
    ) -> bool {
        name == crate::names::DEFAULT_PLAYLIST
            || self
                .sessions
                .playlists_of(bucket, channel)
                .iter()
                .any(|p| p == name)
            || self
                .channels
                .get(key_id, bucket, channel)
                .await
                .ok()
                .flatten()
                .is_some_and(|r| r.config.target.playlist_name == name)
    }

    /// Whether the on-disk spool is past its high-water mark.
    pub(crate) fn spool_full(&self) -> bool {
        let cfg = self.config();
        let dir = cfg.spool_dir();
        let full = crate::pipeline::capture::fs_usage(&dir)
            .or_else(|_| crate::pipeline::capture::fs_usage(&cfg.state_dir))
            .is_ok_and(|u| u >= cfg.spool.spool_high_water);
        self.metrics
            .gauge_set("livebucket_spool_full", i64::from(full));
        if full {
            tracing::error!(
                spool = %dir.display(),
                high_water = cfg.spool.spool_high_water,
                "SPOOL FULL: refusing new publishes so live streams keep their space"
            );
        }
        full
    }
}

/// nginx's callbacks: `/hooks/SECRET/CALL`. The secret is checked before
/// routing, so a wrong one gets 403 whatever the path. The request span
/// names the call, never the URI, which holds the secret.
pub(crate) fn hooks_router(state: Arc<AppState>) -> Router {
    let request_timeout = Duration::from_secs(state.config().limits.request_timeout_secs);
    Router::new()
        .route("/hooks/{secret}/on_publish", post(hooks::on_publish))
        .route("/hooks/{secret}/on_update", post(hooks::on_update))
        .route(
            "/hooks/{secret}/on_publish_done",
            post(hooks::on_publish_done),
        )
        .route("/hooks/{secret}/on_relay", post(hooks::on_relay))
        .route("/hooks/{secret}/on_play", post(hooks::on_play))
        .layer((
            middleware::from_fn_with_state(state.clone(), time_hook),
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                tracing::debug_span!("hook", call = hook_call(req.uri().path()))
            }),
            middleware::from_fn_with_state(state.clone(), require_hooks_secret),
            RequestBodyLimitLayer::new(MAX_BODY_BYTES),
            // nginx gives up on a callback after 10 s by default; answer first.
            TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                request_timeout.min(Duration::from_secs(8)),
            ),
        ))
        .with_state(state)
}

/// The callback a hooks path names, from a fixed set (a label value).
fn hook_call(path: &str) -> &'static str {
    match path.rsplit('/').next().unwrap_or_default() {
        "on_publish" => "on_publish",
        "on_update" => "on_update",
        "on_publish_done" => "on_publish_done",
        "on_relay" => "on_relay",
        "on_play" => "on_play",
        _ => "other",
    }
}

/// Counts every hooks request's answer time into `livebucket_hook_seconds`,
/// refusals included, from the connection's accept.
async fn time_hook(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let arrived = req
        .extensions()
        .get::<server::Arrived>()
        .map_or_else(std::time::Instant::now, |a| a.0);
    let call = hook_call(req.uri().path());
    let response = next.run(req).await;
    app.metrics
        .observe("livebucket_hook_seconds", call, arrived.elapsed());
    response
}

/// 403 unless the path is `/hooks/<an accepted secret>/…` (the configured
/// one, or the one a reload replaced during its grace period; see
/// [`HookSecrets`]), compared in constant time. Which one matched is logged
/// for the previous one; a refusal is logged without the path.
async fn require_hooks_secret(
    State(app): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let given = req
        .uri()
        .path()
        .strip_prefix("/hooks/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    let matched = app
        .hooks_secrets
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .check(given.as_bytes(), Instant::now());
    match matched {
        Some(Matched::Current) => return next.run(req).await,
        Some(Matched::Previous) => {
            app.metrics.inc(
                "livebucket_hooks_previous_secret_total",
                hook_call(req.uri().path()),
            );
            info!(
                secret = "previous",
                call = hook_call(req.uri().path()),
                "callback with the hooks secret a reload replaced, accepted during hooks.previous_secret_grace_secs: reload nginx with the new one"
            );
            return next.run(req).await;
        }
        None => {}
    }
    app.metrics.inc("livebucket_hooks_forged_total", "secret");
    let peer = req.extensions().get::<server::Peer>().and_then(|p| p.0);
    info!(peer = ?peer, reason = "wrong_hooks_secret", "callback refused: the hooks secret is missing or wrong");
    // Closed after the answer: a process without the secret may not keep a
    // connection on the listener nginx needs.
    (
        StatusCode::FORBIDDEN,
        [(header::CONNECTION, "close")],
        "forbidden\n",
    )
        .into_response()
}

/// `/play`, the VOD API, the OSS API and the console: what viewers, API
/// clients and operators' browsers reach.
pub(crate) fn public_router(state: Arc<AppState>) -> Router {
    let request_timeout = Duration::from_secs(state.config().limits.request_timeout_secs);
    let signed = Router::new()
        .route("/play/{bucket}/{channel}/{playlist}", get(play::play))
        .route(
            "/play/{bucket}/{channel}/{rung}/{playlist}",
            get(play::play_variant),
        )
        .route(
            "/api/v1/buckets/{bucket}/channels/{channel}/vod",
            get(vod::get_vod).post(vod::post_vod),
        )
        // Players on the origins in `http.cors_origins` may read them.
        .layer(cors(&state.config().http));
    Router::new()
        .merge(signed)
        // /play and the VOD API take their parameters in the query.
        .route_layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .route("/console", get(console::redirect))
        .route("/console/", any(console::serve))
        .route("/console/{*path}", any(console::serve))
        // Anything else is the OSS LiveChannel API (bucket-addressed paths),
        // which bounds its own body so that it can answer OSS's error.
        .fallback(oss::api)
        .layer((
            TraceLayer::new_for_http().make_span_with(request_span),
            TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, request_timeout),
        ))
        .with_state(state)
}

/// The public router's request span: tower-http's default fields, with
/// the URI redacted ([`redacted_uri`]): signatures and credentials travel in
/// the query.
fn request_span(req: &Request) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %req.method(),
        uri = %redacted_uri(req.uri()),
        version = ?req.version(),
    )
}

/// `uri` as logs may show it: the path, then the query with every value
/// replaced by `*` (`/play/b/c/index.m3u8?Expires=*&Signature=*`). A
/// parameter name that does not look like one (over 40 characters, or other
/// than `A-Z a-z 0-9 - _ .`) is replaced too, in case a client put a token
/// there.
pub(crate) fn redacted_uri(uri: &axum::http::Uri) -> String {
    let mut out = uri.path().to_owned();
    let Some(query) = uri.query() else {
        return out;
    };
    out.push('?');
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        let (name, value) = match pair.split_once('=') {
            Some((name, _)) => (name, Some("*")),
            None => (pair, None),
        };
        let plain = name.len() <= 40
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        out.push_str(if plain { name } else { "*" });
        if let Some(v) = value {
            out.push('=');
            out.push_str(v);
        }
    }
    out
}

/// CORS for `/play` and the VOD API: the configured origins may GET them,
/// without credentials (the signed URL is the only authority). Read at
/// start; a change takes a restart.
fn cors(http: &crate::config::HttpConfig) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins = if http.any_origin() {
        AllowOrigin::any()
    } else {
        // Validated at load: every entry is a plain origin, so a header value.
        AllowOrigin::list(
            http.cors_origins
                .iter()
                .filter_map(|o| axum::http::HeaderValue::from_str(o).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([axum::http::Method::GET, axum::http::Method::HEAD])
        .expose_headers([header::HeaderName::from_static("x-livebucket-vod-source")])
        .max_age(Duration::from_secs(600))
}

/// `/metrics`, `/healthz` (the process answers; whether the store refuses
/// its uploads) and `/readyz` (it takes pushes), for operators and balancers;
/// `POST /retention/sweep` ([`retention`]).
pub(crate) fn operator_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/cluster/v1/stat/{bucket}/{channel}", get(peer::stat))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(10),
        ))
        // A sweep takes as long as it takes: outside the 10 s limit.
        .route("/retention/sweep", post(retention::sweep))
        .with_state(state)
}

/// Always 200 while the process answers (a liveness probe must not restart
/// a node over a store's refusal: a restart would not fix it and nothing is
/// lost meanwhile). The body is `ok`, or `degraded:` and one line per access
/// key and bucket whose last upload the store refused with a final answer
/// (its S3 code and message), until an upload there succeeds.
async fn healthz(State(app): State<Arc<AppState>>) -> String {
    health_text(&app.store.refusals())
}

fn health_text(refusals: &[String]) -> String {
    if refusals.is_empty() {
        return "ok\n".to_owned();
    }
    let mut text =
        "degraded: the store refuses uploads (kept on disk; retried every upload.max_backoff_secs and at each reload)\n".to_owned();
    for r in refusals {
        text.push_str(r);
        text.push('\n');
    }
    text
}

/// 200 while this node takes pushes; 503 with the reason while it cannot (in
/// cluster mode: no live etcd lease, so every `on_publish` is refused). A
/// balancer's health check looks here.
async fn readyz(State(app): State<Arc<AppState>>) -> (StatusCode, String) {
    match app.cluster.as_ref().map_or(Ok(()), |c| c.ready()) {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

async fn metrics(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn allow_origin(origins: &[&str], origin: &str) -> Option<String> {
        let http = crate::config::HttpConfig {
            cors_origins: origins.iter().map(|o| o.to_string()).collect(),
        };
        let app = Router::new()
            .route("/play", get(|| async { "ok" }))
            .layer(cors(&http));
        let resp = app
            .oneshot(
                Request::get("/play")
                    .header(header::ORIGIN, origin)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(
            resp.headers()
                .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
                .is_none()
        );
        resp.headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn health_names_each_refusal() {
        assert_eq!(health_text(&[]), "ok\n");
        let text =
            health_text(&["GK1/media: S3 PUT media/cam/1.ts: HTTP 403: AccessDenied (no)".into()]);
        assert!(text.starts_with("degraded: "), "{text}");
        assert!(text.contains("GK1/media: S3 PUT media/cam/1.ts: HTTP 403: AccessDenied (no)\n"));
    }

    #[test]
    fn logged_uris_carry_no_query_values() {
        let cases = [
            ("/play/b/c/index.m3u8", "/play/b/c/index.m3u8"),
            (
                "/play/b/c/index.m3u8?AccessKeyId=GK1&Expires=17&Signature=c2VjcmV0%2F",
                "/play/b/c/index.m3u8?AccessKeyId=*&Expires=*&Signature=*",
            ),
            ("/b/c?live&comp=stat", "/b/c?live&comp=*"),
            (
                "/b?OSSAccessKeyId=k&Signature=s&=x&a=b=c",
                "/b?OSSAccessKeyId=*&Signature=*&=*&a=*",
            ),
            ("/b?c2VjcmV0%2Fc2VjcmV0", "/b?*"),
            ("/b?0123456789012345678901234567890123456789x=1", "/b?*=*"),
        ];
        for (uri, logged) in cases {
            let uri: axum::http::Uri = uri.parse().unwrap();
            assert_eq!(redacted_uri(&uri), logged, "{uri}");
        }
    }

    #[tokio::test]
    async fn the_public_request_span_has_no_signature() {
        // The span the public router's TraceLayer opens, as a subscriber
        // at debug records it.
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let app = Router::new()
            .route("/play/{b}/{c}/{p}", get(|| async { "ok" }))
            .layer(TraceLayer::new_for_http().make_span_with(request_span));
        let _ = app
            .oneshot(
                Request::get("/play/b/c/index.m3u8?Expires=17&Signature=SECRETSIG")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let logged = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(logged.contains("Signature=*"), "{logged}");
        assert!(!logged.contains("SECRETSIG"), "{logged}");
    }

    #[tokio::test]
    async fn cors_answers_only_the_configured_origins() {
        let listed = ["https://player.example.com", "http://127.0.0.1:8081"];
        for origin in listed {
            assert_eq!(allow_origin(&listed, origin).await.as_deref(), Some(origin));
        }
        assert_eq!(allow_origin(&listed, "https://evil.example").await, None);
        assert_eq!(allow_origin(&[], "https://player.example.com").await, None);
        assert_eq!(
            allow_origin(&["*"], "https://any.example").await.as_deref(),
            Some("*")
        );
    }
}
