//! The `livebucket` command: `serve`, `sign push`, `sign play`, `ls`.
//! Errors are printed with their whole chain and exit with status 1 (2 for
//! usage errors, from clap).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use livebucket::auth::{presign, push};
use livebucket::config::{AccessKey, Config};

#[derive(Parser)]
#[command(
    name = "livebucket",
    version,
    about = "Live streaming into S3-compatible storage, beside nginx-rtmp"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer nginx-rtmp's callbacks and upload its HLS output to S3.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print signed URLs.
    #[command(subcommand)]
    Sign(Sign),
    /// Build a VOD playlist for a time range of a channel.
    Vod {
        #[command(flatten)]
        key: KeyArgs,
        #[arg(long)]
        bucket: String,
        #[arg(long)]
        channel: String,
        /// Range start, Unix seconds (fragments starting at or after it).
        #[arg(long)]
        start: u64,
        /// Range end, Unix seconds (fragments starting before it).
        #[arg(long)]
        end: u64,
        /// Write the playlist to this file (default: stdout).
        #[arg(long, conflicts_with = "put")]
        out: Option<PathBuf>,
        /// Store the playlist in the bucket as CHANNEL/NAME.
        #[arg(long)]
        put: Option<String>,
        #[arg(long, value_enum, default_value_t = UriMode::Relative)]
        urls: UriMode,
        /// For --urls absolute: base URL the object keys are appended to.
        #[arg(long)]
        base_url: Option<String>,
        /// For --urls presigned: SigV2 instead of SigV4.
        #[arg(long)]
        sigv2: bool,
        /// For --urls presigned: lifetime of the segment URLs.
        #[arg(long, default_value_t = 3600)]
        expires_in: u64,
    },
    /// List a bucket's objects with size, content type and metadata.
    Ls {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        bucket: String,
        #[arg(long, default_value = "")]
        prefix: String,
    },
}

#[derive(Subcommand)]
enum Sign {
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
        /// Object key, e.g. CHANNEL/index.m3u8.
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
        #[arg(long, value_enum, default_value_t = VodUris::Relative)]
        urls: VodUris,
        /// Sign a POST that stores the playlist as CHANNEL/NAME (default: a GET).
        #[arg(long)]
        post: bool,
        /// With --post: the object name (default vod.m3u8).
        #[arg(long, requires = "post")]
        name: Option<String>,
        #[command(flatten)]
        expiry: Expiry,
        /// livebucket's public base URL, e.g. http://127.0.0.1:8080.
        #[arg(long, value_name = "LIVEBUCKET_URL")]
        via_livebucket: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum VodUris {
    Relative,
    Presigned,
}

#[derive(Clone, Copy, ValueEnum)]
enum UriMode {
    Relative,
    Presigned,
    Absolute,
}

#[derive(Clone, Copy, ValueEnum)]
enum Scheme {
    Rgw,
    Oss,
}

#[derive(Args)]
struct KeyArgs {
    /// Config file holding the key (else LIVEBUCKET_ACCESS_KEY_ID / LIVEBUCKET_SECRET).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Which key of the config signs (default: the first enabled key allowed the bucket).
    #[arg(long)]
    key_id: Option<String>,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct Expiry {
    /// Seconds from now.
    #[arg(long)]
    expires_in: Option<u64>,
    /// Absolute expiry, Unix seconds.
    #[arg(long)]
    expires: Option<u64>,
}

impl Expiry {
    fn unix(&self) -> u64 {
        self.expires
            .unwrap_or_else(|| unix_now() + self.expires_in.unwrap_or(0))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Finds the signing key: config first, then the environment.
fn signing_key(args: &KeyArgs, bucket: &str) -> anyhow::Result<(AccessKey, Option<Config>)> {
    if let Some(path) = &args.config {
        let config = Config::load(path)?;
        let key = config
            .keys
            .iter()
            .filter(|k| !k.disabled)
            .find(|k| match &args.key_id {
                Some(id) => &k.id == id,
                None => k.may_write(bucket),
            })
            .cloned();
        return match key {
            Some(k) => Ok((k, Some(config))),
            None => bail!(
                "no enabled key in {} {}",
                path.display(),
                match &args.key_id {
                    Some(id) => format!("with id {id:?}"),
                    None => format!("may write bucket {bucket:?}"),
                }
            ),
        };
    }
    let id = std::env::var("LIVEBUCKET_ACCESS_KEY_ID")
        .context("give --config, or set LIVEBUCKET_ACCESS_KEY_ID and LIVEBUCKET_SECRET")?;
    let secret = std::env::var("LIVEBUCKET_SECRET").context("LIVEBUCKET_SECRET is not set")?;
    Ok((
        AccessKey {
            id,
            secret,
            buckets: vec![bucket.to_owned()],
            disabled: false,
        },
        None,
    ))
}

fn sign_push(
    key: &KeyArgs,
    bucket: &str,
    channel: &str,
    expires: u64,
    endpoint: &str,
    scheme: Scheme,
    playlist_name: Option<&str>,
) -> anyhow::Result<()> {
    push::validate_bucket(bucket).context("--bucket")?;
    push::validate_channel(channel).context("--channel")?;
    // RTMP clients send the stream name without decoding it, so a character
    // that has to be percent-encoded in a URL path could never verify.
    if let Some(c) = channel.chars().find(|c| "\"#%<>?[]^`{|}".contains(*c)) {
        bail!(
            "--channel: {c:?} cannot be sent unencoded in an RTMP URL; choose a channel name without it"
        );
    }
    if let Some(name) = playlist_name {
        push::validate_playlist_name(name).context("--playlist-name")?;
    }
    let (k, _) = signing_key(key, bucket)?;
    let endpoint = endpoint.trim_end_matches('/');
    let url = match scheme {
        Scheme::Rgw => {
            if playlist_name.is_some() {
                bail!("--playlist-name needs --scheme oss");
            }
            push::rgw_push_url(endpoint, bucket, channel, &k.id, &k.secret, expires)
        }
        Scheme::Oss => push::oss_push_url(
            endpoint,
            bucket,
            channel,
            &k.id,
            &k.secret,
            expires,
            playlist_name,
        ),
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

fn sign_vod(
    key: &KeyArgs,
    scope: presign::VodScope<'_>,
    expires: u64,
    base: &str,
) -> anyhow::Result<()> {
    let (k, config) = signing_key(key, scope.bucket)?;
    check_play_lifetime(config.as_ref(), expires)?;
    if !scope.name.is_empty() {
        push::validate_playlist_name(scope.name).context("--name")?;
    }
    let query = presign::vod_query(&k.id, &k.secret, &scope, expires)?;
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
fn check_play_lifetime(config: Option<&Config>, expires: u64) -> anyhow::Result<()> {
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
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn sign_play(
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
        let (channel, playlist) = object
            .rsplit_once('/')
            .context("--key-name must be CHANNEL/PLAYLIST for --via-livebucket")?;
        let query =
            presign::play_query(&k.id, &k.secret, bucket, channel, playlist, expiry.unix())?;
        // The signature covers the decoded names; the URL needs them encoded
        // (an OSS playlist name may hold spaces or non-ASCII).
        let enc = |s| percent_encoding::utf8_percent_encode(s, PATH_SEGMENT);
        println!(
            "{}/play/{}/{}/{}?{query}",
            base.trim_end_matches('/'),
            enc(bucket),
            enc(channel),
            enc(playlist)
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
    let loc = presign::S3Location {
        endpoint: &endpoint,
        path_style,
        bucket,
        key: object,
    };
    let url = if sigv2 {
        presign::presign_v2_get(&k.id, &k.secret, &loc, expiry.unix())?
    } else {
        let expires = expiry.unix();
        let now = unix_now();
        if expires <= now {
            bail!("--expires is in the past");
        }
        let signer = presign::SigV4Presigner::new(
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

async fn ls(config: &std::path::Path, bucket: &str, prefix: &str) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let key = config
        .keys
        .iter()
        .find(|k| k.may_write(bucket))
        .with_context(|| format!("no key in the config may access bucket {bucket:?}"))?;
    let store = livebucket::store::Store::new(&config.s3, std::slice::from_ref(key));
    let client = store.client(&key.id)?;
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.context("listing the bucket")?;
        for obj in page.contents() {
            let name = obj.key().unwrap_or_default();
            let head = client
                .head_object()
                .bucket(bucket)
                .key(name)
                .send()
                .await
                .with_context(|| format!("HEAD {name}"))?;
            let meta: Vec<String> = head
                .metadata()
                .map(|m| {
                    let mut v: Vec<_> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    v.sort();
                    v
                })
                .unwrap_or_default();
            println!(
                "{name}\t{}\t{}\t{}",
                obj.size().unwrap_or(0),
                head.content_type().unwrap_or("-"),
                meta.join(",")
            );
        }
    }
    Ok(())
}

struct VodArgs<'a> {
    key: &'a KeyArgs,
    bucket: &'a str,
    channel: &'a str,
    start: u64,
    end: u64,
    out: Option<&'a std::path::Path>,
    put: Option<&'a str>,
    urls: UriMode,
    base_url: Option<&'a str>,
    sigv2: bool,
    expires_in: u64,
}

async fn vod(a: VodArgs<'_>) -> anyhow::Result<()> {
    use livebucket::vod::{self, Uris};
    let (k, config) = signing_key(a.key, a.bucket)?;
    let config = config.context("livebucket vod needs --config (S3 endpoint and key)")?;
    vod::check_range(a.start, a.end, config.vod.max_range_secs)?;
    if let Some(name) = a.put {
        push::validate_playlist_name(name).context("--put")?;
    }
    let endpoint = config.s3.viewer_endpoint().to_owned();
    let path_style = config.s3.force_path_style;
    let uris = match a.urls {
        UriMode::Relative => Uris::Relative,
        UriMode::Absolute => Uris::Absolute {
            base: a
                .base_url
                .context("--urls absolute needs --base-url")?
                .to_owned(),
        },
        UriMode::Presigned if a.sigv2 => Uris::SigV2 {
            key_id: k.id.clone(),
            secret: k.secret.clone(),
            expires: unix_now() + a.expires_in,
            endpoint,
            path_style,
        },
        UriMode::Presigned => Uris::SigV4 {
            presigner: presign::SigV4Presigner::new(
                &k.id,
                &k.secret,
                &config.s3.region,
                time::OffsetDateTime::now_utc(),
                std::time::Duration::from_secs(a.expires_in),
            )?,
            endpoint,
            path_style,
        },
    };
    let store = livebucket::store::Store::new(&config.s3, std::slice::from_ref(&k));
    let v = vod::build(
        &store,
        &k.id,
        a.bucket,
        a.channel,
        (a.start, a.end),
        config.vod.max_fragments,
        &uris,
    )
    .await?;
    eprintln!(
        "livebucket: {} segments from the {}",
        v.segments,
        v.source.as_str()
    );
    match (a.out, a.put) {
        (Some(path), _) => std::fs::write(path, &v.playlist)
            .with_context(|| format!("cannot write {}", path.display()))?,
        (None, Some(name)) => {
            let object = livebucket::store::playlist_key(a.channel, name);
            store
                .put_playlist(&k.id, a.bucket, &object, v.playlist, "max-age=60")
                .await?;
            println!("s3://{}/{object}", a.bucket);
        }
        (None, None) => print!("{}", v.playlist),
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "info,aws_config=warn,aws_smithy_runtime=warn,tower_http=warn".into()
            }),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in files or journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Sign(Sign::Push {
            key,
            bucket,
            channel,
            expiry,
            endpoint,
            scheme,
            playlist_name,
        }) => sign_push(
            &key,
            &bucket,
            &channel,
            expiry.unix(),
            &endpoint,
            scheme,
            playlist_name.as_deref(),
        ),
        Command::Sign(Sign::Play {
            key,
            bucket,
            key_name,
            expiry,
            endpoint,
            sigv2,
            via_livebucket,
        }) => sign_play(
            &key,
            &bucket,
            &key_name,
            &expiry,
            endpoint.as_deref(),
            sigv2,
            via_livebucket.as_deref(),
        ),
        Command::Sign(Sign::Vod {
            key,
            bucket,
            channel,
            start,
            end,
            urls,
            post,
            name,
            expiry,
            via_livebucket,
        }) => sign_vod(
            &key,
            presign::VodScope {
                method: if post { "POST" } else { "GET" },
                bucket: &bucket,
                channel: &channel,
                start,
                end,
                urls: match urls {
                    VodUris::Relative => "relative",
                    VodUris::Presigned => "presigned",
                },
                name: match (post, &name) {
                    (false, _) => "",
                    (true, Some(n)) => n,
                    (true, None) => "vod.m3u8",
                },
            },
            expiry.unix(),
            &via_livebucket,
        ),
        Command::Vod {
            key,
            bucket,
            channel,
            start,
            end,
            out,
            put,
            urls,
            base_url,
            sigv2,
            expires_in,
        } => runtime().and_then(|rt| {
            rt.block_on(vod(VodArgs {
                key: &key,
                bucket: &bucket,
                channel: &channel,
                start,
                end,
                out: out.as_deref(),
                put: put.as_deref(),
                urls,
                base_url: base_url.as_deref(),
                sigv2,
                expires_in,
            }))
        }),
        Command::Serve { config } => {
            runtime().and_then(|rt| rt.block_on(livebucket::app::serve(config)))
        }
        Command::Ls {
            config,
            bucket,
            prefix,
        } => runtime().and_then(|rt| rt.block_on(ls(&config, &bucket, &prefix))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `livebucket sign push | head -n1` closes stdout early: not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("livebucket: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
