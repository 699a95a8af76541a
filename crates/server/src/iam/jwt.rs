//! Service-account JWTs as the Yandex Cloud SDKs build them (`alg` PS256, `kid` the
//! authorized key's id, `iss` the service account, `aud` the IAM token URL of the endpoint
//! they were given, `iat` now and `exp` an hour later), checked before they are exchanged for
//! an IAM token. Every refusal says which check failed and quotes nothing of the key.

use std::collections::HashMap;

use base64::Engine as _;
use rsa::pkcs8::DecodePublicKey as _;
use serde::Deserialize;
use yc_proto_types::quote;

/// The longest a JWT may be valid for, as the real service allows.
pub(crate) const MOST_LIFETIME_SECS: i64 = 3600;

/// How far the client's clock may be ahead of or behind this server's.
pub(crate) const CLOCK_SKEW_SECS: i64 = 300;

/// A service account's public key, registered under the key's id.
#[derive(Debug, Clone)]
pub(crate) struct PublicKey {
    pub(crate) service_account_id: String,
    key: rsa::PublicKey,
}

impl PublicKey {
    /// The key in PEM (`-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo), as authorized key
    /// files hold it.
    pub(crate) fn from_pem(service_account_id: &str, pem: &str) -> Result<Self, String> {
        let key = rsa::PublicKey::from_public_key_pem(pem.trim())
            .map_err(|e| format!("the public key is not an RSA key in PEM: {e}"))?;
        Ok(Self {
            service_account_id: service_account_id.to_owned(),
            key,
        })
    }
}

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
}

/// `aud` is one string or, as RFC 7519 also allows, a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    aud: Option<Audience>,
    iat: Option<i64>,
    exp: Option<i64>,
}

/// The service account a JWT acts for, if it checks out: signed with PS256 by the key its
/// `kid` names among `keys`, issued by that key's service account, for one of `audiences`, and
/// valid at `now` (Unix seconds, give or take [`CLOCK_SKEW_SECS`]).
pub(crate) fn verify(
    jwt: &str,
    keys: &HashMap<String, PublicKey>,
    audiences: &[String],
    now: i64,
) -> Result<String, String> {
    let mut parts = jwt.split('.');
    let (Some(header_part), Some(claims_part), Some(signature_part), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the JWT is not three base64url parts separated by dots".into());
    };
    let decode = |part: &str, what: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|_| format!("the JWT's {what} is not base64url"))
    };
    let header: Header = serde_json::from_slice(&decode(header_part, "header")?)
        .map_err(|_| "the JWT's header is not a JSON object of strings".to_owned())?;
    match header.alg.as_deref() {
        Some("PS256") => {}
        Some(other) => {
            return Err(format!(
                "the JWT must be signed with PS256, not {}",
                quote(other)
            ));
        }
        None => return Err("the JWT's header has no alg (PS256)".into()),
    }
    let Some(kid) = header.kid else {
        return Err("the JWT's header has no kid (the authorized key's id)".into());
    };
    let Some(key) = keys.get(&kid) else {
        return Err(format!("no authorized key has the id {}", quote(&kid)));
    };
    let signature = decode(signature_part, "signature")?;
    let signed = &jwt[..header_part.len() + 1 + claims_part.len()];
    key.key
        .pss_verify::<rsa::sha2::Sha256>(signed.as_bytes(), &signature)
        .map_err(|_| {
            format!(
                "the JWT's signature does not verify with the key {} (PS256: RSASSA-PSS, \
                 SHA-256, salt of 32 bytes)",
                quote(&kid)
            )
        })?;
    let claims: Claims = serde_json::from_slice(&decode(claims_part, "claims")?)
        .map_err(|_| "the JWT's claims are not a JSON object (iss, aud, iat, exp)".to_owned())?;
    match claims.iss.as_deref() {
        Some(iss) if iss == key.service_account_id => {}
        Some(iss) => {
            return Err(format!(
                "the JWT's iss {} is not the service account of the key {}",
                quote(iss),
                quote(&kid)
            ));
        }
        None => return Err("the JWT has no iss (the service account id)".into()),
    }
    let audience_ok = match &claims.aud {
        Some(Audience::One(aud)) => audiences.contains(aud),
        Some(Audience::Many(auds)) => auds.iter().any(|aud| audiences.contains(aud)),
        None => return Err("the JWT has no aud".into()),
    };
    if !audience_ok {
        let sent = match &claims.aud {
            Some(Audience::One(aud)) => quote(aud),
            _ => "a list without it".into(),
        };
        return Err(format!(
            "the JWT's aud {sent} is not this server's token URL ({})",
            audiences.first().map_or("none", String::as_str)
        ));
    }
    let (Some(iat), Some(exp)) = (claims.iat, claims.exp) else {
        return Err("the JWT needs iat and exp (Unix seconds)".into());
    };
    if iat > now + CLOCK_SKEW_SECS {
        return Err(format!(
            "the JWT's iat is {} s in the future (check the clock)",
            iat - now
        ));
    }
    if exp <= now - CLOCK_SKEW_SECS {
        return Err(format!("the JWT expired {} s ago", now - exp));
    }
    if exp <= iat || exp - iat > MOST_LIFETIME_SECS {
        return Err(format!(
            "the JWT's exp must come after its iat, by at most {MOST_LIFETIME_SECS} s"
        ));
    }
    Ok(key.service_account_id.clone())
}

/// The audiences of a server reached at `addresses`: the IAM token URL the SDKs build from
/// the endpoint they were given (`https://iam.<endpoint>/iam/v1/tokens`).
pub(crate) fn audiences<'a>(addresses: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut audiences: Vec<String> = Vec::new();
    for address in addresses {
        let audience = format!("https://iam.{address}/iam/v1/tokens");
        if !audiences.contains(&audience) {
            audiences.push(audience);
        }
    }
    audiences
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::EncodePublicKey as _;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn sign(key: &rsa::PrivateKey, header: &str, claims: &str) -> String {
        let signed = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let signature = key
            .pss_sign::<rsa::sha2::Sha256>(signed.as_bytes())
            .unwrap();
        format!("{signed}.{}", b64(&signature))
    }

    #[test]
    fn jwts_are_checked_claim_by_claim() {
        let private = crate::iam::keys::generate_private_key().unwrap();
        let pem = private
            .to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap();
        let keys = HashMap::from([(
            "ajekey".to_owned(),
            PublicKey::from_pem("ajesa", &pem).unwrap(),
        )]);
        let audiences = audiences(["localhost:8443"]);
        let now = 1_800_000_000;
        let header = r#"{"alg":"PS256","kid":"ajekey","typ":"JWT"}"#;
        let claims = |iss: &str, aud: &str, iat: i64, exp: i64| {
            format!(r#"{{"iss":"{iss}","aud":"{aud}","iat":{iat},"exp":{exp}}}"#)
        };
        let aud = "https://iam.localhost:8443/iam/v1/tokens";
        let good = sign(&private, header, &claims("ajesa", aud, now, now + 3600));
        assert_eq!(verify(&good, &keys, &audiences, now).unwrap(), "ajesa");
        // Within the clock skew either way.
        assert!(verify(&good, &keys, &audiences, now - 200).is_ok());

        let refused = |jwt: &str, now: i64| verify(jwt, &keys, &audiences, now).unwrap_err();
        assert!(refused(&good, now + 3600 + 400).contains("expired"));
        assert!(refused(&good, now - 400).contains("future"));
        let other_aud = sign(
            &private,
            header,
            &claims(
                "ajesa",
                "https://iam.api.cloud.yandex.net/iam/v1/tokens",
                now,
                now + 60,
            ),
        );
        assert!(refused(&other_aud, now).contains("aud"));
        let other_iss = sign(&private, header, &claims("ajeother", aud, now, now + 60));
        assert!(refused(&other_iss, now).contains("iss"));
        let too_long = sign(&private, header, &claims("ajesa", aud, now, now + 7200));
        assert!(refused(&too_long, now).contains("at most"));
        let unknown_kid = sign(
            &private,
            r#"{"alg":"PS256","kid":"ajeunknown","typ":"JWT"}"#,
            &claims("ajesa", aud, now, now + 60),
        );
        assert!(refused(&unknown_kid, now).contains("no authorized key"));
        let hs256 = sign(
            &private,
            r#"{"alg":"HS256","kid":"ajekey"}"#,
            &claims("ajesa", aud, now, now + 60),
        );
        assert!(refused(&hs256, now).contains("PS256"));
        // A signature of other claims: the claims were changed after signing.
        let (head, rest) = good.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let forged = format!(
            "{head}.{}.{signature}",
            b64(claims("ajesa", aud, now, now + 3000).as_bytes())
        );
        assert!(refused(&forged, now).contains("signature"));
        assert!(refused("not a jwt", now).contains("three"));
        // What the client sent is quoted only in part.
        let long_kid = format!(r#"{{"alg":"PS256","kid":"{}"}}"#, "k".repeat(5000));
        let message = refused(&sign(&private, &long_kid, "{}"), now);
        assert!(message.len() < 200, "{message}");
    }

    proptest::proptest! {
        /// Whatever a client sends as a JWT, even made of well-formed parts, it is refused
        /// without a panic and with a message of bounded length.
        #[test]
        fn fuzz_jwts_are_refused_with_a_bounded_message(
            raw in ".{0,400}",
            header in ".{0,300}",
            claims in ".{0,300}",
            signature in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        ) {
            let keys = HashMap::new();
            let audiences = audiences(["localhost:8443"]);
            let parts = format!(
                "{}.{}.{}",
                b64(header.as_bytes()),
                b64(claims.as_bytes()),
                b64(&signature)
            );
            for jwt in [raw.as_str(), parts.as_str()] {
                let refused = verify(jwt, &keys, &audiences, 1_800_000_000).unwrap_err();
                proptest::prop_assert!(refused.len() < 400, "{refused}");
            }
        }
    }
}
