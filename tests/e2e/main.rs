//! The end-to-end tests: one test binary, built only with the `e2e` feature
//! (`required-features` in Cargo.toml), that runs livebucket against real
//! nginx-rtmp, ffmpeg and an S3 store (Garage, or Ceph's RADOS Gateway),
//! etcd and Docker where a test says so. The harness, [`common`], is
//! compiled once for all of them.
//!
//! One module per area; a test's full name is `AREA::TEST`
//! (`pipeline::kill_9_and_restart_stores_every_fragment_once`), so
//! `cargo test --features e2e --test e2e -- pipeline::` runs one area, and
//! any part of a name filters as before (`rgw_` selects the tests on Ceph
//! RGW). A new area is a file `tests/e2e/AREA.rs` that starts with
//! `use crate::common;`, and a `mod AREA;` line below.

mod common;

mod abr_play;
mod admission;
mod auth;
mod channels;
mod cluster;
mod compose;
mod console;
mod dataplane;
mod events;
mod https_store;
mod latency;
mod listeners;
mod llhls;
mod pipeline;
mod plain_hls;
mod publish;
mod renditions;
mod retention;
mod s3_errors;
mod security;
mod stat;
mod transcode;
mod vod;
