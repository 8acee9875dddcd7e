//! PUTs to an `https://` store go on livebucket's own client (rustls), not
//! the SDK: against a TLS server of the test's own whose certificate comes
//! from a CA made with openssl, a PUT succeeds when `[s3] ca_file` names that
//! CA, arrives signed as the direct path signs it, and fails (a transport
//! error, retriable) when the CA is not trusted. The SDK's requests (DELETE,
//! HEAD, and PUTs with `direct_put = false`) trust the same `ca_file`.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use livebucket::config::{AccessKey, S3Config};
use livebucket::store::{ObjectMeta, Store, StoreError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

use common::TestDir;

/// A CA and a certificate for 127.0.0.1 signed by it: (CA, cert, key).
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n);
    std::fs::write(
        p("ext"),
        "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n",
    )
    .unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-extfile",
        "ext",
    ]);
    (p("ca.pem"), p("server.pem"), p("server.key"))
}

/// A TLS server on 127.0.0.1 that answers every request `200 OK` and
/// reports each request head it read.
async fn tls_server(
    cert: &Path,
    key: &Path,
) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        if tls.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                            return;
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map_or(0, |v| v.parse().unwrap());
                    while buf.len() < end + 4 + len {
                        if tls.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                            return;
                        }
                    }
                    buf.drain(..end + 4 + len);
                    let _ = tx.send(head);
                    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
                    if tls.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, rx)
}

fn store(port: u16, ca_file: Option<PathBuf>) -> Store {
    store_with(port, ca_file, true)
}

fn store_with(port: u16, ca_file: Option<PathBuf>, direct_put: bool) -> Store {
    let s3 = S3Config {
        endpoint: format!("https://127.0.0.1:{port}"),
        region: "garage".into(),
        force_path_style: true,
        public_endpoint: None,
        sign_payload: false,
        direct_put,
        ca_file,
        attempt_timeout_secs: 5,
        attempt_min_rate_kib: 256,
    };
    let key = AccessKey {
        id: "GKtest".into(),
        secret: "0123456789abcdef".into(),
        buckets: vec!["*".into()],
        disabled: false,
    };
    Store::new(&s3, &[key])
}

#[tokio::test]
async fn https_puts_go_direct_and_trust_only_the_configured_ca() {
    let dir = TestDir::new("https-store");
    let (ca, cert, key) = make_certs(dir.path());
    let (port, mut heads) = tls_server(&cert, &key).await;

    let trusted = store(port, Some(ca));
    assert_eq!(trusted.sdk_put_reason(), None, "https PUTs go direct");
    let meta = [("extinf", "2.000")];
    for i in 0..2 {
        trusted
            .put(
                "GKtest",
                "media",
                &format!("cam/{i}.ts"),
                vec![7u8; 300_000],
                &ObjectMeta::fragment(&meta),
            )
            .await
            .unwrap_or_else(|e| panic!("PUT {i}: {e}"));
        let head = heads.recv().await.unwrap();
        assert!(
            head.starts_with(&format!("PUT /media/cam/{i}.ts HTTP/1.1\r\n")),
            "{head}"
        );
        assert!(
            head.contains(&format!("host: 127.0.0.1:{port}\r\n")),
            "{head}"
        );
        assert!(
            head.contains("x-amz-content-sha256: UNSIGNED-PAYLOAD\r\n"),
            "{head}"
        );
        assert!(
            head.contains("authorization: AWS4-HMAC-SHA256 Credential=GKtest/"),
            "{head}"
        );
    }

    // Without the CA the server's certificate is refused: no request.
    let untrusted = store(port, None);
    let err = untrusted
        .put(
            "GKtest",
            "media",
            "cam/x.ts",
            vec![1u8; 10],
            &ObjectMeta::JSON,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Request { .. }) && err.is_retriable(),
        "{err}"
    );
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    assert!(heads.try_recv().is_err());
}

/// The SDK's requests trust `[s3] ca_file` too: a DELETE, a HEAD and an SDK
/// PUT reach the server when the CA is configured, and fail on the
/// certificate (retriable, nothing sent) when it is not.
#[tokio::test]
async fn sdk_requests_trust_the_configured_ca_too() {
    let dir = TestDir::new("https-store-sdk");
    let (ca, cert, key) = make_certs(dir.path());
    let (port, mut heads) = tls_server(&cert, &key).await;

    let trusted = store_with(port, Some(ca), false);
    assert!(
        trusted.sdk_put_reason().is_some(),
        "PUTs go through the SDK"
    );
    trusted
        .delete("GKtest", "media", "cam/0.ts")
        .await
        .unwrap_or_else(|e| panic!("DELETE: {e}"));
    let head = heads.recv().await.unwrap();
    assert!(head.starts_with("DELETE /media/cam/0.ts"), "{head}");
    trusted
        .metadata("GKtest", "media", "cam/1.ts")
        .await
        .unwrap_or_else(|e| panic!("HEAD: {e}"));
    let head = heads.recv().await.unwrap();
    assert!(head.starts_with("HEAD /media/cam/1.ts"), "{head}");
    trusted
        .put(
            "GKtest",
            "media",
            "cam/2.ts",
            vec![7u8; 1000],
            &ObjectMeta::fragment(&[("extinf", "2.000")]),
        )
        .await
        .unwrap_or_else(|e| panic!("SDK PUT: {e}"));
    let head = heads.recv().await.unwrap();
    assert!(head.starts_with("PUT /media/cam/2.ts"), "{head}");

    let untrusted = store_with(port, None, false);
    let err = untrusted
        .delete("GKtest", "media", "cam/0.ts")
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Request { .. }) && err.is_retriable(),
        "{err}"
    );
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    assert!(heads.try_recv().is_err());
}
