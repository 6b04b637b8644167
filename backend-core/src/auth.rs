//! Request signing and verification (Backend.AI keypair auth, API v4.20181215 and later).
//!
//! Signing key: `k1 = HMAC(secret, YYYYMMDD)`, `k = HMAC(k1, host)`. String to sign: method, path with query,
//! raw date, `host:<host>`, `content-type:<lowercased>`, `x-backendai-version:<version>`, and the hex digest of the
//! empty body, joined by `\n`. Signature: `hex(HMAC(k, string))`.

use crate::error::Error;
use chrono::{DateTime, Duration, FixedOffset, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The API version this server speaks.
pub const API_VERSION: &str = "v7.20230615";

/// The largest clock skew accepted between client and server.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(15);

/// What a request's signature covers.
#[derive(Debug, Clone, Copy)]
pub struct SignedParts<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// Path with its query string, as sent (`/session?x=1`).
    pub path_and_query: &'a str,
    /// The raw `Date` / `X-BackendAI-Date` header value.
    pub date: &'a str,
    /// `host[:port]` as the client addressed it.
    pub host: &'a str,
    /// The `Content-Type` header (lower-cased before signing).
    pub content_type: &'a str,
    /// The `X-BackendAI-Version` header.
    pub api_version: &'a str,
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// Parses a `Date` header as the client writes it: ISO 8601 with a time zone (RFC 3339), or RFC 2822.
pub fn parse_date(raw: &str) -> Result<DateTime<FixedOffset>, Error> {
    DateTime::parse_from_rfc3339(raw)
        .or_else(|_| DateTime::parse_from_rfc2822(raw))
        .or_else(|_| DateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .map_err(|_| Error::AuthFailed { msg: format!("cannot parse the date {raw:?}") })
}

/// The hex signature of a request.
pub fn sign(secret_key: &str, parts: &SignedParts<'_>) -> Result<String, Error> {
    let date = parse_date(parts.date)?;
    // The reference client derives the key from the calendar day in the date's own time zone.
    let day = date.format("%Y%m%d").to_string();
    let k1 = hmac(secret_key.as_bytes(), day.as_bytes());
    let key = hmac(&k1, parts.host.as_bytes());
    let body_hash = hex::encode(Sha256::digest(b""));
    let to_sign = format!(
        "{}\n{}\n{}\nhost:{}\ncontent-type:{}\nx-backendai-version:{}\n{}",
        parts.method.to_ascii_uppercase(),
        parts.path_and_query,
        parts.date,
        parts.host,
        parts.content_type.to_ascii_lowercase(),
        parts.api_version,
        body_hash,
    );
    Ok(hex::encode(hmac(&key, to_sign.as_bytes())))
}

/// The `Authorization` header value for a request.
pub fn authorization_header(access_key: &str, secret_key: &str, parts: &SignedParts<'_>) -> Result<String, Error> {
    Ok(format!("BackendAI signMethod=HMAC-SHA256, credential={access_key}:{}", sign(secret_key, parts)?))
}

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The hash named by `signMethod` (only SHA-256 is accepted).
    pub sign_method: String,
    /// The access key.
    pub access_key: String,
    /// The hex signature.
    pub signature: String,
}

/// Parses `BackendAI signMethod=HMAC-SHA256, credential=AK:SIG`.
pub fn parse_authorization(header: &str) -> Result<Credential, Error> {
    let bad = |why: &str| Error::AuthFailed { msg: format!("malformed Authorization header: {why}") };
    let rest = header.trim().strip_prefix("BackendAI").ok_or_else(|| bad("scheme is not BackendAI"))?;
    let mut method = None;
    let mut cred = None;
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=').ok_or_else(|| bad("expected key=value"))?;
        match k.trim() {
            "signMethod" => method = Some(v.trim().to_owned()),
            "credential" => cred = Some(v.trim().to_owned()),
            _ => {}
        }
    }
    let sign_method = method.ok_or_else(|| bad("no signMethod"))?;
    if !sign_method.eq_ignore_ascii_case("HMAC-SHA256") {
        return Err(Error::AuthFailed { msg: format!("unsupported signMethod {sign_method}") });
    }
    let cred = cred.ok_or_else(|| bad("no credential"))?;
    let (access_key, signature) = cred.split_once(':').ok_or_else(|| bad("credential is not AK:SIG"))?;
    Ok(Credential { sign_method, access_key: access_key.to_owned(), signature: signature.to_owned() })
}

/// Checks a request's signature against the keypair's secret and the date against `now` (±15 minutes).
pub fn verify(secret_key: &str, parts: &SignedParts<'_>, signature: &str, now: DateTime<Utc>) -> Result<(), Error> {
    let date = parse_date(parts.date)?.with_timezone(&Utc);
    if (now - date).abs() > MAX_CLOCK_SKEW {
        return Err(Error::AuthFailed { msg: "the request date is too far from the server's clock".into() });
    }
    let expected = sign(secret_key, parts)?;
    use subtle::ConstantTimeEq;
    if expected.as_bytes().ct_eq(signature.to_ascii_lowercase().as_bytes()).into() {
        Ok(())
    } else {
        Err(Error::AuthFailed { msg: "signature mismatch".into() })
    }
}

/// A random keypair: an access key in Backend.AI's shape (`AKIA` + 16 upper-case characters) and a 40-character
/// secret.
pub fn generate_keypair() -> (String, String) {
    use rand::distributions::{Alphanumeric, DistString};
    use rand::Rng;
    let mut rng = rand::thread_rng();
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let ak: String = (0..16).map(|_| UPPER[rng.gen_range(0..UPPER.len())] as char).collect();
    (format!("AKIA{ak}"), Alphanumeric.sample_string(&mut rng, 40))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Produced by the reference client (`backend.ai-client==23.9.10`,
    // `ai.backend.client.auth.generate_signature`) with method=POST, version=v7.20230615,
    // endpoint=http://127.0.0.1:8081, date=2026-11-28T17:30:00+00:00, rel_url=/session?x=1,
    // content_type=application/json, access_key=AKIAIOSFODNN7EXAMPLE,
    // secret_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY, hash_type=sha256.
    const REFERENCE_SIGNATURE: &str = "3530704b75d6d7d9162523eedde97379e50d0cd5aec451cb0822323f7ff42ea6";
    // The same request dated 2026-11-29T01:30:00+09:00 (the same instant, another calendar day).
    const REFERENCE_SIGNATURE_KST: &str = "94443d27f93b6860882d6081e663753b558f72da10b0bcee53ca95e773e1eb50";

    fn parts() -> SignedParts<'static> {
        SignedParts {
            method: "POST",
            path_and_query: "/session?x=1",
            date: "2026-11-28T17:30:00+00:00",
            host: "127.0.0.1:8081",
            content_type: "application/json",
            api_version: API_VERSION,
        }
    }

    #[test]
    fn matches_the_reference_client() {
        let sig = sign("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", &parts()).unwrap();
        assert_eq!(sig, REFERENCE_SIGNATURE);
        let kst = SignedParts { date: "2026-11-29T01:30:00+09:00", ..parts() };
        assert_eq!(sign("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", &kst).unwrap(), REFERENCE_SIGNATURE_KST);
    }

    #[test]
    fn verifies_and_rejects() {
        let secret = "s3cret";
        let sig = sign(secret, &parts()).unwrap();
        let now = parse_date(parts().date).unwrap().with_timezone(&Utc);
        verify(secret, &parts(), &sig, now).unwrap();
        assert!(verify("other", &parts(), &sig, now).is_err());
        let tampered = SignedParts { path_and_query: "/session?x=2", ..parts() };
        assert!(verify(secret, &tampered, &sig, now).is_err());
        assert!(verify(secret, &parts(), &sig, now + Duration::minutes(16)).is_err());
        verify(secret, &parts(), &sig, now - Duration::minutes(14)).unwrap();
    }

    #[test]
    fn parses_the_header() {
        let c = parse_authorization("BackendAI signMethod=HMAC-SHA256, credential=AK:abc").unwrap();
        assert_eq!((c.access_key.as_str(), c.signature.as_str()), ("AK", "abc"));
        assert!(parse_authorization("Bearer x").is_err());
        assert!(parse_authorization("BackendAI signMethod=HMAC-MD5, credential=AK:abc").is_err());
        assert!(parse_authorization("BackendAI signMethod=HMAC-SHA256").is_err());
    }

    #[test]
    fn generated_keys_have_the_right_shape() {
        let (ak, sk) = generate_keypair();
        assert!(ak.starts_with("AKIA") && ak.len() == 20);
        assert_eq!(sk.len(), 40);
    }
}
