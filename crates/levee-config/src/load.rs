//! Turning text into a [`Config`]: the orchestrator.
//!
//! The document is parsed once with `toml_edit`, which keeps byte spans for
//! every key and value. Each section, function and route is then
//! deserialized on its own, so one typo does not hide the problems in the
//! rest of the file, and handed to its section's validator with a
//! [`Found`]; `locate` then places every problem on a line.
//!
//! Owns the order sections are read in (a section that refers to another
//! reads it validated: routes after functions, event sources after queues)
//! and the shapes of the file itself (unknown sections, a table where a
//! table must be). Must never hold a section's rules: those live in the
//! section's module, so each can be read and tested on its own.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use levee_common::name::FunctionName;
use serde::de::{DeserializeOwned, IntoDeserializer as _};
use toml_edit::{ImDocument, Item, Value};

use crate::error::{ConfigError, Problem};
use crate::guard::{self, Throttle};
use crate::locate::{Lines, Locator, Node};
use crate::model::{Config, Function};
use crate::problems::{Found, KeyPath};
use crate::route::Route;
use crate::{
    authorizers, auto, budgets, cache, firewall, functions, plans, queues, routes, server, tls,
};
use levee_shield::firewall::FirewallConfig;

const SECTIONS: [&str; 21] = [
    "server",
    "account",
    "functions",
    "routes",
    "authorizers",
    "cors",
    "limits",
    "admin_limits",
    "tls",
    "admin_tls",
    "client_ip",
    "throttle",
    "firewall",
    "plans",
    "cache",
    "prices",
    "budgets",
    "metering",
    "queues",
    "event_sources",
    "auto_mitigation",
];

pub(crate) fn parse(text: &str, origin: &str, base_dir: &Path) -> Result<Config, ConfigError> {
    let lines = Lines::new(text);
    let doc = ImDocument::parse(text).map_err(|e| {
        let problem = Problem {
            line: e.span().map(|span| lines.at(span.start)),
            key: String::new(),
            message: levee_common::text::bound_message(&format!(
                "invalid TOML: {}",
                one_line(e.message())
            )),
        };
        ConfigError::new(origin, vec![problem])
    })?;
    let mut loader = Loader {
        locator: Locator::new(&doc, lines),
        base_dir,
        found: Found::default(),
        warnings: Found::default(),
    };
    let mut config = loader.config();
    let Loader {
        locator,
        found,
        warnings,
        ..
    } = loader;
    if found.is_empty() {
        config.warnings = locator.problems(warnings);
        return Ok(config);
    }
    let mut problems = locator.problems(found);
    problems.sort_by_key(|problem| problem.line.unwrap_or(0));
    Err(ConfigError::new(origin, problems))
}

/// toml_edit messages span several lines; a problem is printed on one.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// One `[SECTION.NAME]` table, deserialized.
struct Named<R> {
    name: String,
    path: KeyPath,
    raw: R,
}

struct Loader<'a> {
    locator: Locator<'a>,
    base_dir: &'a Path,
    /// Every problem, with paths from the document's root.
    found: Found,
    /// Allowed but probably a mistake; reported only if nothing is wrong.
    warnings: Found,
}

impl<'a> Loader<'a> {
    /// Builds the whole config; values that failed validation hold defaults,
    /// which is harmless because any problem discards the result.
    fn config(&mut self) -> Config {
        self.sections();
        let server = self.server();
        let account = self.within("account", |l, f| {
            let raw = l.section("account");
            server::account(raw, f)
        });
        let limit = server::concurrency_limit(&account);
        let (functions, declared) = self.functions(limit);
        self.within("functions", |_, f| {
            functions::code_outside_data_dir(&functions, &server.data_dir, f)
        });
        if let Some(limit) = limit {
            self.within("account", |_, f| {
                functions::total_reserved(&functions, limit, f)
            });
        }
        let (authorizers, authorizer_names) = self.authorizers(&declared);
        let cors = self.cors(&KeyPath::of("cors"));
        let routes = self.routes(&declared, &authorizer_names);
        self.within("routes", |_, f| {
            authorizers::scopes_need_jwt(&routes, &authorizers, f)
        });
        let limits = self.guarded("limits", guard::limits);
        let admin_limits = self.guarded("admin_limits", guard::admin_limits);
        self.within("admin_limits", |_, f| {
            guard::total_connections(&limits, &admin_limits, f)
        });
        let tls = self.present("tls").then(|| {
            let raw = self.section("tls");
            self.within("tls", |l, f| tls::tls(raw, l.base_dir, f))
        });
        if let Some(tls) = &tls {
            self.within("tls", |_, f| tls_listen_free(tls.listen, &server, f));
        }
        let admin_tls = self.present("admin_tls").then(|| {
            let raw = self.section("admin_tls");
            self.within("admin_tls", |l, f| tls::admin_tls(raw, l.base_dir, f))
        });
        let client_ip = self.guarded("client_ip", guard::client_ip);
        let throttle = self.throttle(&KeyPath::of("throttle"));
        let firewall = self.firewall();
        let route_keys: Vec<String> = routes
            .iter()
            .map(|(_, r)| r.route_key.to_string())
            .collect();
        let plans = self.plans(&route_keys);
        let cache = self.guarded("cache", cache::cache_settings);
        let prices = self.guarded("prices", budgets::prices);
        let function_names: Vec<String> = functions.keys().cloned().collect();
        let budgets = self.budgets(&function_names);
        let metering = self
            .section::<budgets::RawMetering>("metering")
            .enabled
            .unwrap_or(true);
        let raw_auto = self.section("auto_mitigation");
        let auto_mitigation = self.within("auto_mitigation", |_, f| {
            auto::auto_mitigation(raw_auto, &route_keys, f)
        });
        let queues = self.queues();
        let timeouts: BTreeMap<String, Duration> = functions
            .iter()
            .map(|(n, f)| (n.clone(), f.timeout))
            .collect();
        let event_sources = self.event_sources(&queues, &timeouts);
        self.within("routes", |_, f| routes::async_routes(&routes, &queues, f));
        Config {
            server,
            account,
            functions,
            routes: routes.into_iter().map(|(_, route)| route).collect(),
            authorizers,
            cors,
            limits,
            admin_limits,
            tls,
            admin_tls,
            client_ip,
            throttle,
            firewall,
            plans,
            cache,
            prices,
            budgets,
            metering,
            queues,
            event_sources,
            auto_mitigation,
            warnings: Vec::new(),
        }
    }

    /// Top-level keys must be sections this schema has.
    fn sections(&mut self) {
        let doc = self.locator.node_at(&KeyPath::default());
        let Some(table) = doc.and_then(Node::table_like) else {
            return;
        };
        for (name, _) in table.iter() {
            if !SECTIONS.contains(&name) {
                self.found.push(
                    name,
                    format!(
                        "unknown field `{name}`, expected one of {}",
                        SECTIONS.map(|s| format!("`{s}`")).join(", ")
                    ),
                );
            }
        }
    }

    /// Runs `check` with a fresh collector and files its problems under
    /// `base`.
    fn within<T>(
        &mut self,
        base: impl Into<KeyPath>,
        check: impl FnOnce(&mut Self, &mut Found) -> T,
    ) -> T {
        let mut found = Found::default();
        let value = check(self, &mut found);
        self.found.nest(&base.into(), found);
        value
    }

    /// Deserializes `node` as `T`; a failure is a problem at the deepest key
    /// the deserializer's span falls in.
    fn deserialize<T: DeserializeOwned>(&mut self, node: Node<'_>, path: &KeyPath) -> Option<T> {
        let Ok(value) = node.to_item().into_value() else {
            self.found.push(path.clone(), "expected a value");
            return None;
        };
        let error = match T::deserialize(value.into_deserializer()) {
            Ok(parsed) => return Some(parsed),
            Err(error) => error,
        };
        let mut at = path.clone();
        if let Some(span) = error.span() {
            node.locate(span.start, &mut at);
        }
        let message = one_line(error.message());
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            at = at.key(field);
        }
        match error.span() {
            Some(span) => self.found.push_at_offset(at, span.start, message),
            None => self.found.push(at, message),
        }
        None
    }

    /// An optional top-level table, or its defaults.
    fn section<T: DeserializeOwned + Default>(&mut self, name: &str) -> T {
        let path = KeyPath::of(name);
        let Some(node) = self.locator.node_at(&path) else {
            return T::default();
        };
        if node.table_like().is_none() {
            self.found
                .push(path, format!("expected a table, e.g. [{name}]"));
            return T::default();
        }
        self.deserialize(node, &path).unwrap_or_default()
    }

    /// An optional section validated by `check`, whose problems name keys
    /// inside the section.
    fn guarded<R: DeserializeOwned + Default, T>(
        &mut self,
        name: &str,
        check: fn(R, &mut Found) -> T,
    ) -> T {
        let raw: R = self.section(name);
        self.within(name, |_, f| check(raw, f))
    }

    /// The `[section.NAME]` tables that deserialize as `R`, and the names of
    /// all of them (so a reference to a broken one is not reported as a
    /// reference to a missing one). `too_many` bounds their number.
    fn named<R: DeserializeOwned>(
        &mut self,
        section: &str,
        expected: &str,
        too_many: fn(usize) -> Option<String>,
    ) -> (Vec<String>, Vec<Named<R>>) {
        let path = KeyPath::of(section);
        let Some(node) = self.locator.node_at(&path) else {
            return (Vec::new(), Vec::new());
        };
        let Some(table) = node.table_like() else {
            self.found.push(path, format!("expected {expected}"));
            return (Vec::new(), Vec::new());
        };
        if let Some(message) = too_many(table.len()) {
            self.found.push(path, message);
            return (Vec::new(), Vec::new());
        }
        let names: Vec<String> = table.iter().map(|(k, _)| k.to_string()).collect();
        let mut entries = Vec::new();
        for name in &names {
            let at = path.key(name);
            let Some(entry) = self.locator.node_at(&at) else {
                continue;
            };
            if let Some(raw) = self.deserialize::<R>(entry, &at) {
                entries.push(Named {
                    name: name.clone(),
                    path: at,
                    raw,
                });
            }
        }
        (names, entries)
    }

    /// Whether the file has this top-level section.
    fn present(&self, name: &str) -> bool {
        self.locator.node_at(&KeyPath::of(name)).is_some()
    }

    fn server(&mut self) -> crate::model::Server {
        let raw = self.section("server");
        let (server, warnings) = self.within("server", |l, f| {
            Found::collect(|warnings| server::server(raw, l.base_dir, f, warnings))
        });
        self.warnings.nest(&KeyPath::of("server"), warnings);
        server
    }

    /// The valid functions, and the names of all declared ones so a route to
    /// a broken function is not reported as a route to a missing one.
    fn functions(&mut self, limit: Option<u32>) -> (BTreeMap<String, Function>, Vec<String>) {
        let mut functions = BTreeMap::new();
        let mut declared = Vec::new();
        let path = KeyPath::of("functions");
        let Some(node) = self.locator.node_at(&path) else {
            return (functions, declared);
        };
        let Some(table) = node.table_like() else {
            self.found.push(
                path,
                "expected a table of functions, e.g. [functions.hello]",
            );
            return (functions, declared);
        };
        for (name, item) in table.iter() {
            declared.push(name.to_owned());
            let at = path.key(name);
            let valid_name = self.within(&at, |_, f| f.named(FunctionName::parse(name)));
            let node = Node::Item(item);
            if node.table_like().is_none() {
                self.found
                    .push(at, "expected a table, e.g. [functions.hello]");
                continue;
            }
            let Some(raw) = self.deserialize(node, &at) else {
                continue;
            };
            let function = self.within(&at, |l, f| {
                functions::function(valid_name, raw, l.base_dir, limit, f)
            });
            if let Some(function) = function {
                functions.insert(name.to_owned(), function);
            }
        }
        (functions, declared)
    }

    /// The valid routes, each with its index in the file (for later
    /// problems to name the right `routes[i]`).
    /// `[authorizers.NAME]`, and the names of all of them (so a route
    /// naming a broken one is not told it is missing).
    fn authorizers(
        &mut self,
        functions: &[String],
    ) -> (BTreeMap<String, authorizers::Authorizer>, Vec<String>) {
        let expected = "a table of authorizers, e.g. [authorizers.users]";
        let (names, entries) = self.named("authorizers", expected, authorizers::too_many);
        let mut out = BTreeMap::new();
        for Named { name, path, raw } in entries {
            let base_dir = self.base_dir;
            if let Some(built) = self.within(&path, |_, f| {
                authorizers::authorizer(raw, base_dir, functions, f)
            }) {
                out.insert(name, built);
            }
        }
        (out, names)
    }

    fn routes(&mut self, declared: &[String], authorizers: &[String]) -> Vec<(usize, Route)> {
        let path = KeyPath::of("routes");
        let Some(list) = self.locator.node_at(&path) else {
            return Vec::new();
        };
        if !matches!(
            list,
            Node::Item(Item::ArrayOfTables(_) | Item::Value(Value::Array(_)))
        ) {
            self.found
                .push(path, "expected an array of tables, e.g. [[routes]]");
            return Vec::new();
        }
        let mut valid = Vec::new();
        for (index, node) in (0..).map_while(|i| list.element(i)).enumerate() {
            if let Some(route) = self.route(node, &path.index(index), declared, authorizers) {
                valid.push((index, route));
            }
        }
        self.within(&path, |_, f| routes::overlaps(&valid, f));
        valid
    }

    fn route(
        &mut self,
        node: Node<'_>,
        path: &KeyPath,
        declared: &[String],
        authorizers: &[String],
    ) -> Option<Route> {
        if node.table_like().is_none() {
            self.found
                .push(path.clone(), "expected a table with `route` and `function`");
            return None;
        }
        let mut raw: routes::RawRoute = self.deserialize(node, path)?;
        let max_body = self.within(path, |_, f| {
            routes::target(&mut raw, declared, authorizers, f)
        });
        let throttle = self.throttle(&path.key("throttle"));
        let cache = self.route_cache(&path.key("cache"));
        let cors = self.cors(&path.key("cors"));
        self.within(path, |_, f| {
            routes::route(raw, max_body, throttle, cache, cors, f)
        })
    }

    /// `[throttle]` at the top level, or `throttle = {…}` in a route.
    fn throttle(&mut self, path: &KeyPath) -> Option<Throttle> {
        let node = self.locator.node_at(path)?;
        let raw: guard::RawThrottle = self.deserialize(node, path)?;
        self.within(path, |_, f| guard::throttle(raw, f))
    }

    /// `[cors]`, or a route's `cors = {…}`.
    fn cors(&mut self, path: &KeyPath) -> Option<crate::cors::Cors> {
        let node = self.locator.node_at(path)?;
        let raw: crate::cors::RawCors = self.deserialize(node, path)?;
        Some(self.within(path, |_, f| crate::cors::cors(raw, f)))
    }

    /// A route's `cache = {…}`: `None` when absent or `enabled = false`.
    fn route_cache(&mut self, path: &KeyPath) -> Option<cache::CachePolicy> {
        let node = self.locator.node_at(path)?;
        let raw: cache::RawCachePolicy = self.deserialize(node, path)?;
        self.within(path, |_, f| cache::cache_policy(raw, f))
    }

    /// `[firewall]`, checked by compiling it.
    fn firewall(&mut self) -> Option<FirewallConfig> {
        let path = KeyPath::of("firewall");
        let node = self.locator.node_at(&path)?;
        let config: FirewallConfig = self.deserialize(node, &path)?;
        self.within(&path, |_, f| firewall::firewall(&config, f));
        Some(config)
    }

    /// `[plans.NAME]`: usage plans.
    fn plans(&mut self, route_keys: &[String]) -> BTreeMap<String, plans::Plan> {
        let expected = "a table of plans, e.g. [plans.basic]";
        self.entries("plans", expected, plans::too_many, |name, raw, _, f| {
            plans::plan(name, raw, route_keys, f)
        })
    }

    /// `[budgets.NAME]`: spend budgets.
    fn budgets(&mut self, function_names: &[String]) -> BTreeMap<String, budgets::Budget> {
        let expected = "a table of budgets, e.g. [budgets.daily]";
        self.entries("budgets", expected, budgets::too_many, |name, raw, _, f| {
            budgets::budget(name, raw, function_names, f)
        })
    }

    /// `[queues.NAME]`: durable queues (a dead-letter rule may name any of
    /// the file's queues).
    fn queues(&mut self) -> BTreeMap<String, queues::QueueConfig> {
        let expected = "a table of queues, e.g. [queues.orders]";
        self.entries("queues", expected, queues::too_many_queues, queues::queue)
    }

    /// Every `[section.NAME]` entry that `check` builds (it gets the entry's
    /// name, its raw table and every name the section declares), at its
    /// table's key path.
    fn entries<R: DeserializeOwned, T>(
        &mut self,
        section: &str,
        expected: &str,
        too_many: fn(usize) -> Option<String>,
        mut check: impl FnMut(&str, R, &[String], &mut Found) -> Option<T>,
    ) -> BTreeMap<String, T> {
        let (names, entries) = self.named::<R>(section, expected, too_many);
        let mut out = BTreeMap::new();
        for Named { name, path, raw } in entries {
            if let Some(built) = self.within(&path, |_, f| check(&name, raw, &names, f)) {
                out.insert(name, built);
            }
        }
        out
    }

    /// `[[event_sources]]`: queue → function mappings.
    fn event_sources(
        &mut self,
        queues: &BTreeMap<String, queues::QueueConfig>,
        timeouts: &BTreeMap<String, Duration>,
    ) -> Vec<queues::EventSourceConfig> {
        let mut out = Vec::new();
        let path = KeyPath::of("event_sources");
        let Some(list) = self.locator.node_at(&path) else {
            return out;
        };
        let count = (0..).map_while(|i| list.element(i)).count();
        if let Some(message) = queues::too_many_event_sources(count) {
            self.found.push(path, message);
            return out;
        }
        for i in 0..count {
            let at = path.index(i);
            let Some(node) = list.element(i) else {
                continue;
            };
            let Some(raw) = self.deserialize::<queues::RawEventSource>(node, &at) else {
                continue;
            };
            let source = self.within(&at, |_, f| queues::event_source(raw, queues, timeouts, f));
            out.extend(source);
        }
        out
    }
}

/// `tls.listen` must be a port of its own.
fn tls_listen_free(listen: std::net::SocketAddr, server: &crate::model::Server, f: &mut Found) {
    for (key, other) in [
        ("server.listen", server.listen),
        ("server.admin_listen", server.admin_listen),
    ] {
        if server::collide(listen, other) {
            f.push(
                "listen",
                format!("{listen} clashes with {key} ({other}); HTTPS needs its own port"),
            );
        }
    }
}
