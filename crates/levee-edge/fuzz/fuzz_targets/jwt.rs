//! The JWT authorizer's whole path on input from strangers: the first line
//! is a JWKS document (as an issuer's URL could serve it), the second an
//! identity-source value (as a client sends it). Parse the keys, take the
//! token, read its kid, verify it. Must never panic, hang or allocate past
//! the bounds in `authorizer::jwt`.
#![no_main]

use levee_edge::authorizer::jwt::{self, Expect, KeySet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |&b| b == b'\n');
    let jwks = parts.next().unwrap_or_default();
    let value = parts.next().unwrap_or_default();
    let keys = KeySet::parse(jwks).unwrap_or_default();
    let Ok(value) = std::str::from_utf8(value) else {
        return;
    };
    let Some(token) = jwt::token_of(value) else {
        return;
    };
    let _ = jwt::kid_of(token);
    let expect = Expect {
        issuer: "https://issuer.test/".into(),
        audiences: vec!["api".into()],
    };
    if let Ok(verified) = jwt::verify(token, &keys, &expect, 1_700_000_000) {
        let _ = jwt::authorize_scopes(&verified, &["read".into()]);
    }
});
