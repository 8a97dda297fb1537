//! The "full protection stack" config for the shield-on vs shield-off
//! comparison: 50 firewall rules of every kind that the bench's requests pass
//! (so every rule is evaluated on every request), a per-IP rate rule that
//! counts every request but never trips, an account throttle that never
//! empties, and an API-key check in dry-run.

use std::fmt::Write;

/// `[throttle]` and `[firewall]` sections with 50 rules.
pub fn full_stack() -> String {
    let mut s = String::from("[throttle]\nrate = 1000000\nburst = 1000000\n\n[firewall]\n\n");
    // A 10k-entry deny list in 10.0.0.0/8, which the bench never uses.
    s += "[firewall.ip_sets]\ndeny = [";
    for i in 0..10_000u32 {
        let _ = write!(s, "\"10.{}.{}.0/24\",", (i >> 8) & 0xff, i & 0xff);
    }
    s += "]\n\n";
    let mut rule = |n: usize, action: &str, statement: &str| {
        let _ = write!(
            s,
            "[[firewall.rules]]\nname = \"r{n}\"\npriority = {n}\naction = \"{action}\"\nstatement = {statement}\n\n"
        );
    };
    rule(0, "block", "{ ip_set = { name = \"deny\" } }");
    rule(
        1,
        "block",
        "{ rate = { limit = 1000000000, window = \"60s\" } }",
    );
    rule(2, "count", "{ not = { string_match = { field = { header = \"x-api-key\" }, search = \"bench-key\", position = \"exactly\" } } }");
    rule(
        3,
        "block",
        "{ sqli = { field = \"query_string\", transforms = [\"url_decode\"] } }",
    );
    rule(4, "block", "{ xss = { field = \"query_string\", transforms = [\"url_decode\", \"html_entity_decode\"] } }");
    rule(
        5,
        "block",
        "{ size = { field = \"query_string\", op = \"gt\", size = 4096 } }",
    );
    for n in 6..50 {
        let statement = match n % 4 {
            0 => format!("{{ string_match = {{ field = \"path\", search = \"/blocked-{n}\", position = \"starts_with\", transforms = [\"lowercase\"] }} }}"),
            1 => format!("{{ string_match = {{ field = {{ header = \"user-agent\" }}, search = \"badbot-{n}\", transforms = [\"lowercase\"] }} }}"),
            2 => format!("{{ regex = {{ field = \"path\", pattern = \"^/(wp-admin|phpmyadmin|cgi-bin)/{n}\" }} }}"),
            _ => format!("{{ and = [{{ string_match = {{ field = \"method\", search = \"DELETE\", position = \"exactly\" }} }}, {{ string_match = {{ field = {{ query_arg = \"id\" }}, search = \"{n}\" }} }}] }}"),
        };
        rule(n, "block", &statement);
    }
    s
}
