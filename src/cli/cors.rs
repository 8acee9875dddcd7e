//! `livebucket cors`: the bucket's CORS rule (S3 PutBucketCors), so that
//! browsers on the given origins may GET its objects. Players fetch segments
//! from the S3 server's public endpoint, another origin than the page's (the
//! console's or a player site's), and a browser refuses them without it.

use anyhow::{Context, bail};
use aws_sdk_s3::types::{CorsConfiguration, CorsRule};

use livebucket::config::Config;

pub(super) async fn cors(
    config: &std::path::Path,
    bucket: &str,
    origins: &[String],
) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    if let Some(bad) = origins
        .iter()
        .find(|o| o.as_str() != "*" && (o.ends_with('/') || !o.contains("://")))
    {
        bail!(
            "--origin {bad:?}: give an origin such as http://127.0.0.1:8080 (no path, no trailing slash)"
        );
    }
    let client = super::args::bucket_client(&config, bucket)?;
    let rule = CorsRule::builder()
        .set_allowed_origins(Some(origins.to_vec()))
        .allowed_methods("GET")
        .allowed_methods("HEAD")
        .allowed_headers("*")
        .max_age_seconds(600)
        .build()
        .context("CORS rule")?;
    client
        .put_bucket_cors()
        .bucket(bucket)
        .cors_configuration(CorsConfiguration::builder().cors_rules(rule).build()?)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "PutBucketCors on {bucket} (the key must own the bucket on the S3 server): {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            )
        })?;
    println!(
        "bucket {bucket}: GET and HEAD allowed from {}",
        origins.join(", ")
    );
    Ok(())
}
