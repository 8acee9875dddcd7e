//! `livebucket ls`: a bucket's objects with size, content type and metadata.

use anyhow::Context;

use livebucket::config::Config;

pub(super) async fn ls(config: &std::path::Path, bucket: &str, prefix: &str) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let client = super::args::bucket_client(&config, bucket)?;
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
