//! `livebucket sign push|play|vod`: signed URLs for streamers and viewers.

use std::io::Write;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};

use super::args::{Expiry, KeyArgs, signing_key, unix_now};
use livebucket::config::Config;
use livebucket::names;
use livebucket::sign::{self, encode, play, sigv2, sigv4, url};

#[derive(Subcommand)]
pub(super) enum Sign {
    /// A signed RTMP push URL (first line), an OBS server/stream key split and
    /// an ffmpeg command.
    Push {
        #[command(flatten)]
        key: KeyArgs,
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        channel: String,
        #[command(flatten)]
        expiry: Expiry,
        /// `rtmp://HOST:1935/live` (RGW) or `rtmp://BUCKET.LIVE-DOMAIN/live` (OSS).
        #[arg(long)]
        endpoint: String,
        #[arg(long, value_enum, default_value_t = Scheme::Rgw)]
        scheme: Scheme,
        /// OSS only: name of the live playlist object instead of index.m3u8.
        #[arg(long)]
        playlist_name: Option<String>,
    },
    /// A presigned S3 GET URL for one object.
    Play {
        #[command(flatten)]
        key: KeyArgs,
        #[arg(long)]
        bucket: String,
        /// Object key, e.g. CHANNEL/index.m3u8. With --via-livebucket:
        /// CHANNEL/PLAYLIST (CHANNEL/master.m3u8 for a channel's master
        /// playlist) or CHANNEL/RUNG/PLAYLIST for one rendition.
        #[arg(long)]
        key_name: String,
        #[command(flatten)]
        expiry: Expiry,
        /// S3 endpoint for the URL (default: the config's s3.public_endpoint or s3.endpoint).
        #[arg(long)]
        endpoint: Option<String>,
        /// Legacy query-string signature (AWSAccessKeyId/Expires/Signature).
        #[arg(long)]
        sigv2: bool,
        /// Sign a livebucket `/play` URL (playlist with presigned segments)
        /// on this livebucket base URL (its public listener), e.g.
        /// http://127.0.0.1:8080.
        #[arg(long, value_name = "LIVEBUCKET_URL")]
        via_livebucket: Option<String>,
    },
    /// A signed VOD API URL on livebucket's public listener. The signature
    /// binds the method, the range, the URL mode and (with --post) the name.
    Vod {
        #[command(flatten)]
        key: KeyArgs,
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        channel: String,
        /// Range start, Unix seconds.
        #[arg(long)]
        start: u64,
        /// Range end, Unix seconds.
        #[arg(long)]
        end: u64,
        /// Segment URIs of the playlist: relative, or presigned S3 URLs.
        /// Default: presigned for a GET (the link plays as is), relative
        /// with --post (the playlist is stored next to its fragments).
        #[arg(long, value_enum)]
        urls: Option<VodUris>,
        /// Sign a POST that stores the playlist as CHANNEL/NAME (default: a GET).
        #[arg(long)]
        post: bool,
        /// With --post: the object name (default vod.m3u8).
        #[arg(long, requires = "post")]
        name: Option<String>,
        /// A GET of one variant of a channel with renditions: `source` or a
        /// rung's name. Without it, a range with renditions answers a
        /// master playlist naming each variant's URL.
        #[arg(long, conflicts_with = "post")]
        variant: Option<String>,
        #[command(flatten)]
        expiry: Expiry,
        /// livebucket's public base URL, e.g. http://127.0.0.1:8080.
        #[arg(long, value_name = "LIVEBUCKET_URL")]
        via_livebucket: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum VodUris {
    Relative,
    Presigned,
}

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum Scheme {
    Rgw,
    Oss,
}

pub(super) fn sign_push(
    key: &KeyArgs,
    bucket: &str,
    channel: &str,
    expires: u64,
    endpoint: &str,
    scheme: Scheme,
    playlist_name: Option<&str>,
) -> anyhow::Result<()> {
    names::validate_bucket(bucket).context("--bucket")?;
    names::validate_channel(channel).context("--channel")?;
    // RTMP clients send the stream name without decoding it, so a character
    // that has to be percent-encoded in a URL path could never verify.
    if let Some(c) = channel.chars().find(|c| "\"#%<>?[]^`{|}".contains(*c)) {
        bail!(
            "--channel: {c:?} cannot be sent unencoded in an RTMP URL; choose a channel name without it"
        );
    }
    if let Some(name) = playlist_name {
        names::validate_playlist_name(name).context("--playlist-name")?;
    }
    let (k, _) = signing_key(key, bucket)?;
    let endpoint = endpoint.trim_end_matches('/');
    let url = match scheme {
        Scheme::Rgw => {
            if playlist_name.is_some() {
                bail!("--playlist-name needs --scheme oss");
            }
            sign::push::rgw_push_url(endpoint, bucket, channel, &k.id, &k.secret, expires)?
        }
        Scheme::Oss => sign::push::oss_push_url(
            endpoint,
            bucket,
            channel,
            &k.id,
            &k.secret,
            expires,
            playlist_name,
        )?,
    };
    let stream_key = url
        .strip_prefix(endpoint)
        .and_then(|s| s.strip_prefix('/'))
        .unwrap_or(&url);
    // nginx-rtmp silently cuts stream name + query at 255 bytes, which
    // would make the signature unverifiable.
    if stream_key.len() > 255 {
        bail!(
            "the stream name and query are {} bytes; nginx-rtmp truncates them at 255, so this URL could never be accepted (use a shorter channel or playlist name)",
            stream_key.len()
        );
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{url}")?;
    writeln!(out, "OBS server: {endpoint}")?;
    writeln!(out, "OBS stream key: {stream_key}")?;
    writeln!(
        out,
        "ffmpeg -re -i INPUT -c:v libx264 -g 60 -c:a aac -f flv '{url}'"
    )?;
    Ok(())
}

pub(super) fn sign_vod(
    key: &KeyArgs,
    scope: play::VodScope<'_>,
    variant: Option<&str>,
    expires: u64,
    base: &str,
) -> anyhow::Result<()> {
    let (k, config) = signing_key(key, scope.bucket)?;
    check_play_lifetime(config.as_ref(), expires)?;
    if !scope.name.is_empty() {
        names::validate_playlist_name(scope.name).context("--name")?;
    }
    let query = match variant {
        Some(v) => play::vod_variant_query(&k.id, &k.secret, &scope, v, expires)?,
        None => play::vod_query(&k.id, &k.secret, &scope, expires)?,
    };
    let enc = |s| percent_encoding::utf8_percent_encode(s, PATH_SEGMENT);
    println!(
        "{}/api/v1/buckets/{}/channels/{}/vod?{query}",
        base.trim_end_matches('/'),
        enc(scope.bucket),
        enc(scope.channel),
    );
    Ok(())
}

/// livebucket refuses a play or VOD URL that expires later than
/// `auth.max_play_lifetime_secs` from now; say so before printing one.
pub(super) fn check_play_lifetime(config: Option<&Config>, expires: u64) -> anyhow::Result<()> {
    let max = config.map_or(604_800, |c| c.auth.max_play_lifetime_secs);
    if expires > unix_now() + max {
        bail!(
            "the URL would expire more than {max} s from now; livebucket refuses it (auth.max_play_lifetime_secs)"
        );
    }
    Ok(())
}

/// One URL path segment: RFC 3986 unreserved characters stay, the rest is
/// percent-encoded.
pub(super) const PATH_SEGMENT: &percent_encoding::AsciiSet = encode::UNRESERVED;

pub(super) fn sign_play(
    key: &KeyArgs,
    bucket: &str,
    object: &str,
    expiry: &Expiry,
    endpoint: Option<&str>,
    sigv2: bool,
    via: Option<&str>,
) -> anyhow::Result<()> {
    let (k, config) = signing_key(key, bucket)?;
    if let Some(base) = via {
        check_play_lifetime(config.as_ref(), expiry.unix())?;
        let names: Vec<&str> = object.split('/').collect();
        let query = match names[..] {
            [channel, playlist] => {
                play::play_query(&k.id, &k.secret, bucket, channel, playlist, expiry.unix())?
            }
            [channel, rung, playlist] => play::play_variant_query(
                &k.id,
                &k.secret,
                &play::VariantPath {
                    bucket,
                    channel,
                    rung,
                    playlist,
                },
                expiry.unix(),
            )?,
            _ => bail!(
                "--key-name must be CHANNEL/PLAYLIST or CHANNEL/RUNG/PLAYLIST for --via-livebucket"
            ),
        };
        // The signature covers the decoded names; the URL needs them encoded
        // (an OSS playlist name may hold spaces or non-ASCII).
        let path: Vec<String> = std::iter::once(bucket)
            .chain(names)
            .map(|s| percent_encoding::utf8_percent_encode(s, PATH_SEGMENT).to_string())
            .collect();
        println!(
            "{}/play/{}?{query}",
            base.trim_end_matches('/'),
            path.join("/")
        );
        return Ok(());
    }
    let endpoint = endpoint
        .map(str::to_owned)
        .or_else(|| config.as_ref().map(|c| c.s3.viewer_endpoint().to_owned()))
        .context("give --endpoint (or --config with s3.endpoint)")?;
    let path_style = config.as_ref().is_none_or(|c| c.s3.force_path_style);
    let region = config
        .as_ref()
        .map_or_else(|| "garage".to_owned(), |c| c.s3.region.clone());
    let loc = url::S3Location {
        endpoint: &endpoint,
        path_style,
        bucket,
        key: object,
    };
    let url = if sigv2 {
        sigv2::presign_v2_get(&k.id, &k.secret, &loc, expiry.unix())?
    } else {
        let expires = expiry.unix();
        let now = unix_now();
        if expires <= now {
            bail!("--expires is in the past");
        }
        let signer = sigv4::SigV4Presigner::new(
            &k.id,
            &k.secret,
            &region,
            time::OffsetDateTime::now_utc(),
            std::time::Duration::from_secs(expires - now),
        )?;
        signer.presign_get(&loc)?
    };
    println!("{url}");
    Ok(())
}
