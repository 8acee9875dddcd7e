//! The `livebucket` command line: `serve`, `sign push|play|vod`, `vod`, `ls`,
//! `channel …`, `cors`, `cluster status`, `retention sweep`. Each command has its module; this
//! one parses the arguments and dispatches. Errors are printed with their whole chain and exit with
//! status 1 (2 for usage errors, from clap).

mod args;
mod channel;
mod cors;
mod ls;
mod retention;
mod sign;
mod vod;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use args::KeyArgs;
use livebucket::sign::play;
use sign::{Sign, VodUris, sign_play, sign_push, sign_vod};
use vod::{UriMode, VodArgs, vod};

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
    /// Manage channels through a running livebucket's OSS LiveChannel API.
    #[command(subcommand)]
    Channel(channel::Channel),
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
    /// Let browsers on these origins GET the bucket's objects (S3
    /// PutBucketCors): the console's origin and your players'.
    Cors {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        bucket: String,
        /// An origin such as http://127.0.0.1:8080, or *; repeatable.
        #[arg(long = "origin", required = true)]
        origins: Vec<String>,
    },
    /// The cluster as etcd sees it (config section `cluster`).
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Recordings past their retention period (config section `retention`).
    #[command(subcommand)]
    Retention(RetentionCmd),
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
enum RetentionCmd {
    /// Ask the running livebucket (its operator listener) to sweep now, and
    /// print what it deleted as JSON.
    Sweep {
        #[arg(long, short)]
        config: PathBuf,
        /// List what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Nodes, their lease health and the channels each one publishes.
    Status {
        #[arg(long, short)]
        config: PathBuf,
    },
}

async fn cluster_status(config: &std::path::Path) -> anyhow::Result<()> {
    let config = livebucket::config::Config::load(config)?;
    let cluster = config
        .cluster
        .as_ref()
        .context("the config has no [cluster] section: this node runs alone")?;
    let text = livebucket::cluster::status::render(cluster)
        .await
        .context("cannot read the cluster from etcd")?;
    print!("{text}");
    Ok(())
}

pub(crate) fn run() -> ExitCode {
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
            variant,
            expiry,
            via_livebucket,
        }) => {
            let method = if post { "POST" } else { "GET" };
            sign_vod(
                &key,
                play::VodScope {
                    method,
                    bucket: &bucket,
                    channel: &channel,
                    start,
                    end,
                    urls: match urls {
                        Some(VodUris::Relative) => "relative",
                        Some(VodUris::Presigned) => "presigned",
                        None => play::default_vod_urls(method),
                    },
                    name: match (post, &name) {
                        (false, _) => "",
                        (true, Some(n)) => n,
                        (true, None) => "vod.m3u8",
                    },
                },
                variant.as_deref(),
                expiry.unix(),
                &via_livebucket,
            )
        }
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
        Command::Channel(cmd) => runtime().and_then(|rt| rt.block_on(channel::run(cmd))),
        Command::Cluster(ClusterCmd::Status { config }) => {
            runtime().and_then(|rt| rt.block_on(cluster_status(&config)))
        }
        Command::Retention(RetentionCmd::Sweep { config, dry_run }) => {
            runtime().and_then(|rt| rt.block_on(retention::sweep(&config, dry_run)))
        }
        Command::Serve { config } => {
            runtime().and_then(|rt| rt.block_on(livebucket::app::serve(config)))
        }
        Command::Cors {
            config,
            bucket,
            origins,
        } => runtime().and_then(|rt| rt.block_on(cors::cors(&config, &bucket, &origins))),
        Command::Ls {
            config,
            bucket,
            prefix,
        } => runtime().and_then(|rt| rt.block_on(ls::ls(&config, &bucket, &prefix))),
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
