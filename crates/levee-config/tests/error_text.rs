//! The exact text `levee check` prints for broken files: key, line and
//! message, one problem a line, in line order. A change here is a change
//! operators see, so it is reviewed as one.
//!
//! Each case is a whole file and the full expected error, compared as plain
//! strings. `<dir>` stands for this crate's directory, the base that
//! relative paths in the files resolve against.

use std::path::Path;

use levee_config::Config;

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The error text for `text`, with the machine's paths replaced by `<dir>`.
fn error_text(text: &str) -> String {
    let error = match Config::parse(text, "levee.toml", crate_dir()) {
        Ok(config) => panic!("accepted {text:?} as {config:#?}"),
        Err(e) => e.to_string(),
    };
    let real = crate_dir().canonicalize().expect("crate dir");
    error
        .replace(&real.display().to_string(), "<dir>")
        .replace(&crate_dir().display().to_string(), "<dir>")
}

#[track_caller]
fn check(text: &str, expected: &str) {
    let actual = error_text(text);
    assert!(
        actual == expected,
        "error text changed\n--- expected\n{expected}\n--- actual\n{actual}\n---"
    );
}

/// The three lines most cases start with: one valid function.
const HELLO: &str = "[functions.hello]\ncommand = [\"./hello-fn\"]\ncode = \"src\"\n";

/// [`check`] for a file that starts with [`HELLO`] (lines 1-3).
#[track_caller]
fn check_hello(rest: &str, expected: &str) {
    check(&format!("{HELLO}{rest}"), expected);
}

#[test]
fn invalid_toml() {
    check(
        "[server\nlisten = \"127.0.0.1:8080\"\n",
        "levee.toml:1: invalid TOML: invalid table header; expected `.`, `]`",
    );
}

#[test]
fn a_queue_declared_twice() {
    check(
        "[queues.orders]\n\n[queues.orders]\nretention = \"1d\"\n",
        "levee.toml:3: invalid TOML: invalid table header; duplicate key `orders` in table `queues`",
    );
}

#[test]
fn unknown_keys() {
    check(
        r#"[servr]
listen = "127.0.0.1:8080"

[functions.hello]
command = ["./hello-fn"]
code = "src"
memroy_mb = 256

[limits]
max_conections = 10
"#,
        "levee.toml:1: servr: unknown field `servr`, expected one of `server`, `account`, `functions`, `routes`, `authorizers`, `cors`, `limits`, `admin_limits`, `tls`, `admin_tls`, `client_ip`, `throttle`, `firewall`, `plans`, `cache`, `prices`, `budgets`, `metering`, `queues`, `event_sources`, `auto_mitigation`\n\
         levee.toml:7: functions.hello.memroy_mb: unknown field `memroy_mb`, expected one of `runtime`, `command`, `handler`, `code`, `memory_mb`, `timeout`, `reserved_concurrency`, `provisioned`, `queue_timeout`, `queue_depth`, `idle_timeout`, `env`, `max_body`, `ephemeral_storage`, `runtime_paths`, `network`, `forward`\n\
         levee.toml:10: limits.max_conections: unknown field `max_conections`, expected one of `max_connections`, `max_connections_per_ip`, `header_timeout`, `idle_timeout`, `send_timeout`, `body_min_rate`, `body_grace`, `max_header_bytes`, `max_headers`, `h2_max_streams`, `send_buffer`, `handshake_timeout`, `max_handshakes`, `max_handshakes_per_ip`, `handshake_rate_per_ip`",
    );
}

#[test]
fn wrong_types() {
    check(
        r#"[server]
listen = 8080

[functions.hello]
command = "./hello-fn"
code = "src"

[functions.other]
command = ["./hello-fn"]
code = "src"
memory_mb = "lots"

[account]
concurrency = 1.5
"#,
        "levee.toml:2: server.listen: invalid type: integer `8080`, expected socket address\n\
         levee.toml:5: functions.hello.command: invalid type: string \"./hello-fn\", expected a sequence\n\
         levee.toml:11: functions.other.memory_mb: invalid type: string \"lots\", expected u32\n\
         levee.toml:14: account.concurrency: invalid type: floating point `1.5`, expected u32",
    );
}

#[test]
fn missing_required_keys() {
    check(
        "[functions.hello]\ncode = \"src\"\n\n[[routes]]\nfunction = \"hello\"\n",
        "levee.toml:1: functions.hello.command: missing field `command`\n\
         levee.toml:4: routes[0].route: missing field `route`",
    );
}

#[test]
fn bad_durations() {
    check_hello(
        r#"timeout = "3 sec"
idle_timeout = "2d"

[limits]
header_timeout = "1h"

[queues.orders]
visibility_timeout = "1.5s"
retention = "forever"
"#,
        "levee.toml:4: functions.hello.timeout: invalid duration: `3 sec` has no unit after `3`; use ms, s, m, h or d (e.g. \"3s\")\n\
         levee.toml:5: functions.hello.idle_timeout: must be between 1s and 24h, not `2d`\n\
         levee.toml:8: limits.header_timeout: must be between 1s and 300s, not `1h`\n\
         levee.toml:11: queues.orders.visibility_timeout: `1.5s` must be whole seconds\n\
         levee.toml:12: queues.orders.retention: invalid duration: `forever` is not a duration: expected a number at `forever`",
    );
}

#[test]
fn bad_sizes() {
    check_hello(
        r#"max_body = "6 megs"

[[routes]]
route = "POST /upload"
function = "hello"
max_body = "7MiB"

[cache]
max_bytes = "17GiB"
compress_min_bytes = -1
"#,
        "levee.toml:4: functions.hello.max_body: invalid size: `6 megs` has unknown unit `megs`; use B, KB, MB, GB, KiB, MiB or GiB\n\
         levee.toml:9: routes[0].max_body: 7340032 bytes is over the limit of 6MiB (6291456 bytes)\n\
         levee.toml:12: cache.max_bytes: must be between 1MiB and 16GiB, not 18253611008 bytes\n\
         levee.toml:13: cache.compress_min_bytes: invalid size: must not be negative",
    );
}

#[test]
fn out_of_range_numbers() {
    check(
        r#"[account]
concurrency = 0

[functions.hello]
command = ["./hello-fn"]
code = "src"
memory_mb = 64

[queues.orders]
max_messages = 0

[[event_sources]]
queue = "orders"
function = "hello"
batch_size = 0
max_concurrency = 1
"#,
        "levee.toml:2: account.concurrency: must be between 1 and 100000, not 0\n\
         levee.toml:7: functions.hello.memory_mb: must be between 128 and 10240 (MB), not 64\n\
         levee.toml:10: queues.orders.max_messages: must be between 1 and 10000000, not 0\n\
         levee.toml:15: event_sources[0].batch_size: must be between 1 and 10000, not 0\n\
         levee.toml:16: event_sources[0].max_concurrency: must be between 2 and 1000, not 1",
    );
}

#[test]
fn overlapping_routes() {
    check_hello(
        r#"
[[routes]]
route = "GET /items/{id}"
function = "hello"

[[routes]]
route = "ANY /items/{name}"
function = "hello"
"#,
        "levee.toml:10: routes[1].route: overlaps route `GET /items/{id}` (routes[0])",
    );
}

#[test]
fn a_route_to_an_unknown_function() {
    check_hello(
        r#"
[functions.world]
command = ["./hello-fn"]
code = "src"

[[routes]]
route = "GET /hi"
function = "helo"
async = true
"#,
        // `queue` is absent, so its problem sits on the route's header.
        "levee.toml:9: routes[0].queue: an async route names the queue it fills: queue = \"NAME\"\n\
         levee.toml:11: routes[0].function: no function named `helo` (declared: hello, world)",
    );
}

#[test]
fn a_problem_after_a_broken_route_names_its_own_index() {
    check_hello(
        r#"
[[routes]]
route = "FETCH /x"
function = "hello"

[[routes]]
route = "POST /jobs"
function = "hello"
async = true
"#,
        // routes[1], not the first of the valid routes.
        "levee.toml:6: routes[0].route: unknown method `FETCH`; use GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS or ANY\n\
         levee.toml:9: routes[1].queue: an async route names the queue it fills: queue = \"NAME\"",
    );
}

#[test]
fn bad_names() {
    check(
        r#"[functions."hello world"]
command = ["./hello-fn"]
code = "src"

[plans."gold!"]
throttle = { rate = 10, burst = 20 }

[queues."orders.FIFO"]

[budgets."daily cap"]
period = "day"
limit = 5
"#,
        "levee.toml:1: functions.\"hello world\": function names are 1 to 64 characters of A-Z a-z 0-9 _ -\n\
         levee.toml:5: plans.\"gold!\": plan names are 1 to 64 characters of A-Z a-z 0-9 _ -\n\
         levee.toml:8: queues.\"orders.FIFO\": queue names are 1 to 80 characters of A-Z a-z 0-9 _ -, and a FIFO queue's name ends in .fifo\n\
         levee.toml:10: budgets.\"daily cap\": budget names are 1 to 64 characters of A-Z a-z 0-9 _ -",
    );
}

#[test]
fn fifo_queues_keep_their_own_rules() {
    check_hello(
        r#"
[queues."orders.fifo"]
deduplication_scope = "group"
fifo_throughput_limit = "perMessageGroupId"
dead_letter = { queue = "plain" }

[queues.plain]
content_based_deduplication = true

[[event_sources]]
queue = "orders.fifo"
function = "hello"
batch_size = 100
max_batching_window = "1s"

[[routes]]
route = "POST /jobs"
function = "hello"
async = true
queue = "orders.fifo"
"#,
        "levee.toml:6: queues.\"orders.fifo\".deduplication_scope: must be \"queue\" or \"messageGroup\", not `group`\n\
         levee.toml:7: queues.\"orders.fifo\".fifo_throughput_limit: \"perMessageGroupId\" needs deduplication_scope = \"messageGroup\"\n\
         levee.toml:8: queues.\"orders.fifo\".dead_letter.queue: a FIFO queue's dead-letter queue is a FIFO queue, a standard queue's is standard\n\
         levee.toml:11: queues.plain.content_based_deduplication: only for FIFO queues, whose names end in .fifo\n\
         levee.toml:16: event_sources[0].batch_size: a FIFO queue's batches are at most 10, not 100\n\
         levee.toml:23: routes[0].queue: `orders.fifo` is a FIFO queue, and a FIFO message needs a MessageGroupId an HTTP request doesn't carry; an async route fills a standard queue",
    );
}

#[test]
fn a_budget_scoped_to_a_missing_function() {
    check_hello(
        r#"
[budgets.daily]
scope = { function = "helo" }
period = "day"
limit = 5
alerts = [0.5, 80]
"#,
        "levee.toml:6: budgets.daily.scope.function: no function named \"helo\"\n\
         levee.toml:9: budgets.daily.alerts[1]: must be a fraction of the limit above 0 and at most 10 (0.8 = 80 %), not 80",
    );
}

#[test]
fn plans_and_queues_that_point_nowhere() {
    check_hello(
        r#"
[[routes]]
route = "GET /a"
function = "hello"

[plans.basic]
quota = { limit = 0, period = "DAY" }

[plans.basic.routes."GET /b"]
throttle = { rate = 1, burst = 1 }

[queues.orders]
dead_letter = { queue = "orders-dlq" }

[[event_sources]]
queue = "jobs"
function = "hello"
"#,
        "levee.toml:10: plans.basic.quota.limit: must be at least 1\n\
         levee.toml:12: plans.basic.routes.\"GET /b\": no route `GET /b` (route keys look like \"GET /hello/{name}\")\n\
         levee.toml:16: queues.orders.dead_letter.queue: no queue `orders-dlq`; declare it as [queues.orders-dlq]\n\
         levee.toml:19: event_sources[0].queue: no queue `jobs`; declare it as [queues.jobs]",
    );
}

#[test]
fn a_code_directory_holding_the_data_dir() {
    check(
        r#"[server]
data_dir = "state/levee"

[functions.site]
command = ["/bin/true"]
code = "."
"#,
        "levee.toml:6: functions.site.code: `<dir>` holds server.data_dir (`<dir>/state/levee`), and each start copies `code` into the data dir; use a directory of its own, or move data_dir out of it",
    );
}

#[test]
fn isolation_keys() {
    check_hello(
        r#"ephemeral_storage = "100MB"
forward = ["10.0.0.5:5432", "127.0.0.1:9001", "localhost"]
runtime_paths = ["opt/layer", "/"]

[server]
isolation = "chroot"
"#,
        "levee.toml:4: functions.hello.ephemeral_storage: must be between 512MiB and 10GiB, not 100000000 bytes\n\
         levee.toml:5: functions.hello.forward[0]: `10.0.0.5:5432` must be a loopback IPv4 address with a port, like \"127.0.0.1:5432\"\n\
         levee.toml:5: functions.hello.forward[1]: `127.0.0.1:9001` is where the instance finds its own Runtime API\n\
         levee.toml:5: functions.hello.forward[2]: `localhost` is not an address: invalid socket address syntax\n\
         levee.toml:6: functions.hello.runtime_paths[0]: `opt/layer` must be an absolute path\n\
         levee.toml:6: functions.hello.runtime_paths[1]: `/` would show the whole machine; name what the runtime needs\n\
         levee.toml:9: server.isolation: unknown variant `chroot`, expected `namespaces` or `none`",
    );
}

#[test]
fn an_unknown_network() {
    check_hello(
        "network = \"internet\"\n",
        "levee.toml:4: functions.hello.network: unknown variant `internet`, expected `none` or `egress`",
    );
}

#[test]
fn instance_uids_must_be_a_range_of_ordinary_ids() {
    check(
        "[server]\ninstance_uids = [0, 10]\n",
        "levee.toml:2: server.instance_uids: [0, 10] must lie within 1000..=4294967294 and hold at least 16 ids, first before last",
    );
}

#[test]
fn tls_sections() {
    check_hello(
        r#"
[server]
listen = "127.0.0.1:8443"

[tls]
listen = "127.0.0.1:8443"
certificates = [{ cert = "no-such.pem", key = "Cargo.toml" }]
client_auth = "optional"

[admin_tls]
listen = "127.0.0.1:9443"
certificates = []
"#,
        "levee.toml:9: tls.listen: 127.0.0.1:8443 clashes with server.listen (127.0.0.1:8443); HTTPS needs its own port\n\
         levee.toml:10: tls.certificates[0].cert: `<dir>/no-such.pem` is not a file\n\
         levee.toml:11: tls.client_auth: only means something with client_ca (the CAs client certificates must chain to)\n\
         levee.toml:14: admin_tls.listen: the admin listener speaks TLS on server.admin_listen; `listen` belongs in [tls]\n\
         levee.toml:15: admin_tls.certificates: needs at least one certificate, e.g. certificates = [{ cert = \"site.pem\", key = \"site.key\" }]",
    );
}

#[test]
fn authorizers_and_the_routes_that_name_them() {
    check_hello(
        r#"
[authorizers.users]
type = "jwt"
issuer = ""
jwks = "keys.json"
jwks_url = "https://login.test/keys"
identity_source = "$request.cookie.token"

[authorizers.sso]
type = "saml"

[[routes]]
route = "GET /a"
function = "hello"
authorizer = "nobody"

[[routes]]
route = "GET /b"
function = "hello"
authorization_scopes = ["read"]
"#,
        "levee.toml:5: authorizers.users.audience: needs 1 to 50 accepted audiences, e.g. audience = [\"my-api\"]\n\
         levee.toml:7: authorizers.users.issuer: a JWT authorizer needs the `iss` it accepts, e.g. issuer = \"https://login.example.com/\"\n\
         levee.toml:8: authorizers.users.jwks: set exactly one of `jwks` (a JWKS file) and `jwks_url`\n\
         levee.toml:10: authorizers.users.identity_source: must be `$request.header.NAME` or `$request.querystring.NAME`\n\
         levee.toml:13: authorizers.sso.type: `saml` is not an authorizer type; expected `jwt` or `lambda`\n\
         levee.toml:18: routes[0].authorizer: no authorizer `nobody` in [authorizers]\n\
         levee.toml:23: routes[1].authorization_scopes: scopes are checked by an authorizer; name one with `authorizer`",
    );
}

#[test]
fn cors_tables() {
    check_hello(
        r#"
[cors]
allow_origins = ["*", "app.test"]
allow_methods = ["GET", "BAD METHOD"]
allow_credentials = true
max_age = "2d"

[[routes]]
route = "GET /a"
function = "hello"
cors = { allow_origins = [] }
"#,
        "levee.toml:6: cors.allow_origins[1]: `app.test` is not `*` or an origin such as https://app.example.com:8443 (no path)\n\
         levee.toml:7: cors.allow_methods[1]: `BAD METHOD` is not `*` or an HTTP token\n\
         levee.toml:8: cors.allow_credentials: browsers refuse credentials with `*` origins; list the origins\n\
         levee.toml:9: cors.max_age: must be a duration up to 24h, e.g. \"1h\"\n\
         levee.toml:14: routes[0].cors.allow_origins: needs at least one origin, e.g. allow_origins = [\"https://app.example.com\"] (or [\"*\"])",
    );
}

#[test]
fn lambda_authorizers() {
    check_hello(
        r#"
[authorizers.gate]
type = "lambda"
function = "nope"
issuer = "https://login.test/"
ttl = "2h"
identity_source = []

[authorizers.ok]
type = "lambda"
function = "hello"

[[routes]]
route = "GET /a"
function = "hello"
authorizer = "ok"
authorization_scopes = ["read"]
"#,
        "levee.toml:7: authorizers.gate.function: no function named `nope` in [functions]\n\
         levee.toml:8: authorizers.gate.issuer: only for `type = \"jwt\"`\n\
         levee.toml:9: authorizers.gate.ttl: must be between 0ns and 3600s, not `2h`\n\
         levee.toml:10: authorizers.gate.identity_source: needs 1 to 8 sources\n\
         levee.toml:20: routes[0].authorization_scopes: scopes are read from a JWT; a Lambda authorizer decides alone",
    );
}
