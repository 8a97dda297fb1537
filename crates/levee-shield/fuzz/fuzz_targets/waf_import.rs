//! Arbitrary bytes -> AWS WAF JSON importer. Whatever it accepts must compile
//! (the importer promises a config `Firewall::compile` accepts) and its TOML
//! must parse back.
#![no_main]

use levee_shield::firewall::{import_waf_json, Firewall};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(imp) = import_waf_json(s) {
        assert!(
            Firewall::compile(&imp.config).is_ok(),
            "import produced a config that does not compile"
        );
    }
});
