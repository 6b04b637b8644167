//! The manager serves HTTPS itself: a client that trusts the test's self-signed certificate gets the API's answer over
//! TLS, a plain-HTTP client gets nothing, and unusable certificate files are clear errors.

mod common;

use backend_manager::ManagerConfig;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

async fn get_over_tls(addr: std::net::SocketAddr, root: CertificateDer<'static>) -> String {
    let mut roots = RootCertStore::empty();
    roots.add(root).unwrap();
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with the manager");
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn serves_the_api_over_tls() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("manager.crt"), dir.path().join("manager.key"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();

    let acceptor = backend_manager::tls::acceptor(&cert_path, &key_path).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let routes = backend_manager::api::routes(common::in_memory_manager(ManagerConfig::default()));
    let server = tokio::spawn(backend_manager::tls::serve(routes, listener, acceptor, async {
        let _ = stopped.await;
    }));

    let response = get_over_tls(addr, cert.cert.der().clone()).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"version\":\"v"), "the API's version document: {response}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(!String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"));

    // The server keeps serving after a failed handshake.
    assert!(get_over_tls(addr, cert.cert.der().clone()).await.starts_with("HTTP/1.1 200"));
    stop.send(()).unwrap();
    server.await.unwrap();
}

#[test]
fn unusable_certificates_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let missing = dir.path().join("missing.pem");
    let err = backend_manager::tls::acceptor(&junk, &junk).err().expect("junk refused");
    assert!(err.to_string().contains("junk.pem"), "{err}");
    let err = backend_manager::tls::acceptor(&missing, &junk).err().expect("missing refused");
    assert!(err.to_string().contains("missing.pem"), "{err}");
}
