//! The headers that sign a request (Backend.AI keypair auth), computed from what is actually sent.

use crate::config::ClientConfig;
use backend_core::auth::{authorization_header, SignedParts};
use backend_core::error::{Error, Result};
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, DATE};
use reqwest::{Method, Url};

/// The `X-BackendAI-Date` header (the same value as `Date`).
pub const X_BACKENDAI_DATE: &str = "x-backendai-date";
/// The `X-BackendAI-Version` header.
pub const X_BACKENDAI_VERSION: &str = "x-backendai-version";

/// The `Host` header the HTTP stack sends for `url`: its host, and the port when it is not the scheme's default
/// (`Url` drops a default port, so an explicit `:80` on `http` is not repeated).
pub fn host_of(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// The path with its query string as it goes on the request line (`/session?owner_access_key=...`).
pub fn path_and_query_of(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

/// The headers that sign a request for `url`: `Date` and `X-BackendAI-Date` (RFC 3339 of `now`),
/// `X-BackendAI-Version`, `Content-Type` when `content_type` is given (signed as an empty string otherwise),
/// and `Authorization`.
pub fn signed_headers(
    config: &ClientConfig,
    method: &Method,
    url: &Url,
    content_type: Option<&str>,
    now: DateTime<Utc>,
) -> Result<HeaderMap> {
    let date = now.to_rfc3339();
    let host = host_of(url);
    let path_and_query = path_and_query_of(url);
    let parts = SignedParts {
        method: method.as_str(),
        path_and_query: &path_and_query,
        date: &date,
        host: &host,
        content_type: content_type.unwrap_or(""),
        api_version: &config.api_version,
    };
    let authorization = authorization_header(&config.access_key, &config.secret_key, &parts)?;
    let value = |what: &str, v: &str| {
        HeaderValue::from_str(v)
            .map_err(|_| Error::InvalidParams { msg: format!("{what} is not a valid header value") })
    };
    let mut headers = HeaderMap::new();
    headers.insert(DATE, value("the date", &date)?);
    headers.insert(HeaderName::from_static(X_BACKENDAI_DATE), value("the date", &date)?);
    headers.insert(HeaderName::from_static(X_BACKENDAI_VERSION), value("the API version", &config.api_version)?);
    if let Some(ct) = content_type {
        headers.insert(CONTENT_TYPE, value("the content type", ct)?);
    }
    let mut auth = value("the access key", &authorization)?;
    auth.set_sensitive(true);
    headers.insert(AUTHORIZATION, auth);
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keeps_explicit_ports_only() {
        let host = |u: &str| host_of(&Url::parse(u).unwrap());
        assert_eq!(host("http://127.0.0.1:8081/"), "127.0.0.1:8081");
        assert_eq!(host("http://example.com/"), "example.com");
        assert_eq!(host("http://example.com:80/"), "example.com");
        assert_eq!(host("https://example.com:8443/x"), "example.com:8443");
        assert_eq!(host("http://[::1]:8081"), "[::1]:8081");
    }

    #[test]
    fn path_and_query_is_the_request_line() {
        let url = Url::parse("http://h:1/api/session/s%201?forced=true").unwrap();
        assert_eq!(path_and_query_of(&url), "/api/session/s%201?forced=true");
        assert_eq!(path_and_query_of(&Url::parse("http://h:1").unwrap()), "/");
    }
}
