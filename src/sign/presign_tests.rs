//! The URL signers ([`super::sigv4`], [`super::sigv2`], [`super::play`])
//! against vectors from independent signers (botocore, Python's `hmac`).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use time::{OffsetDateTime, UtcOffset};

use super::SignError;
use super::play::*;
use super::sigv2::presign_v2_get;
use super::sigv4::*;
use super::url::S3Location;

const GARAGE_KEY_ID: &str = "GK31c2f218a2e44f485b94239e";
const GARAGE_SECRET: &str = "b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f9d769d67f16c3835";
/// 2024-01-02T03:04:05Z
const T_2024_01_02_030405: i64 = 1_704_164_645;
/// Space, '+', and two-, three-byte UTF-8.
const ODD_KEY: &str = "chan one/seg+1 \u{fc}\u{6f22}.ts";

fn garage_presigner(expires: u64) -> SigV4Presigner {
    let now = OffsetDateTime::from_unix_timestamp(T_2024_01_02_030405).expect("valid time");
    SigV4Presigner::new(
        GARAGE_KEY_ID,
        GARAGE_SECRET,
        "garage",
        now,
        Duration::from_secs(expires),
    )
    .expect("valid presigner")
}

fn loc<'a>(endpoint: &'a str, path_style: bool, key: &'a str) -> S3Location<'a> {
    S3Location {
        endpoint,
        path_style,
        bucket: "live",
        key,
    }
}

// The SigV4 URLs below come from botocore 1.43 (Debian's python3-boto3
// environment), not from this code:
//
// import datetime
// from unittest import mock
// import boto3
// from botocore.config import Config
//
// NOW = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
// KEY = "chan one/seg+1 \u00fc\u6f22.ts"
//
// def presign(endpoint, style, key, expires):
//     c = boto3.client(
//         "s3", endpoint_url=endpoint, region_name="garage",
//         aws_access_key_id="GK31c2f218a2e44f485b94239e",
//         aws_secret_access_key="b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f9d769d67f16c3835",
//         config=Config(signature_version="s3v4", s3={"addressing_style": style}),
//     )
//     with mock.patch("botocore.auth.get_current_datetime", return_value=NOW):
//         return c.generate_presigned_url(
//             "get_object", Params={"Bucket": "live", "Key": key}, ExpiresIn=expires)
//
// print(presign("http://127.0.0.1:3900", "path", KEY, 3600))
// print(presign("https://s3.example.com", "virtual", KEY, 604800))
// print(presign("http://127.0.0.1:3900", "path", "chan/1700000000000.ts", 86400))
// print(presign("https://s3.example.com:8443", "virtual", "a~b*c'(d)!e=f%g&h;i:j@k$l,m", 60))
// print(presign("https://s3.example.com:443", "virtual", "chan/1700000000000.ts", 60))

#[test]
fn sigv4_path_style_special_key_matches_botocore() {
    let url = garage_presigner(3600)
        .presign_get(&loc("http://127.0.0.1:3900", true, ODD_KEY))
        .expect("presign");
    assert_eq!(
        url,
        "http://127.0.0.1:3900/live/chan%20one/seg%2B1%20%C3%BC%E6%BC%A2.ts\
         ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Credential=GK31c2f218a2e44f485b94239e%2F20240102%2Fgarage%2Fs3%2Faws4_request\
         &X-Amz-Date=20240102T030405Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host\
         &X-Amz-Signature=6fbe6266cb2d8585b7929e5653e597af00abb031a63163c42c71cd3a08a54608"
    );
}

#[test]
fn sigv4_virtual_hosted_max_expiry_matches_botocore() {
    let url = garage_presigner(604_800)
        .presign_get(&loc("https://s3.example.com", false, ODD_KEY))
        .expect("presign");
    assert_eq!(
        url,
        "https://live.s3.example.com/chan%20one/seg%2B1%20%C3%BC%E6%BC%A2.ts\
         ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Credential=GK31c2f218a2e44f485b94239e%2F20240102%2Fgarage%2Fs3%2Faws4_request\
         &X-Amz-Date=20240102T030405Z&X-Amz-Expires=604800&X-Amz-SignedHeaders=host\
         &X-Amz-Signature=fe5662a701e6813186945eac6c97d71cfdc740b9c3bdc849267814630f3ef5e6"
    );
}

#[test]
fn sigv4_segment_key_matches_botocore() {
    let url = garage_presigner(86_400)
        .presign_get(&loc(
            "http://127.0.0.1:3900/",
            true,
            "chan/1700000000000.ts",
        ))
        .expect("presign");
    assert_eq!(
        url,
        "http://127.0.0.1:3900/live/chan/1700000000000.ts\
         ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Credential=GK31c2f218a2e44f485b94239e%2F20240102%2Fgarage%2Fs3%2Faws4_request\
         &X-Amz-Date=20240102T030405Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
         &X-Amz-Signature=349db21f90d9ee351cca767f144e5b546bf297c41deb0d292c3b62b5bcb72fd6"
    );
}

#[test]
fn sigv4_reserved_characters_and_port_match_botocore() {
    let url = garage_presigner(60)
        .presign_get(&loc(
            "https://s3.example.com:8443",
            false,
            "a~b*c'(d)!e=f%g&h;i:j@k$l,m",
        ))
        .expect("presign");
    assert_eq!(
        url,
        "https://live.s3.example.com:8443/a~b%2Ac%27%28d%29%21e%3Df%25g%26h%3Bi%3Aj%40k%24l%2Cm\
         ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Credential=GK31c2f218a2e44f485b94239e%2F20240102%2Fgarage%2Fs3%2Faws4_request\
         &X-Amz-Date=20240102T030405Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host\
         &X-Amz-Signature=9305f5d02ce342559d98cf10baf5ccc58813ca373b89849075f43937aadfc67a"
    );
}

#[test]
fn sigv4_default_port_is_dropped_from_url_and_signature() {
    // botocore signs `host` without :443 but leaves it in the URL; we
    // drop it from both, with the same signature.
    let presigner = garage_presigner(60);
    let expected = "https://live.s3.example.com/chan/1700000000000.ts\
         ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Credential=GK31c2f218a2e44f485b94239e%2F20240102%2Fgarage%2Fs3%2Faws4_request\
         &X-Amz-Date=20240102T030405Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host\
         &X-Amz-Signature=142dad80dcd2c91953c4dab9484b6a2937ba270ac6e2d4a0f4bb9f992d720885";
    for endpoint in [
        "https://s3.example.com:443",
        "https://s3.example.com",
        "HTTPS://S3.Example.COM:443/",
    ] {
        let url = presigner
            .presign_get(&loc(endpoint, false, "chan/1700000000000.ts"))
            .expect("presign");
        assert_eq!(url, expected, "endpoint {endpoint}");
    }
}

/// The example in AWS's "Authenticating Requests: Using Query Parameters"
/// page, also reproduced with botocore.
#[test]
fn sigv4_aws_documentation_example() {
    let now = OffsetDateTime::from_unix_timestamp(1_369_353_600).expect("valid time");
    let presigner = SigV4Presigner::new(
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "us-east-1",
        now,
        Duration::from_secs(86_400),
    )
    .expect("valid presigner");
    let url = presigner
        .presign_get(&S3Location {
            endpoint: "https://s3.amazonaws.com",
            path_style: false,
            bucket: "examplebucket",
            key: "test.txt",
        })
        .expect("presign");
    assert_eq!(
        url,
        "https://examplebucket.s3.amazonaws.com/test.txt\
         ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
         &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
         &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    );
}

#[test]
fn sigv4_signing_time_is_taken_in_utc() {
    let utc = OffsetDateTime::from_unix_timestamp(T_2024_01_02_030405).expect("valid time");
    let offset = UtcOffset::from_hms(-5, 0, 0).expect("valid offset");
    let shifted = SigV4Presigner::new(
        GARAGE_KEY_ID,
        GARAGE_SECRET,
        "garage",
        utc.to_offset(offset),
        Duration::from_secs(3600),
    )
    .expect("valid presigner");
    let target = loc("http://127.0.0.1:3900", true, ODD_KEY);
    assert_eq!(
        shifted.presign_get(&target),
        garage_presigner(3600).presign_get(&target)
    );
}

#[test]
fn sigv4_expiry_bounds() {
    let now = OffsetDateTime::from_unix_timestamp(T_2024_01_02_030405).expect("valid time");
    let make = |d| SigV4Presigner::new(GARAGE_KEY_ID, GARAGE_SECRET, "garage", now, d);
    assert!(make(SIGV4_MAX_EXPIRY).is_ok());
    assert_eq!(
        make(SIGV4_MAX_EXPIRY + Duration::from_secs(1)).err(),
        Some(SignError::ExpiryTooLong {
            max: 604_800,
            requested: 604_801
        })
    );
    assert!(matches!(
        make(Duration::from_millis(999)),
        Err(SignError::Malformed(_))
    ));
}

#[test]
fn sigv4_rejects_bad_endpoints() {
    let p = garage_presigner(60);
    for endpoint in [
        "127.0.0.1:3900",
        "ftp://127.0.0.1",
        "http://",
        "http://127.0.0.1:3900/prefix",
        "http://127.0.0.1:3900?x=1",
        "http://user:pass@127.0.0.1:3900",
        "http://127.0.0.1:",
        "http://127.0.0.1:0",
        "http://127.0.0.1:+80",
        "http://127.0.0.1:65536",
        "http://[::1",
        "http://[zz]:3900",
        "http://ho st",
    ] {
        let err = p
            .presign_get(&loc(endpoint, true, "k"))
            .expect_err(endpoint);
        assert!(
            matches!(err, SignError::BadEndpoint(_)),
            "{endpoint}: {err}"
        );
        assert!(!err.to_string().contains("pass"), "{err}");
    }
    // An IP address cannot carry a bucket label.
    assert!(matches!(
        p.presign_get(&loc("http://127.0.0.1:3900", false, "k")),
        Err(SignError::BadEndpoint(_))
    ));
}

#[test]
fn sigv4_ipv6_endpoint_keeps_brackets_and_port() {
    let url = garage_presigner(60)
        .presign_get(&loc("http://[::1]:3900", true, "k"))
        .expect("presign");
    assert!(url.starts_with("http://[::1]:3900/live/k?"), "{url}");
}

#[test]
fn sigv4_rejects_unsignable_names() {
    let p = garage_presigner(60);
    let long_key = "k".repeat(1025);
    let at = |bucket, path_style, key| {
        p.presign_get(&S3Location {
            endpoint: "https://s3.example.com",
            path_style,
            bucket,
            key,
        })
    };
    assert!(matches!(at("", true, "k"), Err(SignError::Malformed(_))));
    assert!(matches!(at("a/b", true, "k"), Err(SignError::Malformed(_))));
    assert!(matches!(at("live", true, ""), Err(SignError::Malformed(_))));
    assert!(matches!(
        at("live", true, &long_key),
        Err(SignError::Malformed(_))
    ));
    assert!(matches!(
        at("Live", false, "k"),
        Err(SignError::Malformed(_))
    ));
    assert!(matches!(
        at("-live", false, "k"),
        Err(SignError::Malformed(_))
    ));
    // Path style can address any bucket name the store accepts.
    assert!(at("Live_Bucket", true, "k").is_ok());
}

#[test]
fn sigv4_debug_hides_key_material() {
    let debug = format!("{:?}", garage_presigner(60));
    assert!(!debug.contains(GARAGE_SECRET), "{debug}");
    assert!(debug.contains("SigV4Presigner"), "{debug}");
}

// SigV2, made with Python's hmac module:
//
// python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"h7GhxuBLTrlhVUyxSPUKUV8r/2EI4ngqJxD7iBdBYLhwluN30JaT3Q==",b"GET\n\n\n1700003600\n/live/chan/1700000000000.ts",hashlib.sha1).digest()).decode())'
// -> A20ZqqH4K4E3C7d8drq0Lz8APoY=
// python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"h7GhxuBLTrlhVUyxSPUKUV8r/2EI4ngqJxD7iBdBYLhwluN30JaT3Q==",b"GET\n\n\n1700003600\n/live/chan%20one/seg%2B1%20%C3%BC.ts",hashlib.sha1).digest()).decode())'
// -> xPABJsb77YSMiZypeuns6QiXnGY=
//
// Both agree with botocore's HmacV1QueryAuth (boto3 client with
// signature_version="s3", time.time patched to 1700000000, ExpiresIn=3600),
// which orders the parameters AWSAccessKeyId, Signature, Expires.
const V2_KEY_ID: &str = "0555b35654ad1656d804";
const V2_SECRET: &str = "h7GhxuBLTrlhVUyxSPUKUV8r/2EI4ngqJxD7iBdBYLhwluN30JaT3Q==";

#[test]
fn sigv2_path_style_matches_python() {
    let url = presign_v2_get(
        V2_KEY_ID,
        V2_SECRET,
        &loc("http://127.0.0.1:7480", true, "chan/1700000000000.ts"),
        1_700_003_600,
    )
    .expect("presign");
    assert_eq!(
        url,
        "http://127.0.0.1:7480/live/chan/1700000000000.ts\
         ?AWSAccessKeyId=0555b35654ad1656d804&Expires=1700003600\
         &Signature=A20ZqqH4K4E3C7d8drq0Lz8APoY%3D"
    );
}

#[test]
fn sigv2_special_key_matches_python() {
    let url = presign_v2_get(
        V2_KEY_ID,
        V2_SECRET,
        &loc("http://127.0.0.1:7480", true, "chan one/seg+1 \u{fc}.ts"),
        1_700_003_600,
    )
    .expect("presign");
    assert_eq!(
        url,
        "http://127.0.0.1:7480/live/chan%20one/seg%2B1%20%C3%BC.ts\
         ?AWSAccessKeyId=0555b35654ad1656d804&Expires=1700003600\
         &Signature=xPABJsb77YSMiZypeuns6QiXnGY%3D"
    );
}

#[test]
fn sigv2_virtual_hosted_signs_the_bucket_too() {
    // Same resource string as the path-style vector, so same signature.
    let url = presign_v2_get(
        V2_KEY_ID,
        V2_SECRET,
        &loc(
            "http://rgw.example.com:7480",
            false,
            "chan/1700000000000.ts",
        ),
        1_700_003_600,
    )
    .expect("presign");
    assert_eq!(
        url,
        "http://live.rgw.example.com:7480/chan/1700000000000.ts\
         ?AWSAccessKeyId=0555b35654ad1656d804&Expires=1700003600\
         &Signature=A20ZqqH4K4E3C7d8drq0Lz8APoY%3D"
    );
}

// Play signature, made with Python's hmac module:
//
// python3 -c 'import hmac,hashlib,base64;print(base64.urlsafe_b64encode(hmac.new(b"play-secret",b"LIVEBUCKET-PLAY\n1700003600\n/live/cam1/index.m3u8",hashlib.sha256).digest()).rstrip(b"=").decode())'
// -> 5U9xc53fQgio24yLR95Tf9RALLoMT117Ln42-dxu66M
const PLAY_SECRET: &str = "play-secret";
const PLAY_EXPIRES: u64 = 1_700_003_600;
const PLAY_SIG: &str = "5U9xc53fQgio24yLR95Tf9RALLoMT117Ln42-dxu66M";

fn verify(
    bucket: &str,
    channel: &str,
    playlist: &str,
    expires: u64,
    sig: &str,
) -> Result<(), SignError> {
    verify_play(
        PLAY_SECRET,
        bucket,
        channel,
        playlist,
        expires,
        1_700_000_000,
        sig,
    )
}

// VOD signatures, made with Python's hmac module:
//
// python3 -c 'import hmac,hashlib,base64;print(base64.urlsafe_b64encode(hmac.new(b"vod-secret",b"LIVEBUCKET-VOD\nGET\n1700003600\n/live/cam1\n1700000000\n1700000600\nrelative\n",hashlib.sha256).digest()).rstrip(b"=").decode())'
// -> 9w84sXFaSrNpe3y1tmC6-TjMsDR3Isb10Mnb2OITGzQ
// python3 -c 'import hmac,hashlib,base64;print(base64.urlsafe_b64encode(hmac.new(b"vod-secret",b"LIVEBUCKET-VOD\nPOST\n1700003600\n/live/cam1\n1700000000\n1700000600\npresigned\nvod.m3u8",hashlib.sha256).digest()).rstrip(b"=").decode())'
// -> gYCKvkLeww-hvLVt_2yocQNd9Q53ZJL8x1gvQLQJGmY
const VOD_GET: VodScope<'static> = VodScope {
    method: "GET",
    bucket: "live",
    channel: "cam1",
    start: 1_700_000_000,
    end: 1_700_000_600,
    urls: "relative",
    name: "",
};

/// GET without `urls` means `presigned` now; a link signed while it
/// meant `relative` still verifies, as `relative`; an explicit `urls`
/// and POST's default are exactly what they were.
#[test]
fn an_omitted_vod_url_mode_is_presigned_for_get_and_old_links_keep_theirs() {
    let (now, secret) = (1_700_000_000, "vod-secret");
    assert_eq!(default_vod_urls("GET"), "presigned");
    assert_eq!(default_vod_urls("POST"), "relative");
    let get = VodScope {
        urls: default_vod_urls("GET"),
        ..VOD_GET
    };
    let new = sign_vod(secret, &get, PLAY_EXPIRES).unwrap();
    // The python vector above: signed when omitted meant relative.
    let old = "9w84sXFaSrNpe3y1tmC6-TjMsDR3Isb10Mnb2OITGzQ";
    let mode = |scope: &VodScope<'static>, given, sig: &str, now| {
        verify_vod_mode(secret, scope, given, PLAY_EXPIRES, now, sig)
    };
    assert_eq!(mode(&get, false, &new, now), Ok("presigned"));
    assert_eq!(mode(&get, false, old, now), Ok("relative"));
    assert_eq!(
        mode(&get, false, old, PLAY_EXPIRES + 1),
        Err(SignError::Expired)
    );
    // Given explicitly, the mode is the one signed, no fallback.
    assert_eq!(mode(&get, true, old, now), Err(SignError::BadSignature));
    assert_eq!(mode(&VOD_GET, true, old, now), Ok("relative"));
    let forged = "A".repeat(43);
    assert_eq!(
        mode(&get, false, &forged, now),
        Err(SignError::BadSignature)
    );
    // POST's default stays relative, without a fallback.
    let post = VodScope {
        method: "POST",
        urls: default_vod_urls("POST"),
        name: "vod.m3u8",
        ..VOD_GET
    };
    let signed = sign_vod(secret, &post, PLAY_EXPIRES).unwrap();
    assert_eq!(mode(&post, false, &signed, now), Ok("relative"));
    let presigned = sign_vod(
        secret,
        &VodScope {
            urls: "presigned",
            ..post
        },
        PLAY_EXPIRES,
    )
    .unwrap();
    assert_eq!(
        mode(&post, false, &presigned, now),
        Err(SignError::BadSignature)
    );
}

#[test]
fn vod_signatures_match_python_and_bind_every_field() {
    let get = sign_vod("vod-secret", &VOD_GET, PLAY_EXPIRES).unwrap();
    assert_eq!(get, "9w84sXFaSrNpe3y1tmC6-TjMsDR3Isb10Mnb2OITGzQ");
    let post = VodScope {
        method: "POST",
        urls: "presigned",
        name: "vod.m3u8",
        ..VOD_GET
    };
    assert_eq!(
        sign_vod("vod-secret", &post, PLAY_EXPIRES).unwrap(),
        "gYCKvkLeww-hvLVt_2yocQNd9Q53ZJL8x1gvQLQJGmY"
    );
    let now = 1_700_000_000;
    assert_eq!(
        verify_vod("vod-secret", &VOD_GET, PLAY_EXPIRES, now, &get),
        Ok(())
    );
    let others = [
        VodScope {
            method: "POST",
            name: "vod.m3u8",
            ..VOD_GET
        },
        VodScope {
            start: VOD_GET.start - 1,
            ..VOD_GET
        },
        VodScope {
            end: VOD_GET.end + 86_400,
            ..VOD_GET
        },
        VodScope {
            urls: "presigned",
            ..VOD_GET
        },
        VodScope {
            channel: "cam2",
            ..VOD_GET
        },
        VodScope {
            bucket: "other",
            ..VOD_GET
        },
    ];
    for other in others {
        assert_eq!(
            verify_vod("vod-secret", &other, PLAY_EXPIRES, now, &get),
            Err(SignError::BadSignature),
            "{other:?}"
        );
    }
    // A GET never names an object; a POST always does.
    let get_named = VodScope {
        name: "x.m3u8",
        ..VOD_GET
    };
    assert!(matches!(
        sign_vod("s", &get_named, 1),
        Err(SignError::Malformed(_))
    ));
    let post_unnamed = VodScope {
        method: "POST",
        ..VOD_GET
    };
    assert!(matches!(
        sign_vod("s", &post_unnamed, 1),
        Err(SignError::Malformed(_))
    ));
    assert_eq!(
        vod_query("GK1", "vod-secret", &VOD_GET, PLAY_EXPIRES).unwrap(),
        "start=1700000000&end=1700000600&urls=relative&AccessKeyId=GK1&Expires=1700003600&Signature=9w84sXFaSrNpe3y1tmC6-TjMsDR3Isb10Mnb2OITGzQ"
    );
}

#[test]
fn play_signature_matches_python() {
    let sig = sign_play(PLAY_SECRET, "live", "cam1", "index.m3u8", PLAY_EXPIRES).expect("sign");
    assert_eq!(sig, PLAY_SIG);
    assert_eq!(
        play_query(
            "key 1",
            PLAY_SECRET,
            "live",
            "cam1",
            "index.m3u8",
            PLAY_EXPIRES
        )
        .expect("query"),
        format!("AccessKeyId=key%201&Expires=1700003600&Signature={PLAY_SIG}")
    );
}

#[test]
fn play_round_trip() {
    let sig = sign_play(PLAY_SECRET, "live", "caméra", "720p.m3u8", PLAY_EXPIRES).expect("sign");
    assert_eq!(
        verify("live", "caméra", "720p.m3u8", PLAY_EXPIRES, &sig),
        Ok(())
    );
    // Valid through the expiry second itself.
    assert_eq!(
        verify_play(
            PLAY_SECRET,
            "live",
            "caméra",
            "720p.m3u8",
            PLAY_EXPIRES,
            PLAY_EXPIRES,
            &sig
        ),
        Ok(())
    );
}

#[test]
fn play_tampering_is_rejected() {
    assert_eq!(
        verify("live", "cam1", "index.m3u8", PLAY_EXPIRES, PLAY_SIG),
        Ok(())
    );
    for (bucket, channel, playlist, expires) in [
        ("live2", "cam1", "index.m3u8", PLAY_EXPIRES),
        ("live", "cam2", "index.m3u8", PLAY_EXPIRES),
        ("live", "cam1", "720p.m3u8", PLAY_EXPIRES),
        ("live", "cam1", "index.m3u8", PLAY_EXPIRES + 1),
    ] {
        assert_eq!(
            verify(bucket, channel, playlist, expires, PLAY_SIG),
            Err(SignError::BadSignature),
            "{bucket}/{channel}/{playlist}@{expires}"
        );
    }
    assert_eq!(
        verify_play(
            "other-secret",
            "live",
            "cam1",
            "index.m3u8",
            PLAY_EXPIRES,
            0,
            PLAY_SIG
        ),
        Err(SignError::BadSignature)
    );
}

#[test]
fn play_expired_is_rejected() {
    assert_eq!(
        verify_play(
            PLAY_SECRET,
            "live",
            "cam1",
            "index.m3u8",
            PLAY_EXPIRES,
            PLAY_EXPIRES + 1,
            PLAY_SIG
        ),
        Err(SignError::Expired)
    );
}

#[test]
fn play_malformed_signatures_are_rejected() {
    let padded = format!("{PLAY_SIG}=");
    let standard_alphabet = PLAY_SIG.replace('-', "+");
    // Same bytes but non-zero trailing bits: 'M' -> 'N' in the last char.
    let trailing_bits = format!("{}N", &PLAY_SIG[..42]);
    for sig in [
        "",
        "not base64 at all!",
        &padded,
        &standard_alphabet,
        &PLAY_SIG[..42],
        &trailing_bits,
    ] {
        assert!(
            matches!(
                verify("live", "cam1", "index.m3u8", PLAY_EXPIRES, sig),
                Err(SignError::Malformed(_))
            ),
            "{sig:?}"
        );
    }
}

#[test]
fn play_names_must_be_single_segments() {
    // "a/b" + "c" would sign the same string as "a" + "b/c".
    for (bucket, channel, playlist) in [
        ("live/cam1", "x", "index.m3u8"),
        ("live", "", "index.m3u8"),
        ("live", "..", "index.m3u8"),
        ("live", "cam1", "index\n.m3u8"),
    ] {
        assert!(matches!(
            sign_play(PLAY_SECRET, bucket, channel, playlist, PLAY_EXPIRES),
            Err(SignError::Malformed(_))
        ));
        assert!(matches!(
            verify(bucket, channel, playlist, PLAY_EXPIRES, PLAY_SIG),
            Err(SignError::Malformed(_))
        ));
    }
}

#[test]
fn errors_never_echo_secrets() {
    let errors = [
        verify("live", "cam1", "index.m3u8", PLAY_EXPIRES + 1, PLAY_SIG),
        verify("live", "cam1", "index.m3u8", PLAY_EXPIRES, "x"),
        presign_v2_get(V2_KEY_ID, V2_SECRET, &loc("gopher://x", true, "k"), 1).map(drop),
    ];
    for err in errors {
        let text = err.expect_err("must fail").to_string();
        assert!(
            !text.contains(PLAY_SECRET) && !text.contains(V2_SECRET),
            "{text}"
        );
        assert!(!text.contains(PLAY_SIG), "{text}");
    }
}

proptest! {
    #[test]
    fn verify_play_rejects_arbitrary_signatures(sig in ".*") {
        let result = verify("live", "cam1", "index.m3u8", PLAY_EXPIRES, &sig);
        prop_assert!(
            matches!(result, Err(SignError::Malformed(_) | SignError::BadSignature)),
            "{result:?}"
        );
    }

    /// Well-formed signatures reach the MAC comparison and still fail.
    #[test]
    fn verify_play_rejects_random_well_formed_signatures(tag in any::<[u8; 32]>()) {
        let sig = URL_SAFE_NO_PAD.encode(tag);
        prop_assume!(sig != PLAY_SIG);
        prop_assert_eq!(
            verify("live", "cam1", "index.m3u8", PLAY_EXPIRES, &sig),
            Err(SignError::BadSignature)
        );
    }

    #[test]
    fn presign_never_panics(
        endpoint in prop_oneof![
            Just("http://127.0.0.1:3900".to_owned()),
            Just("https://s3.example.com".to_owned()),
            ".{0,40}",
        ],
        bucket in ".{0,20}",
        key in ".{0,60}",
        path_style in any::<bool>(),
    ) {
        let target = S3Location { endpoint: &endpoint, path_style, bucket: &bucket, key: &key };
        let v4 = garage_presigner(60).presign_get(&target);
        let v2 = presign_v2_get(V2_KEY_ID, V2_SECRET, &target, 1);
        prop_assert_eq!(v4.is_ok(), v2.is_ok());
        if let Ok(url) = v4 {
            // Host and path were validated or escaped, so the URL is plain ASCII.
            prop_assert!(url.is_ascii(), "{}", url);
            prop_assert!(!url.contains(' '));
        }
    }
}

/// `LIVEBUCKET-PLAY\n1700003600\n/live/cam1/360p/index.m3u8` under
/// `play-secret`, from Python's `hmac`.
const VARIANT_SIG: &str = "XrFGEza-gmHgwmEeJ8USeOqGCYv0wOPZzfTpA9k0xgo";

#[test]
fn variant_play_signature_matches_python_and_round_trips() {
    let sig = sign_play_variant(
        PLAY_SECRET,
        &VariantPath {
            bucket: "live",
            channel: "cam1",
            rung: "360p",
            playlist: "index.m3u8",
        },
        PLAY_EXPIRES,
    )
    .unwrap();
    assert_eq!(sig, VARIANT_SIG);
    assert_eq!(
        play_variant_query(
            "GK1",
            PLAY_SECRET,
            &VariantPath {
                bucket: "live",
                channel: "cam1",
                rung: "360p",
                playlist: "index.m3u8"
            },
            PLAY_EXPIRES
        )
        .unwrap(),
        format!("AccessKeyId=GK1&Expires=1700003600&Signature={VARIANT_SIG}")
    );
    let check = |b, c, r, p, s| {
        verify_play_variant(
            PLAY_SECRET,
            &VariantPath {
                bucket: b,
                channel: c,
                rung: r,
                playlist: p,
            },
            PLAY_EXPIRES,
            PLAY_EXPIRES,
            s,
        )
    };
    assert_eq!(
        check("live", "cam1", "360p", "index.m3u8", VARIANT_SIG),
        Ok(())
    );
    // Another rung, channel or playlist: refused.
    for (c, r, p) in [
        ("cam1", "720p", "index.m3u8"),
        ("cam2", "360p", "index.m3u8"),
        ("cam1", "360p", "other.m3u8"),
    ] {
        assert_eq!(
            check("live", c, r, p, VARIANT_SIG),
            Err(SignError::BadSignature)
        );
    }
}

#[test]
fn channel_and_variant_play_urls_never_verify_as_each_other() {
    // The channel "cam1" with playlist "360p" is three names; the variant
    // is four: neither signature verifies as the other, whatever the split.
    let channel = sign_play(PLAY_SECRET, "live", "cam1", "360p", PLAY_EXPIRES).unwrap();
    assert_eq!(
        verify_play_variant(
            PLAY_SECRET,
            &VariantPath {
                bucket: "live",
                channel: "cam1",
                rung: "360p",
                playlist: "index.m3u8"
            },
            PLAY_EXPIRES,
            0,
            &channel
        ),
        Err(SignError::BadSignature)
    );
    assert_eq!(
        verify_play(
            PLAY_SECRET,
            "live",
            "cam1",
            "index.m3u8",
            PLAY_EXPIRES,
            0,
            VARIANT_SIG
        ),
        Err(SignError::BadSignature)
    );
    // A `/` inside a name would move it between names: refused.
    for (c, r) in [("cam1/360p", "x"), ("cam1", "360p/x"), ("cam1", "")] {
        assert!(matches!(
            sign_play_variant(
                PLAY_SECRET,
                &VariantPath {
                    bucket: "live",
                    channel: c,
                    rung: r,
                    playlist: "index.m3u8"
                },
                PLAY_EXPIRES
            ),
            Err(SignError::Malformed(_))
        ));
    }
}

/// `LIVEBUCKET-VOD\nGET\n1700003600\n/live/cam1\n1700000000\n1700000600\nrelative\n\n360p`
/// under `vod-secret`, from Python's `hmac`.
const VOD_VARIANT_SIG: &str = "wyS-aXSWC1np3gshbOwwIbj2dBgK-RcWbRYZQ_5irmQ";

#[test]
fn a_variant_vod_url_is_signed_apart_from_the_channel_one() {
    let (secret, e) = ("vod-secret", PLAY_EXPIRES);
    assert_eq!(
        sign_vod_variant(secret, &VOD_GET, "360p", e).unwrap(),
        VOD_VARIANT_SIG
    );
    assert_eq!(
        vod_variant_query("GK1", secret, &VOD_GET, "360p", e).unwrap(),
        format!(
            "start=1700000000&end=1700000600&urls=relative&variant=360p&AccessKeyId=GK1&Expires=1700003600&Signature={VOD_VARIANT_SIG}"
        )
    );
    assert_eq!(
        verify_vod_variant(secret, &VOD_GET, "360p", e, 0, VOD_VARIANT_SIG),
        Ok(())
    );
    // Neither verifies as the other, nor as another variant.
    let channel = sign_vod(secret, &VOD_GET, e).unwrap();
    assert_eq!(
        verify_vod_variant(secret, &VOD_GET, "360p", e, 0, &channel),
        Err(SignError::BadSignature)
    );
    assert_eq!(
        verify_vod(secret, &VOD_GET, e, 0, VOD_VARIANT_SIG),
        Err(SignError::BadSignature)
    );
    assert_eq!(
        verify_vod_variant(secret, &VOD_GET, "source", e, 0, VOD_VARIANT_SIG),
        Err(SignError::BadSignature)
    );
    assert!(matches!(
        sign_vod_variant(secret, &VOD_GET, "a\nb", e),
        Err(SignError::Malformed(_))
    ));
}
