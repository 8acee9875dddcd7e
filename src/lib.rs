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
//! Modules are listed in flow order; each uses only those below it.

pub mod admission;
pub mod app;
pub mod auth;
pub mod cache;
pub mod channels;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod events;
pub mod hls;
pub mod http;
pub mod index;
pub mod layout;
pub mod live;
pub mod llhls;
pub mod logfmt;
pub mod metrics;
pub mod names;
pub mod nofollow;
pub mod oss;
pub mod outbound;
pub mod pipeline;
pub mod retention;
pub mod session;
pub mod sign;
pub mod snapshot;
pub mod stat;
pub mod store;
pub mod vod;
