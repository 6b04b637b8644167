//! The client's signed headers pass the server-side check (`backend_core::auth::verify`), and any change to
//! what they cover makes them fail.

use backend_client::signing::{host_of, path_and_query_of, X_BACKENDAI_DATE, X_BACKENDAI_VERSION};
use backend_client::{signed_headers, ClientConfig};
use backend_core::auth::{parse_authorization, verify, SignedParts, API_VERSION};
use chrono::{Duration, TimeZone, Utc};
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE, DATE};
use reqwest::{Method, Url};

const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn config(endpoint: &str) -> ClientConfig {
    ClientConfig::new(endpoint, ACCESS_KEY, SECRET_KEY)
}

fn header(headers: &HeaderMap, name: impl reqwest::header::AsHeaderName) -> &str {
    headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
}

/// What the manager checks: the parts it reads from the request, and the credential in `Authorization`.
fn server_check(
    method: &str,
    host: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    secret: &str,
    now: chrono::DateTime<Utc>,
) -> backend_core::Result<String> {
    let credential = parse_authorization(header(headers, AUTHORIZATION))?;
    let parts = SignedParts {
        method,
        path_and_query,
        date: header(headers, X_BACKENDAI_DATE),
        host,
        content_type: header(headers, CONTENT_TYPE),
        api_version: header(headers, X_BACKENDAI_VERSION),
    };
    verify(secret, &parts, &credential.signature, now)?;
    Ok(credential.access_key)
}

#[test]
fn a_json_request_verifies() {
    let url = Url::parse("http://127.0.0.1:8081/session?owner_access_key=AKIAOTHER").unwrap();
    let now = Utc::now();
    let headers =
        signed_headers(&config("http://127.0.0.1:8081"), &Method::POST, &url, Some("application/json"), now).unwrap();
    assert_eq!(header(&headers, CONTENT_TYPE), "application/json");
    assert_eq!(header(&headers, X_BACKENDAI_VERSION), API_VERSION);
    assert_eq!(header(&headers, DATE), header(&headers, X_BACKENDAI_DATE));
    assert_eq!(header(&headers, DATE), now.to_rfc3339());
    let host = host_of(&url);
    assert_eq!(host, "127.0.0.1:8081");
    let path = path_and_query_of(&url);
    let access_key = server_check("POST", &host, &path, &headers, SECRET_KEY, now).unwrap();
    assert_eq!(access_key, ACCESS_KEY);
}

#[test]
fn a_request_without_a_body_signs_an_empty_content_type() {
    let url = Url::parse("http://example.com/session/s1?forced=true").unwrap();
    let now = Utc::now();
    let headers = signed_headers(&config("http://example.com"), &Method::DELETE, &url, None, now).unwrap();
    assert!(headers.get(CONTENT_TYPE).is_none());
    // The default port is not part of the host the server sees.
    assert_eq!(host_of(&url), "example.com");
    server_check("DELETE", "example.com", "/session/s1?forced=true", &headers, SECRET_KEY, now).unwrap();
}

#[test]
fn tampering_with_any_signed_part_fails() {
    let url = Url::parse("http://127.0.0.1:8081/session/s1").unwrap();
    let now = Utc::now();
    let headers =
        signed_headers(&config("http://127.0.0.1:8081"), &Method::POST, &url, Some("application/json"), now).unwrap();
    let check = |method: &str, host: &str, path: &str, secret: &str, at| {
        server_check(method, host, path, &headers, secret, at).is_ok()
    };
    assert!(check("POST", "127.0.0.1:8081", "/session/s1", SECRET_KEY, now));
    assert!(!check("GET", "127.0.0.1:8081", "/session/s1", SECRET_KEY, now));
    assert!(!check("POST", "127.0.0.1", "/session/s1", SECRET_KEY, now));
    assert!(!check("POST", "127.0.0.1:8081", "/session/s2", SECRET_KEY, now));
    assert!(!check("POST", "127.0.0.1:8081", "/session/s1", "another secret", now));
    assert!(!check("POST", "127.0.0.1:8081", "/session/s1", SECRET_KEY, now + Duration::minutes(16)));
    let mut other_type = headers.clone();
    other_type.insert(CONTENT_TYPE, "text/plain".parse().unwrap());
    assert!(server_check("POST", "127.0.0.1:8081", "/session/s1", &other_type, SECRET_KEY, now).is_err());
}

#[test]
fn a_date_just_after_midnight_verifies() {
    // The signing key's day is read back from the date header, so a day boundary changes nothing.
    let now = Utc.with_ymd_and_hms(2026, 11, 28, 0, 5, 0).unwrap();
    let url = Url::parse("http://127.0.0.1:8081/session").unwrap();
    let headers = signed_headers(&config("http://127.0.0.1:8081"), &Method::GET, &url, None, now).unwrap();
    server_check("GET", "127.0.0.1:8081", "/session", &headers, SECRET_KEY, now).unwrap();
}

#[test]
fn the_configured_api_version_is_sent_and_signed() {
    let mut config = config("http://127.0.0.1:8081");
    config.api_version = "v6.20220615".into();
    let url = Url::parse("http://127.0.0.1:8081/session").unwrap();
    let now = Utc::now();
    let headers = signed_headers(&config, &Method::GET, &url, None, now).unwrap();
    assert_eq!(header(&headers, X_BACKENDAI_VERSION), "v6.20220615");
    server_check("GET", "127.0.0.1:8081", "/session", &headers, SECRET_KEY, now).unwrap();
}
