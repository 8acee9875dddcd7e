//! [`super::sigv4::HeaderSigner`] against `aws-sigv4`, the SDK's signer, for
//! the same requests.

use super::sigv4::*;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use proptest::prelude::*;
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;

/// What AWS's own signer says for the same request.
fn reference(
    key_id: &str,
    secret: &str,
    region: &str,
    path: &str,
    headers: &[(&str, &str)],
    at: SystemTime,
) -> Signed {
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let identity = Credentials::new(key_id, secret, None, None, "test").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(at)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let request = SignableRequest::new(
        "PUT",
        path,
        headers.iter().copied(),
        SignableBody::UnsignedPayload,
    )
    .unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    let header = |name: &str| {
        instructions
            .headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_owned())
            .unwrap()
    };
    Signed {
        amz_date: header("x-amz-date"),
        authorization: header("authorization"),
    }
}

fn ours(signer: &HeaderSigner, path: &str, headers: &[(&str, &str)], at: SystemTime) -> Signed {
    signer
        .sign("PUT", path, headers, OffsetDateTime::from(at))
        .unwrap()
}

#[test]
fn fragment_put_matches_aws_sigv4() {
    let headers = [
        ("host", "127.0.0.1:3900"),
        ("content-type", "video/mp2t"),
        ("content-length", "376940"),
        ("cache-control", "public, max-age=31536000, immutable"),
        ("x-amz-meta-extinf", "2.000"),
        ("x-amz-meta-session", "1700000000000-ab12"),
    ];
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let path = "/media/cam/1700000000000%20a.ts";
    let signer = HeaderSigner::new("GK31c2f218a2e44f485b94239e", "b892c0665f", "garage");
    assert_eq!(
        ours(&signer, path, &headers, at),
        reference(
            "GK31c2f218a2e44f485b94239e",
            "b892c0665f",
            "garage",
            path,
            &headers,
            at
        )
    );
}

#[test]
fn the_days_key_changes_at_midnight() {
    let signer = HeaderSigner::new("AKID", "secret", "us-east-1");
    let headers = [("host", "s3.lan"), ("content-length", "0")];
    let before = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_006_399);
    let after = before + Duration::from_secs(1);
    for at in [before, after, before] {
        assert_eq!(
            ours(&signer, "/b/k", &headers, at),
            reference("AKID", "secret", "us-east-1", "/b/k", &headers, at)
        );
    }
}

#[test]
fn upper_case_header_names_are_refused() {
    let signer = HeaderSigner::new("AKID", "secret", "garage");
    let err = signer.sign(
        "PUT",
        "/b/k",
        &[("Host", "s3.lan")],
        OffsetDateTime::now_utc(),
    );
    assert!(err.is_err());
}

proptest! {
    #[test]
    fn any_headers_match_aws_sigv4(
        values in proptest::collection::vec("[ -~]{0,40}", 1..4),
        secs in 0u64..4_000_000_000,
        key in "[a-z0-9]{1,8}(/[a-z0-9._~-]{1,12}){0,3}",
    ) {
        let names = ["cache-control", "content-type", "x-amz-meta-a"];
        let mut headers = vec![("host", "s3.example:9000")];
        headers.extend(names.iter().copied().zip(values.iter().map(String::as_str)));
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let path = format!("/bucket/{key}");
        let signer = HeaderSigner::new("AKID", "s3cr3t", "eu-1");
        prop_assert_eq!(
            ours(&signer, &path, &headers, at),
            reference("AKID", "s3cr3t", "eu-1", &path, &headers, at)
        );
    }
}
