//! Cost of JWT validation per request, as the authorizer stage runs it:
//! `jwt::verify` (header, signature, claims) on a three-key JWKS, for each
//! algorithm, with keys made by ring (EdDSA, ES256) and openssl (RS256).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use levee_edge::authorizer::jwt::{self, Expect, KeySet};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PKCS1_SHA256,
};
use serde_json::json;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A 2048-bit RSA key from openssl, PKCS#1 DER (ring cannot make one).
fn rsa_key() -> RsaKeyPair {
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "openssl genrsa 2048 2>/dev/null | openssl rsa -traditional -outform DER 2>/dev/null",
        ])
        .output()
        .expect("openssl must be installed");
    RsaKeyPair::from_der(&out.stdout).expect("an RSA PKCS#1 key")
}

fn token(kid: &str, alg: &str, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let header = json!({"alg": alg, "kid": kid, "typ": "JWT"});
    let claims = json!({
        "iss": "https://issuer.test/", "aud": "api", "sub": "alice",
        "exp": 4_000_000_000i64, "iat": 1_700_000_000, "scope": "orders:read profile",
    });
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = sign(signed.as_bytes());
    format!("{signed}.{}", b64(&sig))
}

fn bench(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let ed =
        Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap();
    let ec_pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec_pkcs8.as_ref(), &rng)
        .unwrap();
    let rsa = rsa_key();
    let point = ec.public_key().as_ref();
    let rsa_public: ring::rsa::PublicKeyComponents<Vec<u8>> = rsa.public().into();
    let (n, e) = (rsa_public.n, rsa_public.e);
    let jwks = json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "d1", "x": b64(ed.public_key().as_ref())},
        {"kty": "EC", "crv": "P-256", "kid": "e1", "x": b64(&point[1..33]), "y": b64(&point[33..65])},
        {"kty": "RSA", "kid": "r1", "n": b64(&n), "e": b64(&e)},
    ]});
    let keys = KeySet::parse(jwks.to_string().as_bytes()).unwrap();
    let expect = Expect {
        issuer: "https://issuer.test/".into(),
        audiences: vec!["api".into()],
    };
    let now = 1_700_000_100;
    let tokens = [
        (
            "jwt_verify_eddsa",
            token("d1", "EdDSA", |m| ed.sign(m).as_ref().to_vec()),
        ),
        (
            "jwt_verify_es256",
            token("e1", "ES256", |m| {
                ec.sign(&rng, m).unwrap().as_ref().to_vec()
            }),
        ),
        (
            "jwt_verify_rs256",
            token("r1", "RS256", |m| {
                let mut sig = vec![0; rsa.public().modulus_len()];
                rsa.sign(&RSA_PKCS1_SHA256, &rng, m, &mut sig).unwrap();
                sig
            }),
        ),
    ];
    for (name, t) in &tokens {
        assert!(jwt::verify(t, &keys, &expect, now).is_ok(), "{name}");
        c.bench_function(name, |b| {
            b.iter(|| jwt::verify(std::hint::black_box(t), &keys, &expect, now).unwrap())
        });
    }
    // Another valid signature by the same key, over different claims.
    let (good, other) = (
        &tokens[0].1,
        token("d1", "EdDSA", |m| {
            ed.sign(&[m, b"x"].concat()).as_ref().to_vec()
        }),
    );
    let bad = format!(
        "{}.{}",
        &good[..good.rfind('.').unwrap()],
        &other[other.rfind('.').unwrap() + 1..]
    );
    c.bench_function("jwt_refuse_bad_signature_eddsa", |b| {
        b.iter(|| jwt::verify(std::hint::black_box(&bad), &keys, &expect, now).unwrap_err())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
