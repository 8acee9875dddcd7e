//! `livebucket vod`: a VOD playlist for a time range, built here from the
//! bucket (no server needed).

use anyhow::Context;
use clap::ValueEnum;

use super::args::{KeyArgs, signing_key, unix_now};
use livebucket::auth::push;
use livebucket::sign::sigv4;

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum UriMode {
    Relative,
    Presigned,
    Absolute,
}

pub(super) struct VodArgs<'a> {
    pub(super) key: &'a KeyArgs,
    pub(super) bucket: &'a str,
    pub(super) channel: &'a str,
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) out: Option<&'a std::path::Path>,
    pub(super) put: Option<&'a str>,
    pub(super) urls: UriMode,
    pub(super) base_url: Option<&'a str>,
    pub(super) sigv2: bool,
    pub(super) expires_in: u64,
}

pub(super) async fn vod(a: VodArgs<'_>) -> anyhow::Result<()> {
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
            presigner: sigv4::SigV4Presigner::new(
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
        vod::Limits::of(&config.vod),
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
            let object = livebucket::layout::playlist_key(a.channel, name);
            store
                .put(
                    &k.id,
                    a.bucket,
                    &object,
                    v.playlist.into_bytes(),
                    &livebucket::store::ObjectMeta::playlist("max-age=60"),
                )
                .await?;
            println!("s3://{}/{object}", a.bucket);
        }
        (None, None) => print!("{}", v.playlist),
    }
    Ok(())
}
