//! livebucket's HTTP surface: nginx callbacks under `/hooks`, `/metrics`,
//! `/healthz`. Handlers stay thin; everything they decide is in `auth`,
//! `session` and the pipeline.

pub mod error;
pub mod hooks;
pub mod play;
pub mod vod;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::limiter::FailureLimiter;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::{LiveCache, PipelineHandle};
use crate::session::Sessions;
use crate::store::Store;

/// nginx cuts name + query at 255 bytes, so a real callback body is well
/// under this; anything larger is not from nginx.
const MAX_HOOK_BODY: usize = 8 * 1024;

pub struct AppState {
    config: RwLock<Arc<Config>>,
    pub sessions: Arc<Sessions>,
    pub pipeline: PipelineHandle,
    pub metrics: Arc<Metrics>,
    pub limiter: FailureLimiter,
    pub store: Store,
    pub live_cache: LiveCache,
}

impl AppState {
    pub fn new(
        config: Arc<Config>,
        sessions: Arc<Sessions>,
        pipeline: PipelineHandle,
        metrics: Arc<Metrics>,
        store: Store,
        live_cache: LiveCache,
    ) -> AppState {
        let limiter = FailureLimiter::new(
            config.auth.max_failures,
            Duration::from_secs(config.auth.failure_window_secs),
            Duration::from_secs(config.auth.ban_secs),
        );
        AppState {
            config: RwLock::new(config),
            sessions,
            pipeline,
            metrics,
            limiter,
            store,
            live_cache,
        }
    }

    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Swaps in a reloaded configuration; live streams are untouched, and
    /// the next `on_update` of each checks its key against the new one.
    pub fn set_config(&self, config: Arc<Config>) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// Whether the on-disk spool is past its high-water mark.
    pub fn spool_full(&self) -> bool {
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

pub fn router(state: Arc<AppState>) -> Router {
    let hooks = Router::new()
        .route("/on_publish", post(hooks::on_publish))
        .route("/on_update", post(hooks::on_update))
        .route("/on_publish_done", post(hooks::on_publish_done))
        .layer((
            RequestBodyLimitLayer::new(MAX_HOOK_BODY),
            // nginx gives up on a callback after 10 s by default; answer first.
            TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(8)),
        ));
    Router::new()
        .nest("/hooks", hooks)
        .route("/play/{bucket}/{channel}/{playlist}", get(play::play))
        .route(
            "/api/v1/buckets/{bucket}/channels/{channel}/vod",
            get(vod::get_vod).post(vod::post_vod),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer((
            TraceLayer::new_for_http(),
            TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                Duration::from_secs(60),
            ),
        ))
        .with_state(state)
}

async fn metrics(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}
