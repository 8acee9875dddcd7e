//! Arguments shared by several commands: which key signs, and when a URL
//! expires.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

use livebucket::config::{AccessKey, Config};

#[derive(Args)]
pub(super) struct KeyArgs {
    /// Config file holding the key (else LIVEBUCKET_ACCESS_KEY_ID / LIVEBUCKET_SECRET).
    #[arg(long, short)]
    pub(super) config: Option<PathBuf>,
    /// Which key of the config signs (default: the first enabled key allowed the bucket).
    #[arg(long)]
    pub(super) key_id: Option<String>,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
pub(super) struct Expiry {
    /// Seconds from now.
    #[arg(long)]
    pub(super) expires_in: Option<u64>,
    /// Absolute expiry, Unix seconds.
    #[arg(long)]
    pub(super) expires: Option<u64>,
}

impl Expiry {
    pub(super) fn unix(&self) -> u64 {
        self.expires
            .unwrap_or_else(|| unix_now() + self.expires_in.unwrap_or(0))
    }
}

pub(super) use livebucket::clock::unix_now;

/// An S3 client with the first key in `config` that may write `bucket`.
pub(super) fn bucket_client(config: &Config, bucket: &str) -> anyhow::Result<aws_sdk_s3::Client> {
    let key = config
        .keys
        .iter()
        .find(|k| k.may_write(bucket))
        .with_context(|| format!("no key in the config may access bucket {bucket:?}"))?;
    let store = livebucket::store::Store::new(&config.s3, std::slice::from_ref(key));
    Ok(store.client(&key.id)?)
}

/// Finds the signing key: config first, then the environment.
pub(super) fn signing_key(
    args: &KeyArgs,
    bucket: &str,
) -> anyhow::Result<(AccessKey, Option<Config>)> {
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
