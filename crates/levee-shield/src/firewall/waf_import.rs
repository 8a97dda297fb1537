//! AWS WAF v2 web ACL import: `aws wafv2 get-web-acl` JSON (or the bare
//! WebACL object from the console) to a [`FirewallConfig`] and its
//! `[firewall]` TOML.
//!
//! Owns the mapping of AWS statement, field, transformation and action names
//! to ours. Reads JSON as an untyped tree on purpose: AWS adds fields often,
//! and an importer that refuses a newer export helps nobody. It must never
//! guess: anything without an exact equivalent (managed rule groups, geo
//! match, captcha, unsupported transformations ...) drops the affected rule
//! and says so in `notes`; approximations are kept and also noted. The
//! result is always a config that [`Firewall::compile`] accepts.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::config::{
    ActionKind, BlockResponseConfig, DefaultAction, DetectConfig, DurationConfig, FieldConfig,
    FirewallConfig, IpSetStatementConfig, IpSource, PositionConfig, RateKeyConfig,
    RateStatementConfig, RegexMatchConfig, RuleConfig, SizeConstraintConfig, SizeOp,
    StatementConfig, StringMatchConfig, TransformConfig,
};
use super::rule::MAX_DEPTH;
use super::{Firewall, MAX_RULES};

/// Largest JSON document accepted (a 1,500-WCU ACL is far smaller).
pub const MAX_IMPORT_BYTES: usize = 8 * 1024 * 1024;

/// The converted ACL.
#[derive(Debug, Clone)]
pub struct WafImport {
    /// The converted configuration; it compiles.
    pub config: FirewallConfig,
    /// `config` as a `[firewall]` TOML snippet for levee.toml.
    pub toml: String,
    /// What was not converted or only approximated, one line each.
    pub notes: Vec<String>,
}

/// Why an import failed as a whole (individual rules never fail it).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input is not JSON.
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The input is larger than [`MAX_IMPORT_BYTES`].
    #[error("web ACL JSON larger than {MAX_IMPORT_BYTES} bytes")]
    TooLarge,
    /// The JSON is not a web ACL.
    #[error("not an AWS WAF web ACL: {0}")]
    Shape(String),
    /// The converted config could not be rendered as TOML.
    #[error("rendering TOML: {0}")]
    Toml(#[from] toml::ser::Error),
}

/// Converts an AWS WAF v2 web ACL.
pub fn import_waf_json(json: &str) -> Result<WafImport, ImportError> {
    if json.len() > MAX_IMPORT_BYTES {
        return Err(ImportError::TooLarge);
    }
    let root: Value = serde_json::from_str(json)?;
    let acl = root.get("WebACL").unwrap_or(&root);
    let acl = acl
        .as_object()
        .ok_or_else(|| ImportError::Shape("expected a JSON object".into()))?;
    if !acl.contains_key("Rules") && !acl.contains_key("DefaultAction") {
        return Err(ImportError::Shape("no `Rules` or `DefaultAction`".into()));
    }
    let mut cx = Importer {
        notes: Vec::new(),
        ip_sets: BTreeMap::new(),
        bodies: acl.get("CustomResponseBodies").and_then(Value::as_object),
    };
    let mut cfg = FirewallConfig::default();
    match acl.get("DefaultAction").and_then(Value::as_object) {
        Some(d) if d.contains_key("Block") => {
            cfg.default_action = DefaultAction::Block;
            cfg.default_response = cx.custom_response(d.get("Block"), "DefaultAction");
        }
        Some(d) if d.contains_key("Allow") => {}
        _ => cx
            .notes
            .push("DefaultAction missing or unknown: using allow".into()),
    }
    let rules = acl
        .get("Rules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if rules.len() > MAX_RULES {
        cx.notes.push(format!(
            "only the first {MAX_RULES} of {} rules were considered",
            rules.len()
        ));
    }
    for r in rules.iter().take(MAX_RULES) {
        let name = r
            .get("Name")
            .and_then(Value::as_str)
            .unwrap_or("(unnamed)")
            .to_owned();
        match cx.rule(r) {
            Ok(rc) => cfg.rules.push(rc),
            Err(why) => cx.notes.push(format!("rule `{name}` not converted: {why}")),
        }
    }
    cfg.ip_sets = cx.ip_sets;
    let mut notes = cx.notes;
    drop_until_compiles(&mut cfg, &mut notes);
    let toml = toml::to_string(&TomlRoot { firewall: &cfg })?;
    Ok(WafImport {
        config: cfg,
        toml,
        notes,
    })
}

#[derive(serde::Serialize)]
struct TomlRoot<'a> {
    firewall: &'a FirewallConfig,
}

/// Removes rules the compiler rejects (e.g. label matches on labels only a
/// dropped managed rule group would add), noting each, until it compiles.
fn drop_until_compiles(cfg: &mut FirewallConfig, notes: &mut Vec<String>) {
    // Each round removes at least one rule or stops, so this terminates.
    for _ in 0..=cfg.rules.len() {
        let Err(e) = Firewall::compile(cfg) else {
            return;
        };
        let mut bad: Vec<usize> = Vec::new();
        for (path, msg) in &e.problems {
            let idx = path
                .strip_prefix("firewall.rules[")
                .and_then(|s| s.split(']').next())
                .and_then(|s| s.parse::<usize>().ok());
            match idx {
                Some(i) => {
                    if let Some(r) = cfg.rules.get(i) {
                        notes.push(format!("rule `{}` dropped: {path}: {msg}", r.name));
                    }
                    bad.push(i);
                }
                None => {
                    notes.push(format!("config problem: {path}: {msg}"));
                }
            }
        }
        if bad.is_empty() {
            return;
        }
        bad.sort_unstable();
        bad.dedup();
        for i in bad.into_iter().rev() {
            if i < cfg.rules.len() {
                cfg.rules.remove(i);
            }
        }
    }
}

#[derive(Debug)]
struct Importer<'a> {
    notes: Vec<String>,
    ip_sets: BTreeMap<String, Vec<String>>,
    bodies: Option<&'a Map<String, Value>>,
}

type Conv<T> = Result<T, String>;

fn obj<'v>(v: &'v Value, what: &str) -> Conv<&'v Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| format!("{what} is not an object"))
}

fn str_of<'v>(m: &'v Map<String, Value>, k: &str) -> Conv<&'v str> {
    m.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing string `{k}`"))
}

/// The single key of an AWS union object such as `{"UriPath": {}}`.
fn union(v: &Value, what: &str) -> Conv<(String, Value)> {
    let m = obj(v, what)?;
    let mut it = m.iter();
    match (it.next(), it.next()) {
        (Some((k, v)), None) => Ok((k.clone(), v.clone())),
        _ => Err(format!("{what} must have exactly one key")),
    }
}

/// Keeps `[A-Za-z0-9_-]`, the rule/set-name alphabet.
fn sanitize(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(128)
        .collect();
    if out.is_empty() {
        "unnamed".into()
    } else {
        out
    }
}

impl Importer<'_> {
    fn rule(&mut self, r: &Value) -> Conv<RuleConfig> {
        let r = obj(r, "rule")?;
        let name = str_of(r, "Name")?;
        let priority = r
            .get("Priority")
            .and_then(Value::as_u64)
            .and_then(|p| u32::try_from(p).ok())
            .ok_or("missing or invalid Priority")?;
        if r.contains_key("OverrideAction") {
            return Err("rule group references (OverrideAction) cannot be imported; recreate the rules inline".into());
        }
        let (action_name, action_body) = union(r.get("Action").ok_or("missing Action")?, "Action")?;
        let (action, response) = match action_name.as_str() {
            "Allow" => (ActionKind::Allow, None),
            "Count" => (ActionKind::Count, None),
            "Block" => (
                ActionKind::Block,
                self.custom_response(Some(&action_body), name),
            ),
            other => {
                return Err(format!(
                    "action {other} (Captcha/Challenge) has no Levee equivalent"
                ))
            }
        };
        let labels = r
            .get("RuleLabels")
            .and_then(Value::as_array)
            .map(|ls| {
                ls.iter()
                    .filter_map(|l| l.get("Name")?.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let statement = self.statement(r.get("Statement").ok_or("missing Statement")?, 1, name)?;
        Ok(RuleConfig {
            name: sanitize(name),
            priority,
            action,
            dry_run: false,
            response,
            labels,
            ban: None,
            statement,
        })
    }

    /// `{"CustomResponse": {...}}` (inside `Block`) to a block response.
    fn custom_response(
        &mut self,
        block: Option<&Value>,
        rule: &str,
    ) -> Option<BlockResponseConfig> {
        let cr = block?.get("CustomResponse")?.as_object()?;
        let status = cr
            .get("ResponseCode")
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(403);
        let mut resp = BlockResponseConfig {
            status,
            body: None,
            content_type: None,
            headers: BTreeMap::new(),
        };
        if let Some(key) = cr.get("CustomResponseBodyKey").and_then(Value::as_str) {
            match self.bodies.and_then(|b| b.get(key)) {
                Some(b) => {
                    resp.body = b.get("Content").and_then(Value::as_str).map(str::to_owned);
                    resp.content_type = match b.get("ContentType").and_then(Value::as_str) {
                        Some("APPLICATION_JSON") => Some("application/json".into()),
                        Some("TEXT_HTML") => Some("text/html; charset=utf-8".into()),
                        _ => Some("text/plain; charset=utf-8".into()),
                    };
                }
                None => self.notes.push(format!(
                    "{rule}: response body `{key}` not found in CustomResponseBodies"
                )),
            }
        }
        for h in cr
            .get("ResponseHeaders")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let (Some(n), Some(v)) = (
                h.get("Name").and_then(Value::as_str),
                h.get("Value").and_then(Value::as_str),
            ) {
                resp.headers.insert(n.to_ascii_lowercase(), v.to_owned());
            }
        }
        Some(resp)
    }

    fn statement(&mut self, v: &Value, depth: usize, rule: &str) -> Conv<StatementConfig> {
        if depth > MAX_DEPTH {
            return Err(format!("statements nest deeper than {MAX_DEPTH}"));
        }
        let (kind, s) = union(v, "Statement")?;
        let s = obj(&s, &kind)?;
        let list = |me: &mut Self, s: &Map<String, Value>| -> Conv<Vec<StatementConfig>> {
            s.get("Statements")
                .and_then(Value::as_array)
                .ok_or("missing Statements")?
                .iter()
                .map(|x| me.statement(x, depth + 1, rule))
                .collect()
        };
        Ok(match kind.as_str() {
            "ByteMatchStatement" => {
                let search = match s.get("SearchStringBase64").and_then(Value::as_str) {
                    Some(b64) => {
                        let raw = base64_decode(b64).ok_or("SearchStringBase64 is not base64")?;
                        String::from_utf8(raw)
                            .map_err(|_| "binary search strings are not supported")?
                    }
                    None => str_of(s, "SearchString")?.to_owned(),
                };
                let position = match str_of(s, "PositionalConstraint")? {
                    "EXACTLY" => PositionConfig::Exactly,
                    "STARTS_WITH" => PositionConfig::StartsWith,
                    "ENDS_WITH" => PositionConfig::EndsWith,
                    "CONTAINS" => PositionConfig::Contains,
                    "CONTAINS_WORD" => PositionConfig::ContainsWord,
                    other => return Err(format!("positional constraint {other}")),
                };
                StatementConfig::StringMatch(StringMatchConfig {
                    field: self.field(s, rule)?,
                    search,
                    position,
                    transforms: transforms(s)?,
                })
            }
            "RegexMatchStatement" => StatementConfig::Regex(RegexMatchConfig {
                field: self.field(s, rule)?,
                pattern: str_of(s, "RegexString")?.to_owned(),
                transforms: transforms(s)?,
            }),
            "SizeConstraintStatement" => StatementConfig::Size(SizeConstraintConfig {
                field: self.field(s, rule)?,
                op: match str_of(s, "ComparisonOperator")? {
                    "EQ" => SizeOp::Eq,
                    "NE" => SizeOp::Ne,
                    "LT" => SizeOp::Lt,
                    "LE" => SizeOp::Le,
                    "GT" => SizeOp::Gt,
                    "GE" => SizeOp::Ge,
                    other => return Err(format!("comparison operator {other}")),
                },
                size: s
                    .get("Size")
                    .and_then(Value::as_u64)
                    .ok_or("missing Size")?,
                transforms: transforms(s)?,
            }),
            "SqliMatchStatement" | "XssMatchStatement" => {
                if s.get("SensitivityLevel").and_then(Value::as_str) == Some("HIGH") {
                    self.notes.push(format!("{rule}: SQLi SensitivityLevel HIGH approximated by libinjection's single level"));
                }
                let d = DetectConfig {
                    field: self.field(s, rule)?,
                    transforms: transforms(s)?,
                };
                if kind == "SqliMatchStatement" {
                    StatementConfig::Sqli(d)
                } else {
                    StatementConfig::Xss(d)
                }
            }
            "IPSetReferenceStatement" => {
                let arn = str_of(s, "ARN")?;
                // arn:aws:wafv2:REGION:ACCOUNT:SCOPE/ipset/NAME/ID
                let parts: Vec<&str> = arn.split('/').collect();
                let name = sanitize(
                    parts
                        .len()
                        .checked_sub(2)
                        .and_then(|i| parts.get(i))
                        .copied()
                        .unwrap_or(arn),
                );
                if !self.ip_sets.contains_key(&name) {
                    self.notes.push(format!(
                        "ip set `{name}` ({arn}) imported empty: fill [firewall.ip_sets].{name} with its addresses"
                    ));
                    self.ip_sets.insert(name.clone(), Vec::new());
                }
                let source = match s.get("IPSetForwardedIPConfig") {
                    None => IpSource::Client,
                    Some(f) => {
                        self.forwarded_note(f, rule);
                        IpSource::Forwarded
                    }
                };
                StatementConfig::IpSet(IpSetStatementConfig { name, source })
            }
            "RateBasedStatement" => {
                if depth > 1 {
                    return Err("nested rate-based statement".into());
                }
                let limit = s
                    .get("Limit")
                    .and_then(Value::as_u64)
                    .ok_or("missing Limit")?;
                let window = s
                    .get("EvaluationWindowSec")
                    .and_then(Value::as_u64)
                    .unwrap_or(300);
                let key = match s
                    .get("AggregateKeyType")
                    .and_then(Value::as_str)
                    .unwrap_or("IP")
                {
                    "IP" => vec![RateKeyConfig::Ip],
                    "FORWARDED_IP" => {
                        if let Some(f) = s.get("ForwardedIPConfig") {
                            self.forwarded_note(f, rule);
                        }
                        vec![RateKeyConfig::ForwardedIp]
                    }
                    "CUSTOM_KEYS" => self.custom_keys(s)?,
                    other => {
                        return Err(format!("AggregateKeyType {other} has no Levee equivalent"))
                    }
                };
                self.notes.push(format!(
                    "{rule}: AWS rate limits are estimates that lag by seconds; Levee's counter is exact, so it may block sooner"
                ));
                let scope_down = match s.get("ScopeDownStatement") {
                    Some(sd) => Some(Box::new(self.statement(sd, depth + 1, rule)?)),
                    None => None,
                };
                StatementConfig::Rate(RateStatementConfig {
                    limit,
                    window: DurationConfig(std::time::Duration::from_secs(window)),
                    key,
                    scope_down,
                })
            }
            "AndStatement" => StatementConfig::And(list(self, s)?),
            "OrStatement" => StatementConfig::Or(list(self, s)?),
            "NotStatement" => StatementConfig::Not(Box::new(self.statement(
                s.get("Statement").ok_or("missing Statement")?,
                depth + 1,
                rule,
            )?)),
            "LabelMatchStatement" => {
                let key = str_of(s, "Key")?;
                let key = strip_acl_prefix(key);
                match s.get("Scope").and_then(Value::as_str) {
                    Some("NAMESPACE") => StatementConfig::LabelNamespace(key),
                    _ => StatementConfig::Label(key),
                }
            }
            other => return Err(format!("{other} has no Levee equivalent")),
        })
    }

    fn forwarded_note(&mut self, f: &Value, rule: &str) {
        let header = f
            .get("HeaderName")
            .and_then(Value::as_str)
            .unwrap_or("X-Forwarded-For");
        if !header.eq_ignore_ascii_case("x-forwarded-for") {
            self.notes.push(format!(
                "{rule}: forwarded IP header {header} approximated by X-Forwarded-For's first hop"
            ));
        }
        if f.get("FallbackBehavior").and_then(Value::as_str) == Some("MATCH") {
            self.notes.push(format!(
                "{rule}: FallbackBehavior MATCH approximated as NO_MATCH"
            ));
        }
    }

    fn custom_keys(&mut self, s: &Map<String, Value>) -> Conv<Vec<RateKeyConfig>> {
        let keys = s
            .get("CustomKeys")
            .and_then(Value::as_array)
            .ok_or("CUSTOM_KEYS without CustomKeys")?;
        keys.iter()
            .map(|k| {
                let (kind, body) = union(k, "CustomKey")?;
                if body
                    .get("TextTransformations")
                    .and_then(Value::as_array)
                    .is_some_and(|t| !t.is_empty())
                {
                    return Err(format!("custom key {kind} with text transformations"));
                }
                let name = || {
                    body.get("Name")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or(format!("{kind} without Name"))
                };
                Ok(match kind.as_str() {
                    "IP" => RateKeyConfig::Ip,
                    "ForwardedIP" => RateKeyConfig::ForwardedIp,
                    "HTTPMethod" => RateKeyConfig::Method,
                    "UriPath" => RateKeyConfig::Path,
                    "QueryString" => RateKeyConfig::QueryString,
                    "Header" => RateKeyConfig::Header(name()?),
                    "Cookie" => RateKeyConfig::Cookie(name()?),
                    "QueryArgument" => RateKeyConfig::QueryArg(name()?),
                    other => return Err(format!("custom key {other} has no Levee equivalent")),
                })
            })
            .collect()
    }

    fn field(&mut self, s: &Map<String, Value>, rule: &str) -> Conv<FieldConfig> {
        let (kind, f) = union(
            s.get("FieldToMatch").ok_or("missing FieldToMatch")?,
            "FieldToMatch",
        )?;
        let name = || {
            f.get("Name")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or(format!("{kind} without Name"))
        };
        Ok(match kind.as_str() {
            "UriPath" => FieldConfig::Path,
            "QueryString" => FieldConfig::QueryString,
            "Method" => FieldConfig::Method,
            "SingleHeader" => FieldConfig::Header(name()?.to_ascii_lowercase()),
            "SingleQueryArgument" => FieldConfig::QueryArg(name()?),
            "Body" => {
                self.oversize_note(&f, rule);
                FieldConfig::Body
            }
            "JsonBody" => {
                self.oversize_note(&f, rule);
                self.notes
                    .push(format!("{rule}: JsonBody approximated by the raw body"));
                FieldConfig::Body
            }
            "AllQueryArguments" => {
                self.notes.push(format!(
                    "{rule}: AllQueryArguments approximated by the raw query string"
                ));
                FieldConfig::QueryString
            }
            "Cookies" => {
                let included = f
                    .get("MatchPattern")
                    .and_then(|p| p.get("IncludedCookies"))
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let scope = f.get("MatchScope").and_then(Value::as_str).unwrap_or("ALL");
                match (included, scope) {
                    ([one], "VALUE") => FieldConfig::Cookie(
                        one.as_str()
                            .ok_or("cookie name is not a string")?
                            .to_owned(),
                    ),
                    _ => {
                        return Err(
                            "Cookies field other than one included cookie with MatchScope VALUE"
                                .into(),
                        )
                    }
                }
            }
            other => return Err(format!("field {other} has no Levee equivalent")),
        })
    }

    fn oversize_note(&mut self, f: &Value, rule: &str) {
        if f.get("OversizeHandling")
            .and_then(Value::as_str)
            .is_some_and(|h| h != "CONTINUE")
        {
            self.notes.push(format!(
                "{rule}: body OversizeHandling treated as CONTINUE (inspect the first bytes)"
            ));
        }
    }
}

fn transforms(s: &Map<String, Value>) -> Conv<Vec<TransformConfig>> {
    let mut ts: Vec<(i64, &str)> = Vec::new();
    for t in s
        .get("TextTransformations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let p = t.get("Priority").and_then(Value::as_i64).unwrap_or(0);
        ts.push((p, t.get("Type").and_then(Value::as_str).unwrap_or("NONE")));
    }
    // AWS applies the lowest priority first.
    ts.sort_by_key(|(p, _)| *p);
    ts.into_iter()
        .filter(|(_, t)| *t != "NONE")
        .map(|(_, t)| match t {
            "LOWERCASE" => Ok(TransformConfig::Lowercase),
            "URL_DECODE" => Ok(TransformConfig::UrlDecode),
            "HTML_ENTITY_DECODE" => Ok(TransformConfig::HtmlEntityDecode),
            "COMPRESS_WHITE_SPACE" => Ok(TransformConfig::CompressWhitespace),
            other => Err(format!("text transformation {other} is not supported")),
        })
        .collect()
}

/// `awswaf:111122223333:webacl:acl-name:bad-bot` -> `bad-bot`: labels this
/// ACL's own rules add are stored by their short names.
fn strip_acl_prefix(key: &str) -> String {
    let parts: Vec<&str> = key.splitn(5, ':').collect();
    match parts.as_slice() {
        ["awswaf", _, "webacl", _, rest] => (*rest).to_owned(),
        _ => key.to_owned(),
    }
}

/// Standard base64 with optional padding and whitespace.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    // WAF exports may wrap long values; padding is optional there.
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine.decode(compact).ok()
}

#[cfg(test)]
mod tests {
    use super::super::{FirewallConfig, RequestView, Verdict};
    use super::*;
    use std::time::Instant;

    const FIXTURE: &str = include_str!("testdata/web-acl.json");

    fn view<'a>(
        h: &'a http::HeaderMap,
        method: &'a str,
        path: &'a str,
        query: &'a str,
        body: &'a [u8],
    ) -> RequestView<'a> {
        RequestView {
            client_ip: "198.51.100.1".parse().unwrap(),
            forwarded_ip: None,
            method,
            path,
            query,
            headers: h,
            body: Some(body),
            api_key: None,
        }
    }

    fn rule_of(v: &Verdict) -> Option<&str> {
        match v {
            Verdict::Block { rule, .. } => Some(rule),
            _ => None,
        }
    }

    #[test]
    fn imports_every_statement_type_and_evaluates_like_aws() {
        let imp = import_waf_json(FIXTURE).unwrap();
        let names: Vec<&str> = imp.config.rules.iter().map(|r| r.name.as_str()).collect();
        for n in [
            "block-admin-path",
            "bad-agents",
            "big-query",
            "sqli-args",
            "xss-body",
            "blocked-ips",
            "login-rate",
            "tenant-rate",
            "tag-scanners",
            "block-tagged",
            "not-get-or-head",
            "count-json",
        ] {
            assert!(
                names.contains(&n),
                "{n} missing from {names:?}\nnotes: {:#?}",
                imp.notes
            );
        }
        for n in [
            "managed-common",
            "geo-block",
            "captcha-login",
            "rule-group-ref",
            "uses-managed-label",
            "cmd-line",
        ] {
            assert!(!names.contains(&n), "{n} should not convert");
            assert!(
                imp.notes.iter().any(|x| x.contains(n)),
                "{n} not in notes {:#?}",
                imp.notes
            );
        }
        assert!(imp.notes.iter().any(|x| x.contains("imported empty")));
        assert_eq!(imp.config.default_action, DefaultAction::Allow);

        // The TOML parses back to the same config.
        #[derive(serde::Deserialize)]
        struct Root {
            firewall: FirewallConfig,
        }
        let back: Root = toml::from_str(&imp.toml).unwrap_or_else(|e| panic!("{e}\n{}", imp.toml));
        assert_eq!(back.firewall, imp.config);

        let mut cfg = imp.config.clone();
        cfg.ip_sets
            .insert("blocked-ips".into(), vec!["203.0.113.0/24".into()]);
        let fw = Firewall::compile(&cfg).unwrap();
        let now = Instant::now();
        let h = http::HeaderMap::new();
        let ev = |v: RequestView<'_>| fw.evaluate(&v, now);

        assert!(matches!(
            ev(view(&h, "GET", "/index.html", "q=shoes", b"")),
            Verdict::Allow { .. }
        ));
        // ByteMatch STARTS_WITH after LOWERCASE, with the custom 429 body.
        match ev(view(&h, "GET", "/ADMIN/users", "", b"")) {
            Verdict::Block {
                rule,
                status,
                body,
                content_type,
                headers,
                ..
            } => {
                assert_eq!(
                    (&*rule, status, &body[..]),
                    ("block-admin-path", 429, &br#"{"error":"nope"}"#[..])
                );
                assert_eq!(content_type, "application/json");
                assert_eq!(headers[0].0, "x-blocked-by");
            }
            v => panic!("{v:?}"),
        }
        let mut ua = http::HeaderMap::new();
        ua.insert("user-agent", "sqlmap/1.7".parse().unwrap());
        assert_eq!(
            rule_of(&ev(view(&ua, "GET", "/", "", b""))),
            Some("bad-agents")
        );
        assert_eq!(
            rule_of(&ev(view(&h, "GET", "/", &"a".repeat(3000), b""))),
            Some("big-query")
        );
        assert_eq!(
            rule_of(&ev(view(
                &h,
                "GET",
                "/",
                "x=1&id=1%27%20OR%20%271%27%3D%271",
                b""
            ))),
            Some("sqli-args")
        );
        assert!(matches!(
            ev(view(&h, "GET", "/", "id=O%27Brien", b"")),
            Verdict::Allow { .. }
        ));
        assert_eq!(
            rule_of(&ev(view(
                &h,
                "POST",
                "/c",
                "",
                b"<script>alert(1)</script>"
            ))),
            Some("xss-body")
        );
        let mut v = view(&h, "GET", "/", "", b"");
        v.client_ip = "203.0.113.9".parse().unwrap();
        assert_eq!(rule_of(&ev(v)), Some("blocked-ips"));
        // Label flow: scanner tagged by a count rule, blocked by a label rule.
        let mut scan = http::HeaderMap::new();
        scan.insert("x-scanner", "1".parse().unwrap());
        assert_eq!(
            rule_of(&ev(view(&scan, "GET", "/", "", b""))),
            Some("block-tagged")
        );
        // Not(Or(GET, HEAD, POST)) with a 405.
        assert!(matches!(
            ev(view(&h, "OPTIONS", "/x", "", b"")),
            Verdict::Block { status: 405, .. }
        ));
        // Rate-based with scope-down: POST /login limited at 10 per window.
        for _ in 0..10 {
            assert!(matches!(
                ev(view(&h, "POST", "/login", "", b"")),
                Verdict::Allow { .. }
            ));
        }
        assert_eq!(
            rule_of(&ev(view(&h, "POST", "/login", "", b""))),
            Some("login-rate")
        );
    }

    #[test]
    fn bare_acl_default_block_and_base64() {
        let json = r#"{"Name":"x","DefaultAction":{"Block":{}},"Rules":[
          {"Name":"b64","Priority":1,"Action":{"Allow":{}},"VisibilityConfig":{},
           "Statement":{"ByteMatchStatement":{"SearchStringBase64":"L2hlYWx0aA==","FieldToMatch":{"UriPath":{}},
             "TextTransformations":[{"Priority":0,"Type":"NONE"}],"PositionalConstraint":"EXACTLY"}}}]}"#;
        let imp = import_waf_json(json).unwrap();
        assert_eq!(imp.config.default_action, DefaultAction::Block);
        match &imp.config.rules[0].statement {
            StatementConfig::StringMatch(m) => assert_eq!(m.search, "/health"),
            s => panic!("{s:?}"),
        }
        assert!(imp.toml.contains("[firewall]"));
        assert!(matches!(import_waf_json("[]"), Err(ImportError::Shape(_))));
        assert!(matches!(import_waf_json("{"), Err(ImportError::Json(_))));
        assert_eq!(base64_decode("YWJj"), Some(b"abc".to_vec()));
        assert_eq!(base64_decode("YQ"), Some(b"a".to_vec()));
        assert_eq!(base64_decode("*"), None);
        assert_eq!(base64_decode("Y"), None, "a lone symbol is not base64");
        assert_eq!(base64_decode("Y=Wxj"), None, "padding only at the end");
    }

    #[test]
    fn hostile_json_is_bounded() {
        let acl = |n: usize| {
            let deep = format!(
                "{}{}{}",
                r#"{"NotStatement":{"Statement":"#.repeat(n),
                r#"{"LabelMatchStatement":{"Scope":"LABEL","Key":"x"}}"#,
                "}}".repeat(n)
            );
            format!(
                r#"{{"Rules":[{{"Name":"d","Priority":1,"Action":{{"Block":{{}}}},"Statement":{deep}}}],"DefaultAction":{{"Allow":{{}}}}}}"#
            )
        };
        let imp = import_waf_json(&acl(40)).unwrap();
        assert!(imp.config.rules.is_empty());
        assert!(
            imp.notes.iter().any(|n| n.contains("deeper")),
            "{:?}",
            imp.notes
        );
        // Past serde_json's recursion limit (128) the parser refuses it.
        assert!(matches!(
            import_waf_json(&acl(5000)),
            Err(ImportError::Json(_))
        ));
        assert!(matches!(
            import_waf_json(&" ".repeat(MAX_IMPORT_BYTES + 1)),
            Err(ImportError::TooLarge)
        ));
    }
}
