//! Short-lived tokens that authorise one transfer: the manager signs them when a user asks to upload or download a
//! file, and the transfer endpoints (in the manager, or a separate storage service sharing the secret) check them.
//! A token is `<base64url(JSON claims)>.<base64url(HMAC-SHA256(secret, claims part))>`.

use crate::error::{Error, Result};
use crate::ids::VFolderId;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferOp {
    /// Sending the bytes of one upload.
    Upload,
    /// Reading one file.
    Download,
}

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferClaims {
    /// What it allows.
    pub op: TransferOp,
    /// The volume.
    pub host: String,
    /// The folder.
    pub vfolder: VFolderId,
    /// The file's path in the folder.
    pub path: String,
    /// The upload's id (uploads only).
    pub upload: Option<String>,
    /// The keypair it was issued to.
    pub access_key: String,
    /// When it stops being valid (Unix seconds).
    pub expires: i64,
}

/// Signs claims with the shared secret.
pub fn sign(secret: &[u8], claims: &TransferClaims) -> String {
    let json = serde_json::to_vec(claims).expect("claims serialize");
    let body = URL_SAFE_NO_PAD.encode(json);
    let signature = URL_SAFE_NO_PAD.encode(mac(secret, &body).finalize().into_bytes());
    format!("{body}.{signature}")
}

/// Checks a token's signature and expiry and returns its claims; `AuthFailed` when it is malformed, forged or
/// expired.
pub fn verify(secret: &[u8], token: &str, now: DateTime<Utc>) -> Result<TransferClaims> {
    let (body, signature) = token.split_once('.').ok_or_else(|| failed("malformed transfer token"))?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| failed("malformed transfer token"))?;
    // The signature is checked before the claims are parsed, so nothing an attacker wrote is interpreted.
    mac(secret, body).verify_slice(&signature).map_err(|_| failed("invalid transfer token signature"))?;
    let json = URL_SAFE_NO_PAD.decode(body).map_err(|_| failed("malformed transfer token"))?;
    let claims: TransferClaims = serde_json::from_slice(&json).map_err(|_| failed("malformed transfer token"))?;
    if claims.expires <= now.timestamp() {
        return Err(failed("transfer token expired"));
    }
    Ok(claims)
}

fn mac(secret: &[u8], body: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body.as_bytes());
    mac
}

fn failed(msg: &str) -> Error {
    Error::AuthFailed { msg: msg.into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    const SECRET: &[u8] = b"transfer-secret";

    fn claims(expires: i64) -> TransferClaims {
        TransferClaims {
            op: TransferOp::Upload,
            host: "local".into(),
            vfolder: VFolderId::new(),
            path: "data/train.csv".into(),
            upload: Some("0123abcd".into()),
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            expires,
        }
    }

    fn assert_auth_failed(result: Result<TransferClaims>) {
        match result {
            Err(Error::AuthFailed { .. }) => {}
            other => panic!("expected AuthFailed, got {other:?}"),
        }
    }

    #[test]
    fn a_signed_token_verifies_to_its_claims() {
        let now = Utc::now();
        let c = claims((now + Duration::minutes(5)).timestamp());
        let token = sign(SECRET, &c);
        assert!(!token.contains('='), "no padding: {token}");
        assert!(token.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)), "url-safe: {token}");
        assert_eq!(verify(SECRET, &token, now).unwrap(), c);
        let download = TransferClaims { op: TransferOp::Download, upload: None, ..c };
        assert_eq!(verify(SECRET, &sign(SECRET, &download), now).unwrap(), download);
    }

    #[test]
    fn an_expired_token_is_refused() {
        let now = Utc::now();
        let token = sign(SECRET, &claims(now.timestamp() - 1));
        assert_auth_failed(verify(SECRET, &token, now));
        let token = sign(SECRET, &claims(now.timestamp()));
        assert_auth_failed(verify(SECRET, &token, now));
        let token = sign(SECRET, &claims(now.timestamp() + 60));
        assert_auth_failed(verify(SECRET, &token, now + Duration::seconds(61)));
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let now = Utc::now();
        let token = sign(b"another-secret", &claims(now.timestamp() + 60));
        assert_auth_failed(verify(SECRET, &token, now));
    }

    #[test]
    fn altered_claims_are_refused() {
        let now = Utc::now();
        let token = sign(SECRET, &claims(now.timestamp() + 60));
        let (_, signature) = token.split_once('.').unwrap();
        let mut forged = claims(now.timestamp() + 60);
        forged.path = "../../etc/passwd".into();
        let forged_body = sign(SECRET, &forged);
        let (forged_body, _) = forged_body.split_once('.').unwrap();
        assert_auth_failed(verify(SECRET, &format!("{forged_body}.{signature}"), now));

        // Flipping one character of the signature, too.
        let mut bytes = token.into_bytes();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert_auth_failed(verify(SECRET, &String::from_utf8(bytes).unwrap(), now));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let now = Utc::now();
        let good = sign(SECRET, &claims(now.timestamp() + 60));
        let (body, _) = good.split_once('.').unwrap();
        for token in ["", ".", "abc", "abc.def", "!!!.???", &format!("{body}."), &format!("{body}.{body}")] {
            assert_auth_failed(verify(SECRET, token, now));
        }
        // A correctly signed body that is not claims.
        let junk = URL_SAFE_NO_PAD.encode(b"{\"op\":\"delete\"}");
        let signature = URL_SAFE_NO_PAD.encode(mac(SECRET, &junk).finalize().into_bytes());
        assert_auth_failed(verify(SECRET, &format!("{junk}.{signature}"), now));
    }
}
