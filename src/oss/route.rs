//! Where an OSS API request goes: which bucket and object it addresses
//! ([`resolve`]), its decoded query ([`parse_query`]), and which LiveChannel
//! operation it is ([`route`]), so the HTTP handler only executes
//! [`Operation`]s. (Kept apart from [`super::channel`] so each file stays
//! small; the channel rules it applies live there.)
//!
//! # Bucket addressing
//!
//! oss2's `_UrlMaker` sends three shapes, all signing the same
//! `/bucket/key` resource:
//! - virtual-hosted: `https://<bucket>.<api domain>/<key>` (oss2's default
//!   for a domain endpoint);
//! - custom domain (CNAME, `is_cname=True`): `https://<domain>/<key>`, the
//!   bucket configured per domain;
//! - path style: `http://<host>/<bucket>/<key>` (oss2's choice for IP
//!   endpoints and with `is_path_style=True`); used for any host that is
//!   neither of the above.
//!
//! oss2 quotes keys with `urlquote(key, safe='')`, so PostVodPlaylist's
//! `channel/playlist` arrives as `channel%2Fplaylist`; keys are
//! percent-decoded whole, so both spellings name the same key. A malformed
//! `%` escape or a key that is not UTF-8 is refused rather than guessed.
//!
//! # Operations (the query words are OSS's; any value of `live`/`vod` counts)
//!
//! | request | operation |
//! | --- | --- |
//! | `PUT /<channel>?live` | PutLiveChannel |
//! | `GET /?live[&prefix=&marker=&max-keys=]` | ListLiveChannel |
//! | `GET /<channel>?live` | GetLiveChannelInfo |
//! | `DELETE /<channel>?live` | DeleteLiveChannel |
//! | `PUT /<channel>?live&status=enabled\|disabled` | PutLiveChannelStatus |
//! | `GET /<channel>?live&comp=stat` | GetLiveChannelStat |
//! | `GET /<channel>?live&comp=history` | GetLiveChannelHistory |
//! | `POST /<channel>/<playlist>?vod&startTime=&endTime=` | PostVodPlaylist |
//! | `GET /<channel>?vod&startTime=&endTime=` | GetVodPlaylist |
//! | `GET /[<bucket>/]<channel>/snapshot/<latest or epoch ms>.jpg` | GetObject, of a snapshot only |
//!
//! GetObject is served for channel snapshots only ([`snapshot_object`]), so
//! that the console can show `latest.jpg` through a presigned URL it signs
//! in the page: the same key that may manage the bucket may read them, and
//! livebucket is no general proxy to the bucket's other objects.
//! Anything else is refused with an [`OssError`]: `NotImplemented` for
//! requests that are not LiveChannel requests at all, `MethodNotAllowed` for
//! a known resource with the wrong method, `InvalidArgument` for bad names
//! and parameters. A parameter the operation reads may appear only once.
//! Remember that `prefix`, `marker` and `max-keys` are not signed (see
//! [`crate::sign::oss_v1`]).

use percent_encoding::percent_decode;

use super::channel::{ChannelStatus, DEFAULT_LIST_KEYS, MAX_LIST_KEYS, validate_channel_name};
use super::error::OssError;
use crate::auth::push;
use crate::sign::url::split_host_port;

/// Checks a request body against the `Content-MD5` header when one was
/// sent (OSS checks it on every request that has one): `InvalidDigest`
/// when the header is not the base64 of 16 bytes, `BadDigest` when it is
/// not the body's MD5. Without the header, nothing is checked.
pub fn check_content_md5(header: Option<&[u8]>, body: &[u8]) -> Result<(), OssError> {
    use base64::Engine as _;
    use md5::Digest as _;
    let Some(value) = header else {
        return Ok(());
    };
    let sent = base64::engine::general_purpose::STANDARD
        .decode(value.trim_ascii())
        .ok()
        .filter(|d| d.len() == 16)
        .ok_or(OssError::InvalidDigest)?;
    if sent[..] != md5::Md5::digest(body)[..] {
        return Err(OssError::BadDigest);
    }
    Ok(())
}

/// OSS limits a VOD range to one day.
pub const MAX_VOD_RANGE_SECS: u64 = 24 * 3600;

/// Longest `prefix` or `marker` accepted (OSS object keys are < 1024 bytes).
const MAX_LIST_ARG_BYTES: usize = 1024;

/// How buckets are named by host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addressing {
    /// `<bucket>.<api_domain>` hosts are virtual-hosted requests.
    pub api_domain: Option<String>,
    /// Exact hosts (custom domains) and the bucket each one serves.
    pub custom_domains: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    VirtualHosted,
    CustomDomain,
    PathStyle,
}

/// The bucket and object a request addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// A valid bucket name ([`push::validate_bucket`]).
    pub bucket: String,
    /// The decoded key; empty for bucket-level requests.
    pub object: String,
    pub style: Style,
}

/// Resolves `host` (the `Host` header, port allowed) and `raw_path` (the
/// request path as sent, still percent-encoded, without the query).
pub fn resolve(host: &str, raw_path: &str, addressing: &Addressing) -> Result<Target, OssError> {
    let Some(path) = raw_path.strip_prefix('/') else {
        return Err(OssError::InvalidArgument(
            "the request path must start with '/'".into(),
        ));
    };
    let host = host_name(host);
    let custom = addressing
        .custom_domains
        .iter()
        .find(|(domain, _)| host_name(domain).eq_ignore_ascii_case(host));
    let virtual_bucket = addressing.api_domain.as_deref().and_then(|domain| {
        let domain = host_name(domain);
        let split = host.len().checked_sub(domain.len() + 1)?;
        let (label, suffix) = (host.get(..split)?, host.get(split..)?);
        let suffix = suffix.strip_prefix('.')?;
        (!label.is_empty() && suffix.eq_ignore_ascii_case(domain)).then_some(label)
    });
    let (bucket, object, style) = if let Some((_, bucket)) = custom {
        (bucket.clone(), decode_path(path)?, Style::CustomDomain)
    } else if let Some(label) = virtual_bucket {
        (
            label.to_ascii_lowercase(),
            decode_path(path)?,
            Style::VirtualHosted,
        )
    } else {
        let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            // `GET /` on a plain host: ListBuckets, a service-level request.
            return Err(OssError::NotImplemented);
        }
        (decode_path(bucket)?, decode_path(key)?, Style::PathStyle)
    };
    push::validate_bucket(&bucket).map_err(|e| OssError::InvalidBucketName(e.to_string()))?;
    Ok(Target {
        bucket,
        object,
        style,
    })
}

/// A host without port and trailing dot; IPv6 literals keep their brackets.
/// A host whose port is not digits stays whole, so it matches no domain.
fn host_name(host: &str) -> &str {
    let host = host.trim();
    let name = match split_host_port(host) {
        Ok((name, None)) => name,
        Ok((name, Some(port))) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    name.strip_suffix('.').unwrap_or(name)
}

/// Whether every `%` starts a two-hex-digit escape.
fn escapes_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

fn decode_path(s: &str) -> Result<String, OssError> {
    let bad = || OssError::InvalidObjectName("the path is not percent-encoded UTF-8".into());
    if !escapes_ok(s) {
        return Err(bad());
    }
    percent_decode(s.as_bytes())
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| bad())
}

fn decode_form(s: &str) -> Result<String, OssError> {
    if !escapes_ok(s) {
        return Err(OssError::InvalidArgument(
            "the query is not percent-encoded UTF-8".into(),
        ));
    }
    let plus_as_space = s.replace('+', " ");
    percent_decode(plus_as_space.as_bytes())
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| OssError::InvalidArgument("the query is not percent-encoded UTF-8".into()))
}

/// The query (without `?`) as decoded `(name, value)` pairs in order, `+` as
/// space (requests encodes oss2's parameters that way); `live` and `live=`
/// both give `("live", "")`.
pub fn parse_query(raw: &str) -> Result<Vec<(String, String)>, OssError> {
    raw.split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
            Ok((decode_form(k)?, decode_form(v)?))
        })
        .collect()
}

/// A LiveChannel operation, with its inputs checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// The body is a `LiveChannelConfiguration` ([`super::xml::parse_config`]).
    PutLiveChannel {
        channel: String,
    },
    ListLiveChannel(ListParams),
    GetLiveChannelInfo {
        channel: String,
    },
    DeleteLiveChannel {
        channel: String,
    },
    PutLiveChannelStatus {
        channel: String,
        status: ChannelStatus,
    },
    GetLiveChannelStat {
        channel: String,
    },
    GetLiveChannelHistory {
        channel: String,
    },
    PostVodPlaylist {
        channel: String,
        playlist: String,
        range: VodRange,
    },
    GetVodPlaylist {
        channel: String,
        range: VodRange,
    },
    /// GetObject of a snapshot JPEG; `object` is its whole key.
    GetSnapshot {
        object: String,
    },
}

/// ListLiveChannel's (unsigned) parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListParams {
    pub prefix: String,
    /// List channels after this one; empty for the first page.
    pub marker: String,
    /// 1 to 1000, default 100.
    pub max_keys: u16,
}

/// `[start, end)` in Unix seconds; `start < end`, at most one day long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VodRange {
    pub start: u64,
    pub end: u64,
}

/// Decides the operation of a request whose bucket was resolved.
pub fn route(
    method: &str,
    object: &str,
    query: &[(String, String)],
) -> Result<Operation, OssError> {
    let has = |word: &str| query.iter().any(|(k, _)| k == word);
    match (has("live"), has("vod")) {
        (true, true) => Err(invalid("live and vod cannot be combined")),
        (true, false) => live_operation(method, object, query),
        (false, true) => vod_operation(method, object, query),
        (false, false) if snapshot_object(object) => match method {
            "GET" | "HEAD" => Ok(Operation::GetSnapshot {
                object: object.to_owned(),
            }),
            _ => Err(OssError::MethodNotAllowed),
        },
        (false, false) => Err(OssError::NotImplemented),
    }
}

/// Whether `object` is a snapshot's key ([`crate::layout::snapshot_prefix`]):
/// `[<bucket>/]<channel>/snapshot/latest.jpg` or `…/<epoch ms>.jpg`.
pub fn snapshot_object(object: &str) -> bool {
    let Some((prefix, file)) = object.rsplit_once("/snapshot/") else {
        return false;
    };
    let stem = file.strip_suffix(".jpg").unwrap_or_default();
    let stem_ok =
        stem == "latest" || (!stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()));
    // The source bucket leads the key when the snapshot is in another bucket.
    let channel = match prefix.split_once('/') {
        None => prefix,
        Some((bucket, channel)) if push::validate_bucket(bucket).is_ok() => channel,
        Some(_) => return false,
    };
    stem_ok && !channel.contains('/') && validate_channel_name(channel).is_ok()
}

fn invalid(message: impl Into<String>) -> OssError {
    OssError::InvalidArgument(message.into())
}

/// The one value of `name`, refusing repeats.
fn single<'q>(query: &'q [(String, String)], name: &str) -> Result<Option<&'q str>, OssError> {
    let mut found = None;
    for (k, v) in query {
        if k == name {
            if found.is_some() {
                return Err(invalid(format!(
                    "query parameter {name} is given more than once"
                )));
            }
            found = Some(v.as_str());
        }
    }
    Ok(found)
}

fn live_operation(
    method: &str,
    object: &str,
    query: &[(String, String)],
) -> Result<Operation, OssError> {
    let comp = single(query, "comp")?;
    let status = single(query, "status")?;
    if object.is_empty() {
        return match (method, comp, status) {
            ("GET", None, None) => Ok(Operation::ListLiveChannel(list_params(query)?)),
            ("GET", _, _) => Err(invalid("ListLiveChannel takes no comp or status")),
            _ => Err(OssError::MethodNotAllowed),
        };
    }
    validate_channel_name(object)?;
    let channel = object.to_owned();
    match (method, comp, status) {
        (_, Some(c), _) if c != "stat" && c != "history" => Err(invalid(format!(
            "comp={:?} is not a LiveChannel operation (stat or history)",
            shorten(c)
        ))),
        ("PUT", None, None) => Ok(Operation::PutLiveChannel { channel }),
        ("PUT", None, Some(s)) => Ok(Operation::PutLiveChannelStatus {
            channel,
            status: ChannelStatus::parse(s)
                .ok_or_else(|| invalid("status must be enabled or disabled"))?,
        }),
        ("GET", None, None) => Ok(Operation::GetLiveChannelInfo { channel }),
        ("GET", Some("stat"), None) => Ok(Operation::GetLiveChannelStat { channel }),
        ("GET", Some("history"), None) => Ok(Operation::GetLiveChannelHistory { channel }),
        ("DELETE", None, None) => Ok(Operation::DeleteLiveChannel { channel }),
        ("GET" | "PUT" | "DELETE", _, _) => Err(invalid(format!(
            "{method} does not combine these LiveChannel parameters (comp, status)"
        ))),
        _ => Err(OssError::MethodNotAllowed),
    }
}

fn list_params(query: &[(String, String)]) -> Result<ListParams, OssError> {
    let text = |name: &str| -> Result<String, OssError> {
        let value = single(query, name)?.unwrap_or_default();
        if value.len() > MAX_LIST_ARG_BYTES {
            return Err(invalid(format!(
                "{name} is longer than {MAX_LIST_ARG_BYTES} bytes"
            )));
        }
        Ok(value.to_owned())
    };
    let max_keys = match single(query, "max-keys")? {
        None | Some("") => DEFAULT_LIST_KEYS,
        Some(v) => v
            .parse::<u16>()
            .ok()
            .filter(|n| v.bytes().all(|b| b.is_ascii_digit()) && (1..=MAX_LIST_KEYS).contains(n))
            .ok_or_else(|| {
                invalid(format!(
                    "max-keys must be an integer from 1 to {MAX_LIST_KEYS}"
                ))
            })?,
    };
    Ok(ListParams {
        prefix: text("prefix")?,
        marker: text("marker")?,
        max_keys,
    })
}

fn vod_operation(
    method: &str,
    object: &str,
    query: &[(String, String)],
) -> Result<Operation, OssError> {
    match method {
        "POST" => {
            let Some((channel, playlist)) = object.split_once('/') else {
                return Err(invalid(
                    "PostVodPlaylist is POST /<channel>/<playlist>.m3u8?vod&startTime=&endTime=",
                ));
            };
            validate_channel_name(channel)?;
            push::validate_playlist_name(playlist).map_err(|e| invalid(e.to_string()))?;
            Ok(Operation::PostVodPlaylist {
                channel: channel.to_owned(),
                playlist: playlist.to_owned(),
                range: vod_range(query)?,
            })
        }
        "GET" => {
            validate_channel_name(object)?;
            Ok(Operation::GetVodPlaylist {
                channel: object.to_owned(),
                range: vod_range(query)?,
            })
        }
        _ => Err(OssError::MethodNotAllowed),
    }
}

fn vod_range(query: &[(String, String)]) -> Result<VodRange, OssError> {
    let time = |name: &str| -> Result<u64, OssError> {
        let v = single(query, name)?.ok_or_else(|| invalid(format!("{name} is required")))?;
        if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(format!("{name} must be a Unix time in seconds")));
        }
        v.parse()
            .map_err(|_| invalid(format!("{name} must be a Unix time in seconds")))
    };
    let (start, end) = (time("startTime")?, time("endTime")?);
    if end <= start {
        return Err(invalid("endTime must be later than startTime"));
    }
    if end - start > MAX_VOD_RANGE_SECS {
        return Err(invalid(
            "the range from startTime to endTime must not exceed one day",
        ));
    }
    Ok(VodRange { start, end })
}

/// Client text in a message: at most 64 characters.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_md5_is_checked_when_sent() {
        // base64(md5("hello")), as `oss2.utils.content_md5` computes it.
        let hello = b"XUFAKrxLKna5cZ2REBfFkg==";
        assert_eq!(check_content_md5(None, b"anything"), Ok(()));
        assert_eq!(check_content_md5(Some(hello), b"hello"), Ok(()));
        assert_eq!(
            check_content_md5(Some(b" XUFAKrxLKna5cZ2REBfFkg== "), b"hello"),
            Ok(())
        );
        assert_eq!(
            check_content_md5(Some(hello), b"hellO"),
            Err(OssError::BadDigest)
        );
        for bad in [
            &b""[..],
            b"not base64!",
            b"aGVsbG8=",
            b"XUFAKrxLKna5cZ2REBfFkgAA",
        ] {
            assert_eq!(
                check_content_md5(Some(bad), b"hello"),
                Err(OssError::InvalidDigest),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn addressing() -> Addressing {
        Addressing {
            api_domain: Some("oss.example.com".into()),
            custom_domains: vec![("live.example.org".into(), "demo".into())],
        }
    }

    #[test]
    fn addressing_styles() {
        let a = addressing();
        let t = resolve("demo.oss.example.com", "/cam1", &a).unwrap();
        assert_eq!(
            (t.bucket.as_str(), t.object.as_str(), t.style),
            ("demo", "cam1", Style::VirtualHosted)
        );
        let t = resolve("Demo.OSS.example.com.:443", "/", &a).unwrap();
        assert_eq!(
            (t.bucket.as_str(), t.object.as_str(), t.style),
            ("demo", "", Style::VirtualHosted)
        );
        let t = resolve("LIVE.example.org", "/cam1%2Fvod.m3u8", &a).unwrap();
        assert_eq!(
            (t.bucket.as_str(), t.object.as_str(), t.style),
            ("demo", "cam1/vod.m3u8", Style::CustomDomain)
        );
        let t = resolve("127.0.0.1:8089", "/demo/cam1", &a).unwrap();
        assert_eq!(
            (t.bucket.as_str(), t.object.as_str(), t.style),
            ("demo", "cam1", Style::PathStyle)
        );
        let t = resolve("oss.example.com", "/demo/", &a).unwrap();
        assert_eq!(
            (t.bucket.as_str(), t.object.as_str(), t.style),
            ("demo", "", Style::PathStyle)
        );
        let t = resolve("[::1]:8089", "/demo", &a).unwrap();
        assert_eq!((t.bucket.as_str(), t.object.as_str()), ("demo", ""));
        // Without an API domain everything is path style.
        let t = resolve("demo.oss.example.com", "/other/x", &Addressing::default()).unwrap();
        assert_eq!(
            (t.bucket.as_str(), t.object.as_str(), t.style),
            ("other", "x", Style::PathStyle)
        );
    }

    #[test]
    fn addressing_refusals() {
        let a = addressing();
        assert_eq!(resolve("127.0.0.1", "/", &a), Err(OssError::NotImplemented));
        assert!(matches!(
            resolve("127.0.0.1", "/Bad_Bucket/x", &a),
            Err(OssError::InvalidBucketName(_))
        ));
        assert!(matches!(
            resolve("x_y.oss.example.com", "/x", &a),
            Err(OssError::InvalidBucketName(_))
        ));
        assert!(matches!(
            resolve("127.0.0.1", "demo/x", &a),
            Err(OssError::InvalidArgument(_))
        ));
        for path in ["/demo/a%zz", "/demo/a%", "/demo/%ff%fe"] {
            assert!(
                matches!(
                    resolve("127.0.0.1", path, &a),
                    Err(OssError::InvalidObjectName(_))
                ),
                "{path}"
            );
        }
    }

    #[test]
    fn query_decoding() {
        assert_eq!(
            parse_query("live=&comp=stat&prefix=a+b%2Bc&&marker").unwrap(),
            q(&[
                ("live", ""),
                ("comp", "stat"),
                ("prefix", "a b+c"),
                ("marker", "")
            ])
        );
        assert_eq!(parse_query("").unwrap(), vec![]);
        assert_eq!(
            parse_query("Signature=ab%2Fc%3D").unwrap(),
            q(&[("Signature", "ab/c=")])
        );
        for bad in ["a=%zz", "a=%e9", "%"] {
            assert!(
                matches!(parse_query(bad), Err(OssError::InvalidArgument(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn live_operations() {
        let ch = || "cam1".to_string();
        let cases = [
            (
                "PUT",
                "cam1",
                q(&[("live", "")]),
                Operation::PutLiveChannel { channel: ch() },
            ),
            (
                "GET",
                "cam1",
                q(&[("live", "")]),
                Operation::GetLiveChannelInfo { channel: ch() },
            ),
            (
                "DELETE",
                "cam1",
                q(&[("live", "")]),
                Operation::DeleteLiveChannel { channel: ch() },
            ),
            (
                "GET",
                "cam1",
                q(&[("live", ""), ("comp", "stat")]),
                Operation::GetLiveChannelStat { channel: ch() },
            ),
            (
                "GET",
                "cam1",
                q(&[("comp", "history"), ("live", "x")]),
                Operation::GetLiveChannelHistory { channel: ch() },
            ),
            (
                "PUT",
                "cam1",
                q(&[("live", ""), ("status", "disabled")]),
                Operation::PutLiveChannelStatus {
                    channel: ch(),
                    status: ChannelStatus::Disabled,
                },
            ),
            (
                "GET",
                "",
                q(&[
                    ("live", ""),
                    ("prefix", "cam"),
                    ("marker", "cam0"),
                    ("max-keys", "50"),
                ]),
                Operation::ListLiveChannel(ListParams {
                    prefix: "cam".into(),
                    marker: "cam0".into(),
                    max_keys: 50,
                }),
            ),
            (
                "GET",
                "",
                q(&[
                    ("live", ""),
                    ("prefix", ""),
                    ("marker", ""),
                    ("max-keys", ""),
                ]),
                Operation::ListLiveChannel(ListParams {
                    prefix: String::new(),
                    marker: String::new(),
                    max_keys: 100,
                }),
            ),
        ];
        for (method, object, query, expected) in cases {
            assert_eq!(
                route(method, object, &query),
                Ok(expected),
                "{method} {object} {query:?}"
            );
        }
    }

    #[test]
    fn vod_operations() {
        let range = VodRange {
            start: 1_699_990_000,
            end: 1_699_993_600,
        };
        let t = [
            ("vod", ""),
            ("startTime", "1699990000"),
            ("endTime", "1699993600"),
        ];
        assert_eq!(
            route("POST", "cam1/vod.m3u8", &q(&t)),
            Ok(Operation::PostVodPlaylist {
                channel: "cam1".into(),
                playlist: "vod.m3u8".into(),
                range
            })
        );
        assert_eq!(
            route("GET", "cam1", &q(&t)),
            Ok(Operation::GetVodPlaylist {
                channel: "cam1".into(),
                range
            })
        );
        let day = [("vod", ""), ("startTime", "0"), ("endTime", "86400")];
        assert!(route("GET", "cam1", &q(&day)).is_ok());
    }

    #[test]
    fn refusals() {
        let invalid = |method: &str, object: &str, pairs: &[(&str, &str)]| {
            matches!(
                route(method, object, &q(pairs)),
                Err(OssError::InvalidArgument(_))
            )
        };
        assert!(invalid(
            "PUT",
            "cam1",
            &[("live", ""), ("status", "paused")]
        ));
        assert!(invalid("GET", "cam1", &[("live", ""), ("comp", "bogus")]));
        assert!(invalid("PUT", "cam1", &[("live", ""), ("comp", "stat")]));
        assert!(invalid(
            "GET",
            "cam1",
            &[("live", ""), ("comp", "stat"), ("comp", "stat")]
        ));
        assert!(invalid("GET", "a/b", &[("live", "")]));
        assert!(invalid("GET", "cam.history", &[("live", "")]));
        assert!(invalid("GET", "", &[("live", ""), ("max-keys", "0")]));
        assert!(invalid("GET", "", &[("live", ""), ("max-keys", "1001")]));
        assert!(invalid("GET", "", &[("live", ""), ("max-keys", "+5")]));
        assert!(invalid("GET", "", &[("live", ""), ("comp", "stat")]));
        assert!(invalid("GET", "cam1", &[("live", ""), ("vod", "")]));
        assert!(invalid(
            "POST",
            "cam1",
            &[("vod", ""), ("startTime", "1"), ("endTime", "2")]
        ));
        assert!(invalid(
            "POST",
            "cam1/vod.txt",
            &[("vod", ""), ("startTime", "1"), ("endTime", "2")]
        ));
        assert!(invalid(
            "POST",
            "cam1/a/b.m3u8",
            &[("vod", ""), ("startTime", "1"), ("endTime", "2")]
        ));
        assert!(invalid("GET", "cam1", &[("vod", ""), ("startTime", "1")]));
        assert!(invalid(
            "GET",
            "cam1",
            &[("vod", ""), ("startTime", "abc"), ("endTime", "2")]
        ));
        assert!(invalid(
            "GET",
            "cam1",
            &[("vod", ""), ("startTime", "5"), ("endTime", "5")]
        ));
        assert!(invalid(
            "GET",
            "cam1",
            &[("vod", ""), ("startTime", "0"), ("endTime", "86401")]
        ));
        let long = "p".repeat(1025);
        assert!(invalid("GET", "", &[("live", ""), ("prefix", &long)]));

        assert_eq!(
            route("POST", "cam1", &q(&[("live", "")])),
            Err(OssError::MethodNotAllowed)
        );
        assert_eq!(
            route("PUT", "", &q(&[("live", "")])),
            Err(OssError::MethodNotAllowed)
        );
        assert_eq!(
            route("DELETE", "cam1", &q(&[("vod", "")])),
            Err(OssError::MethodNotAllowed)
        );
        assert_eq!(
            route("GET", "cam1", &q(&[("acl", "")])),
            Err(OssError::NotImplemented)
        );
        assert_eq!(route("GET", "cam1", &[]), Err(OssError::NotImplemented));
    }

    #[test]
    fn only_snapshots_are_objects_to_get() {
        for object in [
            "cam1/snapshot/latest.jpg",
            "cam1/snapshot/1732571234567.jpg",
            "media/cam1/snapshot/latest.jpg",
        ] {
            assert_eq!(
                route("GET", object, &q(&[("OSSAccessKeyId", "K")])),
                Ok(Operation::GetSnapshot {
                    object: object.into()
                }),
                "{object}"
            );
        }
        for object in [
            "cam1/index.m3u8",
            "cam1/1732571234567.ts",
            "cam1/snapshot/latest.png",
            "cam1/snapshot/x.jpg",
            "cam1/snapshot/.jpg",
            "cam1/snapshot/a/latest.jpg",
            "a/b/cam1/snapshot/latest.jpg",
            ".livebucket/channels/cam1/snapshot/latest.jpg",
            "/snapshot/latest.jpg",
            "snapshot/latest.jpg",
        ] {
            assert_eq!(
                route("GET", object, &[]),
                Err(OssError::NotImplemented),
                "{object}"
            );
        }
        assert_eq!(
            route("PUT", "cam1/snapshot/latest.jpg", &[]),
            Err(OssError::MethodNotAllowed)
        );
    }
}
