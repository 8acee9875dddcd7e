//! The pure core of livebucket's Alibaba OSS LiveChannel API (issue 10): what
//! an HTTP handler needs to speak OSS's REST dialect wire-compatibly, so that
//! Alibaba's own SDKs (Python `oss2`, …) manage channels on any S3 store.
//! Nothing here does I/O, reads the configuration file or the clock: callers
//! pass requests, secrets and "now" in, and get decisions and bytes out.
//!
//! A request flows through the modules in this order:
//!
//! ```text
//!  Host + path + query ──route::resolve / parse_query──▶ bucket, object key, query pairs
//!                      ──oss_v1::parse / verify───────▶ authenticated key id   (or AuthError)
//!                      ──route::route─────────────────▶ Operation              (or OssError)
//!  body ───────────────xml::parse_config──────────────▶ LiveChannelConfig      (or OssError)
//!  stored JSON ◀──────channel (key layout, records)───▶ model
//!  model ─────────────xml::render_*───────────────────▶ response body
//!  any refusal ───────error::OssError::parts──────────▶ (status, OSS code, message) + xml::render_error
//! ```
//!
//! - [`crate::sign::oss_v1`] (not here: all signing lives in [`crate::sign`]):
//!   OSS request signature V1 (header and presigned-URL forms), canonicalized
//!   exactly as `oss2.auth.ProviderAuth` does.
//! - [`xml`]: the request body `LiveChannelConfiguration` (strict parser) and
//!   every XML response, in the element order oss2's parsers read.
//! - [`channel`]: the channel model, OSS's limits, the stored form and its
//!   object keys under `.livebucket/channels/`.
//! - [`route`]: bucket addressing (virtual-hosted, custom domain, path style)
//!   and the (method, object, query) → [`route::Operation`] decision.
//! - [`error`]: OSS's error codes, mapped to statuses in one `match`.
//!
//! Invariants shared by all of them: nothing panics on any input, no error
//! carries a secret or a signature, and an unknown access key id is refused
//! exactly like a wrong signature.

pub mod channel;
pub mod error;
pub mod route;
pub mod xml;
