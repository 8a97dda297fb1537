//! JWT validation as API Gateway HTTP API's JWT authorizer does it: the
//! token from the identity source, a signature by a key of the issuer's JWKS
//! (RS256, ES256, EdDSA), `iss`, `aud` (or `client_id`), `exp` and `nbf`
//! within a small skew, then the route's scopes.
//!
//! Pure: bytes, keys and a clock in, a decision out. Owns the bounds on
//! tokens and key sets. Must never fetch, log a token, or accept an
//! algorithm the key it names was not made for.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::Denied;

/// Longest token read; API Gateway's whole header limit is 10 KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Most keys kept from one JWKS document.
pub const MAX_KEYS: usize = 100;
/// Largest JWKS document read.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// How far `exp` and `nbf` may be off the edge's clock.
pub const CLOCK_SKEW_SECS: i64 = 60;
/// Most scopes read from a token.
const MAX_SCOPES: usize = 100;

/// A public key from a JWKS document, by the algorithm it verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PublicKey {
    /// RS256: modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// ES256: the uncompressed point.
    P256(Vec<u8>),
    /// EdDSA over Ed25519.
    Ed25519(Vec<u8>),
}

impl PublicKey {
    /// The one JWS algorithm this key verifies.
    fn algorithm(&self) -> &'static str {
        match self {
            PublicKey::Rsa { .. } => "RS256",
            PublicKey::P256(_) => "ES256",
            PublicKey::Ed25519(_) => "EdDSA",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Jwk {
    kid: Option<String>,
    key: PublicKey,
}

/// The issuer's signing keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<Jwk>,
}

/// Why a JWKS document was refused.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("not a JWKS document: {0}")]
    Json(String),
    #[error("more than {MAX_KEYS} keys")]
    TooManyKeys,
    #[error("no RSA, P-256 or Ed25519 signing key")]
    NoKeys,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<Map<String, Value>>,
}

impl KeySet {
    /// Parses a JWKS document (RFC 7517), keeping the keys that can verify
    /// RS256, ES256 or EdDSA and are not marked for encryption only.
    pub fn parse(bytes: &[u8]) -> Result<KeySet, JwksError> {
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge);
        }
        let raw: RawJwks =
            serde_json::from_slice(bytes).map_err(|e| JwksError::Json(e.to_string()))?;
        if raw.keys.len() > MAX_KEYS {
            return Err(JwksError::TooManyKeys);
        }
        let keys: Vec<Jwk> = raw.keys.iter().filter_map(jwk).collect();
        if keys.is_empty() {
            return Err(JwksError::NoKeys);
        }
        Ok(KeySet { keys })
    }

    /// Whether some key has this id (a token naming another may be signed
    /// by a key the issuer added since the set was read).
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Keys in the set.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn b64_field(map: &Map<String, Value>, name: &str) -> Option<Vec<u8>> {
    let text = map.get(name)?.as_str()?;
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

fn jwk(map: &Map<String, Value>) -> Option<Jwk> {
    if map
        .get("use")
        .and_then(Value::as_str)
        .is_some_and(|u| u != "sig")
    {
        return None;
    }
    let text = |k: &str| map.get(k).and_then(Value::as_str);
    let key = match (text("kty")?, text("crv")) {
        ("RSA", _) => PublicKey::Rsa {
            n: b64_field(map, "n")?,
            e: b64_field(map, "e")?,
        },
        ("EC", Some("P-256")) => {
            let (x, y) = (b64_field(map, "x")?, b64_field(map, "y")?);
            if x.len() != 32 || y.len() != 32 {
                return None;
            }
            let mut point = Vec::with_capacity(65);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            PublicKey::P256(point)
        }
        ("OKP", Some("Ed25519")) => {
            let x = b64_field(map, "x")?;
            (x.len() == 32).then_some(())?;
            PublicKey::Ed25519(x)
        }
        _ => return None,
    };
    // A key that says which algorithm it is for is used for no other.
    text("alg")
        .is_none_or(|alg| alg == key.algorithm())
        .then(|| Jwk {
            kid: text("kid").map(str::to_owned),
            key,
        })
}

/// What a token must say to be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// `iss`, exactly.
    pub issuer: String,
    /// One of these in `aud`, or as `client_id` when there is no `aud`.
    pub audiences: Vec<String>,
}

/// A token that passed: its claims as API Gateway hands them on (every
/// value a string) and its scopes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    pub claims: Map<String, Value>,
    pub scopes: Option<Vec<String>>,
    /// `exp` plus the skew: from this Unix second on the token is expired.
    #[serde(skip)]
    pub valid_until: i64,
}

impl Verified {
    /// Whether a token verified earlier is still within its `exp` at `now`
    /// (its `nbf` had passed when it was verified).
    pub fn still_valid(&self, now: i64) -> Result<(), Denied> {
        if now < self.valid_until {
            Ok(())
        } else {
            Err(Denied::Expired)
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

/// The token in an identity-source value: after `Bearer ` when present
/// (API Gateway takes it with or without the prefix).
pub fn token_of(value: &str) -> Option<&str> {
    let value = value.trim();
    let token = match value.get(..6) {
        Some(scheme)
            if scheme.eq_ignore_ascii_case("bearer")
                && (value.len() == 6 || value[6..].starts_with(' ')) =>
        {
            value[6..].trim_start()
        }
        _ => value,
    };
    (!token.is_empty()).then_some(token)
}

/// The `kid` a token names, if it parses that far.
pub fn kid_of(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let header: Header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    header.kid
}

/// Verifies `token` against `keys` and `expect` at `now` (Unix seconds).
pub fn verify(token: &str, keys: &KeySet, expect: &Expect, now: i64) -> Result<Verified, Denied> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Denied::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(head), Some(body), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Denied::Malformed);
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| Denied::Malformed);
    let header: Header = serde_json::from_slice(&decode(head)?).map_err(|_| Denied::Malformed)?;
    let signature = decode(sig)?;
    let signed = &token.as_bytes()[..head.len() + 1 + body.len()];
    let fits = |key: &PublicKey| key.algorithm() == header.alg;
    if !matches!(header.alg.as_str(), "RS256" | "ES256" | "EdDSA") {
        return Err(Denied::Algorithm);
    }
    // The kid picks the key; a token without one may be signed by any key
    // of its algorithm.
    let candidates = keys
        .keys
        .iter()
        .filter(|k| header.kid.is_none() || k.kid == header.kid)
        .filter(|k| fits(&k.key));
    let mut any = false;
    let mut verified = false;
    for jwk in candidates {
        any = true;
        if check_signature(&jwk.key, signed, &signature) {
            verified = true;
            break;
        }
    }
    if !any {
        return Err(Denied::UnknownKey);
    }
    if !verified {
        return Err(Denied::Signature);
    }
    let claims: Map<String, Value> =
        serde_json::from_slice(&decode(body)?).map_err(|_| Denied::Malformed)?;
    let valid_until = check_claims(&claims, expect, now)?;
    Ok(Verified {
        valid_until,
        scopes: scopes(&claims),
        claims: claims
            .into_iter()
            .map(|(k, v)| (k, Value::String(claim_text(&v))))
            .collect(),
    })
}

fn check_signature(key: &PublicKey, signed: &[u8], sig: &[u8]) -> bool {
    match key {
        PublicKey::Rsa { n, e } => RsaPublicKeyComponents { n, e }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed, sig)
            .is_ok(),
        PublicKey::P256(point) => {
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signed, sig)
                .is_ok()
        }
        PublicKey::Ed25519(x) => UnparsedPublicKey::new(&signature::ED25519, x)
            .verify(signed, sig)
            .is_ok(),
    }
}

/// The claims' verdict at `now`; on success, the second the token expires.
fn check_claims(claims: &Map<String, Value>, expect: &Expect, now: i64) -> Result<i64, Denied> {
    let time = |name: &str| claims.get(name).and_then(Value::as_f64).map(|t| t as i64);
    let valid_until = match time("exp") {
        Some(exp) if exp.saturating_add(CLOCK_SKEW_SECS) > now => {
            exp.saturating_add(CLOCK_SKEW_SECS)
        }
        _ => return Err(Denied::Expired),
    };
    if time("nbf").is_some_and(|nbf| nbf - CLOCK_SKEW_SECS > now) {
        return Err(Denied::NotYetValid);
    }
    if claims.get("iss").and_then(Value::as_str) != Some(expect.issuer.as_str()) {
        return Err(Denied::Issuer);
    }
    let accepted = |v: &Value| {
        v.as_str()
            .is_some_and(|a| expect.audiences.iter().any(|e| e == a))
    };
    let audience_ok = match claims.get("aud") {
        Some(Value::Array(list)) => list.iter().any(accepted),
        Some(one) => accepted(one),
        None => claims.get("client_id").is_some_and(accepted),
    };
    if !audience_ok {
        return Err(Denied::Audience);
    }
    Ok(valid_until)
}

/// `scope` (space-separated) or `scp` (a list or a string).
fn scopes(claims: &Map<String, Value>) -> Option<Vec<String>> {
    let words = |s: &str| -> Vec<String> {
        s.split_whitespace()
            .take(MAX_SCOPES)
            .map(str::to_owned)
            .collect()
    };
    match claims.get("scope").or_else(|| claims.get("scp"))? {
        Value::String(s) => Some(words(s)),
        Value::Array(list) => Some(
            list.iter()
                .filter_map(Value::as_str)
                .take(MAX_SCOPES)
                .map(str::to_owned)
                .collect(),
        ),
        _ => None,
    }
}

/// A claim as API Gateway passes it on: strings as they are, lists as
/// `[a b]`, everything else as JSON text.
fn claim_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(claim_text).collect();
            format!("[{}]", inner.join(" "))
        }
        other => other.to_string(),
    }
}

/// Whether a verified token holds one of `required` (none required: yes).
pub fn authorize_scopes(verified: &Verified, required: &[String]) -> Result<(), Denied> {
    if required.is_empty() {
        return Ok(());
    }
    let held = verified.scopes.as_deref().unwrap_or_default();
    if held.iter().any(|s| required.contains(s)) {
        Ok(())
    } else {
        Err(Denied::Scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    struct Issuer {
        pair: Ed25519KeyPair,
    }

    impl Issuer {
        fn new() -> Issuer {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
            Issuer {
                pair: Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap(),
            }
        }
        fn jwks(&self, kid: &str) -> KeySet {
            let doc = serde_json::json!({"keys": [{
                "kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig",
                "x": b64(self.pair.public_key().as_ref()),
            }]});
            KeySet::parse(doc.to_string().as_bytes()).unwrap()
        }
        fn token(&self, header: Value, claims: Value) -> String {
            let signed = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                b64(claims.to_string().as_bytes())
            );
            let sig = self.pair.sign(signed.as_bytes());
            format!("{signed}.{}", b64(sig.as_ref()))
        }
    }

    const NOW: i64 = 1_700_000_000;

    fn expect() -> Expect {
        Expect {
            issuer: "https://issuer.test".into(),
            audiences: vec!["api".into()],
        }
    }

    fn claims() -> Value {
        serde_json::json!({
            "iss": "https://issuer.test", "aud": ["other", "api"], "sub": "alice",
            "exp": NOW + 300, "nbf": NOW - 10, "scope": "read write", "n": 7,
        })
    }

    fn header() -> Value {
        serde_json::json!({"alg": "EdDSA", "kid": "k1", "typ": "JWT"})
    }

    #[test]
    fn a_good_token_passes_with_string_claims_and_scopes() {
        let issuer = Issuer::new();
        let token = issuer.token(header(), claims());
        let v = verify(&token, &issuer.jwks("k1"), &expect(), NOW).unwrap();
        assert_eq!(v.claims["sub"], "alice");
        assert_eq!(v.claims["n"], "7");
        assert_eq!(v.claims["aud"], "[other api]");
        assert_eq!(v.scopes, Some(vec!["read".into(), "write".into()]));
        assert_eq!(authorize_scopes(&v, &["write".into()]), Ok(()));
        assert_eq!(authorize_scopes(&v, &["admin".into()]), Err(Denied::Scope));
    }

    #[test]
    fn every_broken_claim_is_refused_for_its_reason() {
        let issuer = Issuer::new();
        let keys = issuer.jwks("k1");
        let with = |f: &dyn Fn(&mut Map<String, Value>)| {
            let mut c = claims().as_object().unwrap().clone();
            f(&mut c);
            verify(
                &issuer.token(header(), Value::Object(c)),
                &keys,
                &expect(),
                NOW,
            )
        };
        assert_eq!(
            with(&|c| {
                c.insert("exp".into(), (NOW - 61).into());
            }),
            Err(Denied::Expired)
        );
        assert!(
            with(&|c| {
                c.insert("exp".into(), (NOW - 30).into());
            })
            .is_ok(),
            "within the skew"
        );
        assert_eq!(
            with(&|c| {
                c.remove("exp");
            }),
            Err(Denied::Expired)
        );
        assert_eq!(
            with(&|c| {
                c.insert("nbf".into(), (NOW + 61).into());
            }),
            Err(Denied::NotYetValid)
        );
        assert_eq!(
            with(&|c| {
                c.insert("iss".into(), "https://evil.test".into());
            }),
            Err(Denied::Issuer)
        );
        assert_eq!(
            with(&|c| {
                c.insert("aud".into(), "other".into());
            }),
            Err(Denied::Audience)
        );
        assert!(with(&|c| {
            c.remove("aud");
            c.insert("client_id".into(), "api".into());
        })
        .is_ok());
    }

    #[test]
    fn algorithms_keys_and_signatures_are_checked() {
        let issuer = Issuer::new();
        let keys = issuer.jwks("k1");
        let good = issuer.token(header(), claims());
        let check = |t: &str| verify(t, &keys, &expect(), NOW);
        // alg none, with or without a signature.
        let mut none = header();
        none["alg"] = "none".into();
        let t = issuer.token(none, claims());
        assert_eq!(check(&t), Err(Denied::Algorithm));
        let unsigned = format!("{}.", &t[..t.rfind('.').unwrap()]);
        assert_eq!(check(&unsigned), Err(Denied::Algorithm));
        // A key of the wrong type for the algorithm the token names.
        let mut rs = header();
        rs["alg"] = "RS256".into();
        assert_eq!(check(&issuer.token(rs, claims())), Err(Denied::UnknownKey));
        let mut other_kid = header();
        other_kid["kid"] = "k2".into();
        assert_eq!(
            check(&issuer.token(other_kid, claims())),
            Err(Denied::UnknownKey)
        );
        // Another issuer's signature, and a tampered body.
        assert_eq!(
            verify(&good, &Issuer::new().jwks("k1"), &expect(), NOW),
            Err(Denied::Signature)
        );
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged = b64(
            serde_json::json!({"iss": "https://issuer.test", "aud": "api", "exp": NOW + 9})
                .to_string()
                .as_bytes(),
        );
        parts[1] = &forged;
        assert_eq!(check(&parts.join(".")), Err(Denied::Signature));
        for junk in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "!!.!!.!!",
            &"a".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert_eq!(check(junk), Err(Denied::Malformed), "{junk:.20}");
        }
    }

    #[test]
    fn jwks_documents_keep_only_signing_keys_within_bounds() {
        let ok = serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": b64(&[1; 32]), "kid": "a"},
            {"kty": "OKP", "crv": "Ed25519", "x": b64(&[1; 31]), "kid": "short"},
            {"kty": "EC", "crv": "P-384", "x": b64(&[1; 48]), "y": b64(&[1; 48])},
            {"kty": "RSA", "n": b64(&[1; 256]), "e": "AQAB", "use": "enc"},
            {"kty": "RSA", "n": b64(&[1; 256]), "e": "AQAB", "alg": "ES256"},
            {"kty": "oct", "k": "c2VjcmV0"},
        ]});
        let set = KeySet::parse(ok.to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), 1);
        assert!(set.has_kid("a") && !set.has_kid("short"));
        let none = serde_json::json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]});
        assert!(matches!(
            KeySet::parse(none.to_string().as_bytes()),
            Err(JwksError::NoKeys)
        ));
        let many: Vec<Value> = (0..=MAX_KEYS)
            .map(|_| serde_json::json!({"kty": "RSA"}))
            .collect();
        let many = serde_json::json!({ "keys": many });
        assert!(matches!(
            KeySet::parse(many.to_string().as_bytes()),
            Err(JwksError::TooManyKeys)
        ));
        assert!(matches!(
            KeySet::parse(&vec![b' '; MAX_JWKS_BYTES + 1]),
            Err(JwksError::TooLarge)
        ));
        assert!(matches!(KeySet::parse(b"[1,2"), Err(JwksError::Json(_))));
    }

    #[test]
    fn identity_values_give_the_token_with_or_without_bearer() {
        assert_eq!(token_of("Bearer abc"), Some("abc"));
        assert_eq!(token_of("bearer   abc "), Some("abc"));
        assert_eq!(token_of("abc"), Some("abc"));
        assert_eq!(token_of("Bearer "), None);
        assert_eq!(token_of(""), None);
    }

    proptest::proptest! {
        /// Fuzzing the whole path: any text, and any text shaped like a
        /// JWT, is refused with a reason, never a panic.
        #[test]
        fn hostile_tokens_never_panic(raw in ".{0,400}", a in "[A-Za-z0-9_-]{0,200}", b in "[A-Za-z0-9_-]{0,200}", c in "[A-Za-z0-9_-]{0,200}") {
            let issuer = Issuer::new();
            let keys = issuer.jwks("k1");
            let _ = verify(&raw, &keys, &expect(), NOW);
            let shaped = format!("{a}.{b}.{c}");
            proptest::prop_assert!(verify(&shaped, &keys, &expect(), NOW).is_err());
            let _ = kid_of(&shaped);
            let _ = KeySet::parse(raw.as_bytes());
        }
    }
}
