//! livebucket: a companion for nginx-rtmp that stores live HLS in any
//! S3-compatible bucket, like Alibaba OSS LiveChannel.
//!
//! ```text
//!  streamer ──RTMP──▶ nginx-rtmp "live" ──on_publish──▶ http::hooks ──▶ auth, session
//!                         │ 302 relay (approved only)
//!                         ▼
//!                    nginx-rtmp "hls" ──writes──▶ <hls_dir>/<session>/*.ts, index.m3u8
//!                                                     │ inotify
//!                                                     ▼
//!                     pipeline: watch → capture → upload ──▶ S3 (store)
//!                                        └── live window ──▶ CHANNEL/index.m3u8
//! ```
//!
//! With `[cluster]`, `cluster` coordinates several such nodes on one bucket
//! through etcd: `on_publish` takes the channel's key, the pipeline asks it
//! before every playlist upload (`pipeline::fence`), and channel changes
//! reach every node's cache.
//!
//! Modules are listed alphabetically. Their layers are in ARCHITECTURE.md
//! and `tests/layering.rs`, which fails when a module imports one above it.

// `pub` marks what the binary or the tests use; everything else is
// `pub(crate)`, so the compiler reports dead code.
#![warn(unreachable_pub)]

pub(crate) mod admission;
pub mod app;
pub(crate) mod auth;
pub(crate) mod cache;
pub mod channels;
pub mod clock;
pub mod cluster;
pub mod config;
pub(crate) mod events;
pub mod hls;
pub(crate) mod http;
pub mod index;
pub mod layout;
pub(crate) mod live;
pub(crate) mod llhls;
pub(crate) mod logfmt;
pub mod master;
pub mod metrics;
pub mod names;
pub(crate) mod nofollow;
pub mod oss;
pub mod outbound;
pub(crate) mod pipeline;
pub(crate) mod retention;
pub mod session;
pub mod sign;
pub mod snapshot;
pub mod stat;
pub mod store;
pub(crate) mod transcode;
pub mod vod;
