//! The web console at `/console/`: static files compiled into the binary
//! (the `console/` directory of the source tree, hls.js vendored there), so
//! it works offline and cannot drift from the binary that serves it.
//!
//! The console has no server side of its own: the page signs every request
//! with the access key the operator types in (the secret never leaves the
//! browser) and calls the same OSS LiveChannel API, `/play` and VOD API as
//! any other client, so it can do nothing its key could not do already.
//!
//! A request under `/console/` that carries a query string is not for the
//! console: it goes to the OSS API, so a bucket named `console` stays
//! addressable path-style (every LiveChannel request has a query).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use include_dir::{Dir, include_dir};

use super::AppState;

static ASSETS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/console");

/// The page's policy: scripts and styles from the console only, media
/// (hls.js fetches segments into a blob) and connections to any origin,
/// since segments come from the S3 server's public endpoint.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                   img-src 'self' blob: data:; media-src 'self' blob:; \
                   connect-src 'self' http: https:; worker-src 'self' blob:; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// `GET /console` → `/console/`, so relative asset URLs resolve.
pub(crate) async fn redirect() -> Redirect {
    Redirect::permanent("/console/")
}

/// `GET|HEAD /console/…`: a file of the console, or the OSS API when the
/// request has a query (see the module doc).
pub(crate) async fn serve(State(app): State<Arc<AppState>>, req: Request) -> Response {
    if req.uri().query().is_some() {
        let (parts, body) = req.into_parts();
        return super::oss::api(
            State(app),
            parts.method,
            parts.uri,
            parts.headers,
            Body::new(body),
        )
        .await;
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let path = req.uri().path().strip_prefix("/console/").unwrap_or("");
    let path = if path.is_empty() { "index.html" } else { path };
    match asset(path) {
        Some((bytes, content_type)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                // Assets change only with the binary; revalidate each load.
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(CSP),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
                (
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ),
            ],
            bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// The embedded file at `path` (relative, `/`-separated) and its type.
/// Only files with a known type are served.
fn asset(path: &str) -> Option<(&'static [u8], &'static str)> {
    if path
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return None;
    }
    let content_type = match path.rsplit_once('.')?.1 {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "txt" => "text/plain; charset=utf-8",
        _ => return None,
    };
    Some((ASSETS.get_file(path)?.contents(), content_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_file_is_served_with_a_type() {
        assert!(asset("index.html").is_some());
        fn walk(dir: &Dir<'static>) {
            for f in dir.files() {
                let path = f.path().to_str().unwrap();
                assert!(asset(path).is_some(), "{path} is embedded but not served");
            }
            for d in dir.dirs() {
                walk(d);
            }
        }
        walk(&ASSETS);
    }

    #[test]
    fn nothing_outside_the_console_is_served() {
        for path in [
            "../Cargo.toml",
            "js/../index.html",
            "/etc/passwd",
            "",
            "js/",
            "x.rs",
        ] {
            assert!(asset(path).is_none(), "{path} was served");
        }
    }
}
