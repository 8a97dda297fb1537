//! Whole-file behaviour: defaults, path resolution, and that every rule
//! reports the right key on the right line.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::{Config, ConfigError, Problem, RouteMethod, RuntimeKind};

const EXAMPLE: &str = r#"[server]
listen = "127.0.0.1:8080"
admin_listen = "127.0.0.1:8081"
data_dir = ".levee"

[account]
concurrency = 100

[functions.hello]
runtime = "process"
command = ["./target/release/hello-fn"]   # or ["python3", "-m", "awslambdaric", "app.handler"]
code = "examples/hello"
memory_mb = 128
timeout = "3s"
reserved_concurrency = 10
provisioned = 0          # instances kept warm
idle_timeout = "5m"
env = { GREETING = "hi" }

[[routes]]
route = "GET /hello/{name}"
function = "hello"
"#;

/// A valid function on lines 1-3; `src` exists under the crate directory.
const HELLO: &str = "[functions.hello]\ncommand = [\"./hello-fn\"]\ncode = \"src\"\n";

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "levee-config-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "levee.toml", crate_dir())
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(text) {
        Ok(config) => panic!("accepted {text:?} as {config:#?}"),
        Err(e) => e.problems().to_vec(),
    }
}

/// Asserts that `text` is refused with a problem at `key` on `line` whose
/// message contains `fragment`.
#[track_caller]
fn assert_problem(text: &str, key: &str, line: Option<usize>, fragment: &str) {
    let problems = problems(text);
    assert!(
        problems
            .iter()
            .any(|p| p.key == key && p.line == line && p.message.contains(fragment)),
        "no problem at {key} line {line:?} containing {fragment:?} in {problems:#?}"
    );
}

#[test]
fn example_loads_with_absolute_paths() {
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.0.join("examples/hello")).unwrap();
    let file = dir.0.join("levee.toml");
    std::fs::write(&file, EXAMPLE).unwrap();

    let config = Config::load(&file).unwrap();

    assert_eq!(config.server.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(
        config.server.admin_listen,
        "127.0.0.1:8081".parse().unwrap()
    );
    assert_eq!(config.server.data_dir, dir.0.join(".levee"));
    assert!(config.server.data_dir.is_absolute());
    assert_eq!(config.account.concurrency, 100);

    let hello = &config.functions["hello"];
    assert_eq!(hello.name, "hello");
    assert_eq!(hello.runtime, RuntimeKind::Process);
    assert_eq!(
        hello.command,
        [dir.0.join("target/release/hello-fn").to_str().unwrap()]
    );
    assert_eq!(hello.handler, "./target/release/hello-fn");
    assert_eq!(hello.code, dir.0.join("examples/hello"));
    assert_eq!(hello.memory_mb, 128);
    assert_eq!(hello.timeout, Duration::from_secs(3));
    assert_eq!(hello.reserved_concurrency, Some(10));
    assert_eq!(hello.provisioned, 0);
    assert_eq!(hello.idle_timeout, Duration::from_secs(300));
    assert_eq!(hello.env.get("GREETING").map(String::as_str), Some("hi"));
    assert_eq!(hello.env.len(), 1);
    assert_eq!(hello.max_body_bytes, 6 * 1024 * 1024);

    assert_eq!(config.routes.len(), 1);
    let route = &config.routes[0];
    assert_eq!(route.route_key, "GET /hello/{name}");
    assert_eq!(route.method, RouteMethod::Get);
    assert_eq!(route.path, "/hello/{name}");
    assert_eq!(route.matchit_path, "/hello/{name}");
    assert_eq!(route.function, "hello");
    assert_eq!(route.max_body_bytes, None);
}

#[test]
fn example_in_a_directory_without_code_is_refused() {
    let dir = TempDir::new();
    let file = dir.0.join("levee.toml");
    std::fs::write(&file, EXAMPLE).unwrap();
    let err = Config::load(&file).unwrap_err();
    assert_eq!(err.problems().len(), 1, "{err}");
    let problem = &err.problems()[0];
    assert_eq!(problem.key, "functions.hello.code");
    assert_eq!(problem.line, Some(12));
    assert!(problem.message.contains("does not exist"), "{err}");
    assert!(err
        .to_string()
        .starts_with(&format!("{}:12: functions.hello.code: ", file.display())));
}

#[test]
fn minimal_file_gets_every_default() {
    let config = parse(HELLO).unwrap();
    assert_eq!(config.server.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(
        config.server.admin_listen,
        "127.0.0.1:8081".parse().unwrap()
    );
    assert_eq!(config.server.data_dir, crate_dir().join(".levee"));
    assert_eq!(config.account.concurrency, 100);
    let hello = &config.functions["hello"];
    assert_eq!(hello.runtime, RuntimeKind::Process);
    assert_eq!(
        hello.command,
        [crate_dir().join("hello-fn").to_str().unwrap()]
    );
    assert_eq!(hello.handler, "./hello-fn");
    assert_eq!(hello.code, crate_dir().join("src"));
    assert_eq!(hello.memory_mb, 128);
    assert_eq!(hello.timeout, Duration::from_secs(3));
    assert_eq!(hello.reserved_concurrency, None);
    assert_eq!(hello.provisioned, 0);
    assert_eq!(hello.idle_timeout, Duration::from_secs(300));
    assert!(hello.env.is_empty());
    assert_eq!(hello.max_body_bytes, 6 * 1024 * 1024);
    assert!(config.routes.is_empty());
}

#[test]
fn empty_file_is_a_valid_config_with_nothing_to_run() {
    let config = parse("").unwrap();
    assert!(config.functions.is_empty());
    assert!(config.routes.is_empty());
}

#[test]
fn commands_on_path_stay_bare_and_handler_defaults_to_last_word() {
    let text = "[functions.py]\ncommand = [\"python3\", \"-m\", \"awslambdaric\", \"app.handler\"]\ncode = \"src\"\n\
                [functions.explicit]\ncommand = [\"bin/run\", \"x\"]\nhandler = \"main.go\"\ncode = \"src\"\n";
    let config = parse(text).unwrap();
    let py = &config.functions["py"];
    assert_eq!(py.command, ["python3", "-m", "awslambdaric", "app.handler"]);
    assert_eq!(py.handler, "app.handler");
    let explicit = &config.functions["explicit"];
    assert_eq!(
        explicit.command[0],
        crate_dir().join("bin/run").to_str().unwrap()
    );
    assert_eq!(explicit.handler, "main.go");
    assert_eq!(explicit.code, crate_dir().join("src"));
}

#[test]
fn all_optional_keys_are_read() {
    let text = format!(
        "{HELLO}memory_mb = 10240\ntimeout = \"1m30s\"\nreserved_concurrency = 0\nidle_timeout = \"24h\"\nmax_body = \"256KiB\"\n\
         [account]\nconcurrency = 100000\n\
         [server]\nlisten = \"0.0.0.0:0\"\nadmin_listen = \"[::1]:0\"\ndata_dir = \"/var/lib/levee\"\n\
         [[routes]]\nroute = \"any /files/{{proxy+}}\"\nfunction = \"hello\"\nmax_body = 1024\n"
    );
    let config = parse(&text).unwrap();
    let hello = &config.functions["hello"];
    assert_eq!(hello.memory_mb, 10240);
    assert_eq!(hello.timeout, Duration::from_secs(90));
    assert_eq!(hello.reserved_concurrency, Some(0));
    assert_eq!(hello.idle_timeout, Duration::from_secs(86400));
    assert_eq!(hello.max_body_bytes, 256 * 1024);
    assert_eq!(config.account.concurrency, 100_000);
    assert_eq!(config.server.listen.port(), 0);
    assert_eq!(config.server.data_dir, Path::new("/var/lib/levee"));
    let route = &config.routes[0];
    assert_eq!(route.route_key, "ANY /files/{proxy+}");
    assert_eq!(route.method, RouteMethod::Any);
    assert_eq!(route.matchit_path, "/files/{*proxy}");
    assert_eq!(route.max_body_bytes, Some(1024));
}

#[test]
fn inline_tables_work_like_headers() {
    let text = "functions = { hello = { command = [\"x\"], code = \"src\" } }\n\
                routes = [ { route = \"POST /a\", function = \"hello\" } ]\n";
    let config = parse(text).unwrap();
    assert_eq!(config.functions["hello"].command, ["x"]);
    assert_eq!(config.routes[0].route_key, "POST /a");

    let text = "functions = { hello = { command = [\"x\"], code = \"src\", tmeout = \"1s\" } }\n\
                routes = [\n  { route = \"POST /a\", function = \"hello\" },\n  { route = \"POST /a\", function = \"nope\" },\n]\n";
    let problems = problems(text);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert_eq!(problems[0].key, "functions.hello.tmeout");
    assert_eq!(problems[0].line, Some(1));
    assert_eq!(problems[1].key, "routes[1].function");
    assert_eq!(problems[1].line, Some(4));
    assert_eq!(problems[2].key, "routes[1].route");
    assert_eq!(problems[2].line, Some(4));
}

#[test]
fn syntax_errors_name_the_line() {
    let problems = problems("[server]\nlisten = \"127.0.0.1:8080\"\nadmin_listen = \n");
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].line, Some(3));
    assert_eq!(problems[0].key, "");
    assert!(problems[0].message.starts_with("invalid TOML: "));
    assert!(!problems[0].message.contains('\n'));

    assert_problem("a = 1\na = 2\n", "", Some(2), "duplicate key");
}

#[test]
fn unknown_keys_are_typos() {
    assert_problem(
        "[servr]\nlisten = \"127.0.0.1:1\"\n",
        "servr",
        Some(1),
        "unknown field `servr`",
    );
    assert_problem(
        &format!("{HELLO}tmeout = \"3s\"\n"),
        "functions.hello.tmeout",
        Some(4),
        "unknown field `tmeout`",
    );
    assert_problem(
        "[server]\nlisten = \"127.0.0.1:1\"\nport = 3\n",
        "server.port",
        Some(3),
        "unknown field `port`",
    );
    assert_problem(
        "[account]\n\nconcurency = 3\n",
        "account.concurency",
        Some(3),
        "unknown field",
    );
    assert_problem(
        &format!("{HELLO}[[routes]]\nroute = \"GET /\"\nfunction = \"hello\"\nmethod = \"GET\"\n"),
        "routes[0].method",
        Some(7),
        "unknown field `method`",
    );
}

#[test]
fn wrong_types_name_the_key() {
    assert_problem(
        &format!("{HELLO}memory_mb = \"big\"\n"),
        "functions.hello.memory_mb",
        Some(4),
        "invalid type",
    );
    assert_problem(
        &format!("{HELLO}timeout = 3\n"),
        "functions.hello.timeout",
        Some(4),
        "expected a string",
    );
    assert_problem(
        &format!("{HELLO}env = {{ PORT = 8080 }}\n"),
        "functions.hello.env.PORT",
        Some(4),
        "invalid type",
    );
    assert_problem(
        "[functions.hello]\ncommand = [\"x\", 3]\ncode = \"src\"\n",
        "functions.hello.command[1]",
        Some(2),
        "invalid type",
    );
    assert_problem(
        &format!("{HELLO}runtime = \"docker\"\n"),
        "functions.hello.runtime",
        Some(4),
        "unknown variant `docker`",
    );
    assert_problem(
        "[server]\nlisten = \"localhost\"\n",
        "server.listen",
        Some(2),
        "socket address",
    );
    assert_problem("server = 5\n", "server", Some(1), "expected a table");
    assert_problem(
        "functions = 5\n",
        "functions",
        Some(1),
        "expected a table of functions",
    );
    assert_problem(
        "[functions]\nhello = 5\n",
        "functions.hello",
        Some(2),
        "expected a table",
    );
    assert_problem(
        "routes = 5\n",
        "routes",
        Some(1),
        "expected an array of tables",
    );
    assert_problem("routes = [1]\n", "routes[0]", Some(1), "expected a table");
    assert_problem(
        &format!("{HELLO}max_body = 1.5\n"),
        "functions.hello.max_body",
        Some(4),
        "expected a size",
    );
}

#[test]
fn missing_required_keys_point_at_their_table() {
    assert_problem(
        "\n[functions.hello]\ncommand = [\"x\"]\n",
        "functions.hello.code",
        Some(2),
        "missing field `code`",
    );
    assert_problem(
        "[functions.hello]\ncode = \"src\"\n",
        "functions.hello.command",
        Some(1),
        "missing field `command`",
    );
    assert_problem(
        &format!("{HELLO}\n[[routes]]\nroute = \"GET /\"\n"),
        "routes[0].function",
        Some(5),
        "missing field `function`",
    );
}

#[test]
fn out_of_range_numbers() {
    assert_problem(
        &format!("{HELLO}memory_mb = 127\n"),
        "functions.hello.memory_mb",
        Some(4),
        "between 128 and 10240",
    );
    assert_problem(
        &format!("{HELLO}memory_mb = 10241\n"),
        "functions.hello.memory_mb",
        Some(4),
        "between 128 and 10240",
    );
    assert_problem(
        &format!("{HELLO}memory_mb = 99999999999999999\n"),
        "functions.hello.memory_mb",
        Some(4),
        "invalid value",
    );
    assert_problem(
        &format!("{HELLO}reserved_concurrency = -1\n"),
        "functions.hello.reserved_concurrency",
        Some(4),
        "invalid value",
    );
    assert_problem(
        &format!("{HELLO}provisioned = -1\n"),
        "functions.hello.provisioned",
        Some(4),
        "invalid value",
    );
    assert_problem(
        "[account]\nconcurrency = 0\n",
        "account.concurrency",
        Some(2),
        "between 1 and 100000",
    );
    assert_problem(
        "[account]\nconcurrency = 100001\n",
        "account.concurrency",
        Some(2),
        "between 1 and 100000",
    );
}

#[test]
fn durations_are_parsed_and_bounded() {
    assert_problem(
        &format!("{HELLO}timeout = \"3\"\n"),
        "functions.hello.timeout",
        Some(4),
        "invalid duration: `3` has no unit",
    );
    assert_problem(
        &format!("{HELLO}timeout = \"-3s\"\n"),
        "functions.hello.timeout",
        Some(4),
        "negative",
    );
    assert_problem(
        &format!("{HELLO}timeout = \"\"\n"),
        "functions.hello.timeout",
        Some(4),
        "empty",
    );
    assert_problem(
        &format!("{HELLO}timeout = \"0s\"\n"),
        "functions.hello.timeout",
        Some(4),
        "between 1ms and 900s",
    );
    assert_problem(
        &format!("{HELLO}timeout = \"901s\"\n"),
        "functions.hello.timeout",
        Some(4),
        "between 1ms and 900s",
    );
    assert_problem(
        &format!("{HELLO}idle_timeout = \"999ms\"\n"),
        "functions.hello.idle_timeout",
        Some(4),
        "between 1s and 24h",
    );
    assert_problem(
        &format!("{HELLO}idle_timeout = \"25h\"\n"),
        "functions.hello.idle_timeout",
        Some(4),
        "between 1s and 24h",
    );
    assert_problem(
        &format!("{HELLO}idle_timeout = \"1y\"\n"),
        "functions.hello.idle_timeout",
        Some(4),
        "unknown unit",
    );
    let config = parse(&format!(
        "{HELLO}timeout = \"1ms\"\nidle_timeout = \"1s\"\n"
    ))
    .unwrap();
    assert_eq!(config.functions["hello"].timeout, Duration::from_millis(1));
}

#[test]
fn body_limits_are_parsed_and_bounded() {
    assert_problem(
        &format!("{HELLO}max_body = \"7MB\"\n"),
        "functions.hello.max_body",
        Some(4),
        "over the limit of 6MiB",
    );
    assert_problem(
        &format!("{HELLO}max_body = \"lots\"\n"),
        "functions.hello.max_body",
        Some(4),
        "invalid size",
    );
    assert_problem(
        &format!("{HELLO}max_body = -5\n"),
        "functions.hello.max_body",
        Some(4),
        "negative",
    );
    assert_problem(
        &format!(
            "{HELLO}[[routes]]\nroute = \"GET /\"\nfunction = \"hello\"\nmax_body = 6291457\n"
        ),
        "routes[0].max_body",
        Some(7),
        "over the limit",
    );
    let config = parse(&format!("{HELLO}max_body = \"6MiB\"\n")).unwrap();
    assert_eq!(config.functions["hello"].max_body_bytes, 6 * 1024 * 1024);
}

#[test]
fn function_names_follow_lambda_rules() {
    let long = "f".repeat(65);
    assert_problem(
        &format!("[functions.{long}]\ncommand = [\"x\"]\ncode = \"src\"\n"),
        &format!("functions.{long}"),
        Some(1),
        "1 to 64 characters",
    );
    assert_problem(
        "\n[functions.\"bad name\"]\ncommand = [\"x\"]\ncode = \"src\"\n",
        "functions.\"bad name\"",
        Some(2),
        "1 to 64 characters",
    );
    assert_problem(
        "[functions.\"\"]\ncommand = [\"x\"]\ncode = \"src\"\n",
        "functions.\"\"",
        Some(1),
        "1 to 64 characters",
    );
    let ok = "f".repeat(64);
    assert!(parse(&format!("[functions.{ok}]\ncommand = [\"x\"]\ncode = \"src\"\n[functions.A-b_9]\ncommand = [\"x\"]\ncode = \"src\"\n")).is_ok());
}

#[test]
fn env_names_and_size() {
    let with_env = |env: &str| format!("{HELLO}[functions.hello.env]\n{env}\n");
    assert_problem(
        &with_env("AWS_REGION = \"x\""),
        "functions.hello.env.AWS_REGION",
        Some(5),
        "reserved",
    );
    assert_problem(
        &with_env("AWS_LAMBDA_FUNCTION_NAME = \"x\""),
        "functions.hello.env.AWS_LAMBDA_FUNCTION_NAME",
        Some(5),
        "reserved",
    );
    assert_problem(
        &with_env("_HANDLER = \"x\""),
        "functions.hello.env._HANDLER",
        Some(5),
        "reserved",
    );
    assert_problem(
        &with_env("LAMBDA_TASK_ROOT = \"x\""),
        "functions.hello.env.LAMBDA_TASK_ROOT",
        Some(5),
        "reserved",
    );
    assert_problem(
        &with_env("AWS_SESSION_TOKEN = \"x\""),
        "functions.hello.env.AWS_SESSION_TOKEN",
        Some(5),
        "reserved",
    );
    assert_problem(
        &with_env("1ABC = \"x\""),
        "functions.hello.env.1ABC",
        Some(5),
        "not a valid variable name",
    );
    assert_problem(
        &with_env("A-B = \"x\""),
        "functions.hello.env.A-B",
        Some(5),
        "not a valid variable name",
    );
    assert_problem(
        &with_env("\"A B\" = \"x\""),
        "functions.hello.env.\"A B\"",
        Some(5),
        "not a valid variable name",
    );
    assert_problem(
        &with_env("A = \"x\\u0000y\""),
        "functions.hello.env.A",
        Some(5),
        "NUL",
    );

    let big = format!("BIG = \"{}\"", "x".repeat(4094));
    assert_problem(
        &with_env(&big),
        "functions.hello.env",
        Some(4),
        "4097 bytes",
    );
    let fits = format!("BIG = \"{}\"", "x".repeat(4093));
    assert!(parse(&with_env(&fits)).is_ok());
    assert!(parse(&with_env("AWS_LAMBDA = \"x\"\nMY_aws_Region2 = \"y\"")).is_ok());
}

#[test]
fn concurrency_is_shared_by_the_account() {
    let text = "[account]\nconcurrency = 100\n\
                [functions.a]\ncommand = [\"x\"]\ncode = \"src\"\nreserved_concurrency = 60\n\
                [functions.b]\ncommand = [\"x\"]\ncode = \"src\"\nreserved_concurrency = 50\n";
    assert_problem(
        text,
        "account.concurrency",
        Some(2),
        "reserve 110 in total (a=60, b=50)",
    );
    // Without an [account] table the default limit applies and the problem has no line.
    let text = "[functions.a]\ncommand = [\"x\"]\ncode = \"src\"\nreserved_concurrency = 101\n";
    assert_problem(
        text,
        "account.concurrency",
        None,
        "more than account.concurrency (100)",
    );

    assert_problem(
        &format!("{HELLO}reserved_concurrency = 2\nprovisioned = 3\n"),
        "functions.hello.provisioned",
        Some(5),
        "exceed reserved_concurrency (2)",
    );
    assert_problem(
        &format!("[account]\nconcurrency = 5\n{HELLO}provisioned = 6\n"),
        "functions.hello.provisioned",
        Some(6),
        "exceed account.concurrency (5)",
    );
    assert!(parse(&format!(
        "[account]\nconcurrency = 5\n{HELLO}reserved_concurrency = 5\nprovisioned = 5\n"
    ))
    .is_ok());
}

#[test]
fn code_must_be_an_existing_directory() {
    assert_problem(
        "[functions.hello]\ncommand = [\"x\"]\ncode = \"no/such/dir\"\n",
        "functions.hello.code",
        Some(3),
        "does not exist",
    );
    assert_problem(
        "[functions.hello]\ncommand = [\"x\"]\ncode = \"Cargo.toml\"\n",
        "functions.hello.code",
        Some(3),
        "not a directory",
    );
    assert_problem(
        "[functions.hello]\ncommand = [\"x\"]\ncode = \"\"\n",
        "functions.hello.code",
        Some(3),
        "must not be empty",
    );
}

/// Staging copies `code` into `data_dir`; a code directory holding the data
/// dir would copy itself into itself until paths grew too long at start.
#[test]
fn a_code_directory_must_not_hold_the_data_dir() {
    // The default data_dir, `.levee`, sits inside `code = "."`.
    assert_problem(
        "[functions.site]\ncommand = [\"x\"]\ncode = \".\"\n",
        "functions.site.code",
        Some(3),
        "holds server.data_dir",
    );
    assert_problem(
        "[server]\ndata_dir = \"src/deep/state\"\n[functions.site]\ncommand = [\"x\"]\ncode = \"src\"\n",
        "functions.site.code",
        Some(5),
        "holds server.data_dir",
    );
    // A data dir beside the code directory is fine.
    assert!(parse(
        "[server]\ndata_dir = \"state\"\n[functions.site]\ncommand = [\"x\"]\ncode = \"src\"\n"
    )
    .is_ok());
}

#[test]
fn commands_and_handlers_must_be_usable() {
    assert_problem(
        "[functions.hello]\ncommand = []\ncode = \"src\"\n",
        "functions.hello.command",
        Some(2),
        "must name the program",
    );
    assert_problem(
        "[functions.hello]\ncommand = [\"x\", \"\"]\ncode = \"src\"\n",
        "functions.hello.command[1]",
        Some(2),
        "non-empty",
    );
    assert_problem(
        "[functions.hello]\ncommand = [\"a\\u0000b\"]\ncode = \"src\"\n",
        "functions.hello.command[0]",
        Some(2),
        "NUL",
    );
    assert_problem(
        &format!("{HELLO}handler = \"\"\n"),
        "functions.hello.handler",
        Some(4),
        "non-empty",
    );
}

#[test]
fn listeners_must_differ() {
    assert_problem(
        "[server]\nlisten = \"127.0.0.1:9000\"\nadmin_listen = \"127.0.0.1:9000\"\n",
        "server.admin_listen",
        Some(3),
        "clashes with server.listen",
    );
    assert_problem(
        "[server]\nlisten = \"0.0.0.0:9000\"\nadmin_listen = \"127.0.0.1:9000\"\n",
        "server.admin_listen",
        Some(3),
        "clashes",
    );
    // The default admin address is taken; the problem falls back to the table's line.
    assert_problem(
        "\n[server]\nlisten = \"127.0.0.1:8081\"\n",
        "server.admin_listen",
        Some(2),
        "clashes",
    );
    assert!(parse("[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n").is_ok());
    assert!(
        parse("[server]\nlisten = \"127.0.0.1:9000\"\nadmin_listen = \"127.0.0.2:9000\"\n").is_ok()
    );
}

#[test]
fn data_dir_is_resolved_but_need_not_exist() {
    let config = parse("[server]\ndata_dir = \"state/not-yet\"\n").unwrap();
    assert_eq!(config.server.data_dir, crate_dir().join("state/not-yet"));
    assert_problem(
        "[server]\ndata_dir = \"\"\n",
        "server.data_dir",
        Some(2),
        "must not be empty",
    );
}

#[test]
fn routes_are_checked() {
    let route = |key: &str, function: &str| {
        format!("{HELLO}\n[[routes]]\nroute = \"{key}\"\nfunction = \"{function}\"\n")
    };
    assert_problem(
        &route("GET /x", "helo"),
        "routes[0].function",
        Some(7),
        "no function named `helo` (declared: hello)",
    );
    assert_problem(
        &route("FETCH /x", "hello"),
        "routes[0].route",
        Some(6),
        "unknown method `FETCH`",
    );
    assert_problem(
        &route("GET x", "hello"),
        "routes[0].route",
        Some(6),
        "must start with `/`",
    );
    assert_problem(
        &route("GET /x?y", "hello"),
        "routes[0].route",
        Some(6),
        "`?` or `#`",
    );
    assert_problem(
        &route("GET /x//y", "hello"),
        "routes[0].route",
        Some(6),
        "empty segment",
    );
    assert_problem(
        &route("GET /{a+}/b", "hello"),
        "routes[0].route",
        Some(6),
        "must be the last",
    );
    assert_problem(
        &route("GET /{a b}", "hello"),
        "routes[0].route",
        Some(6),
        "not a route",
    );
    assert_problem(
        &route(&format!("GET /{}", "a".repeat(1024)), "hello"),
        "routes[0].route",
        Some(6),
        "limit is 1024",
    );
    assert_problem(
        "[[routes]]\nroute = \"GET /\"\nfunction = \"x\"\n",
        "routes[0].function",
        Some(3),
        "(declared: none)",
    );
    // A function with problems of its own still counts as declared.
    let problems = problems("[functions.hello]\ncommand = []\ncode = \"src\"\n[[routes]]\nroute = \"GET /\"\nfunction = \"hello\"\n");
    assert_eq!(problems.len(), 1, "{problems:#?}");
}

#[test]
fn overlapping_routes_are_refused() {
    let routes = |keys: &[&str]| {
        let mut text = HELLO.to_owned();
        for key in keys {
            text.push_str(&format!(
                "[[routes]]\nroute = \"{key}\"\nfunction = \"hello\"\n"
            ));
        }
        text
    };
    assert_problem(
        &routes(&["GET /x", "GET /x"]),
        "routes[1].route",
        Some(8),
        "overlaps route `GET /x` (routes[0])",
    );
    assert_problem(
        &routes(&["GET /x", "get /x"]),
        "routes[1].route",
        Some(8),
        "overlaps route `GET /x`",
    );
    assert_problem(
        &routes(&["GET /x/{a}", "GET /x/{b}"]),
        "routes[1].route",
        Some(8),
        "overlaps route `GET /x/{a}`",
    );
    assert_problem(
        &routes(&["GET /x", "ANY /x"]),
        "routes[1].route",
        Some(8),
        "overlaps route `GET /x`",
    );
    assert_problem(
        &routes(&["ANY /x", "POST /y", "PUT /x"]),
        "routes[2].route",
        Some(11),
        "overlaps route `ANY /x` (routes[0])",
    );
    let all = problems(&routes(&["ANY /x", "ANY /x"]));
    assert_eq!(all.len(), 1, "{all:#?}");
    assert!(parse(&routes(&[
        "GET /a/b",
        "GET /a/{x}",
        "POST /a/b",
        "GET /files/{p+}",
        "GET /"
    ]))
    .is_ok());
}

#[test]
fn every_problem_is_reported_in_line_order() {
    let text = "[server]\n\
                listen = \"127.0.0.1:9000\"\n\
                admin_listen = \"127.0.0.1:9000\"\n\
                [account]\n\
                concurrency = 0\n\
                [functions.a]\n\
                command = [\"x\"]\n\
                code = \"src\"\n\
                timeout = \"3\"\n\
                memory_mb = 1\n\
                [functions.b]\n\
                command = [\"x\"]\n\
                code = \"src\"\n\
                colour = \"red\"\n\
                [[routes]]\n\
                route = \"GET /x\"\n\
                function = \"c\"\n\
                [[routes]]\n\
                route = \"GET /x\"\n\
                function = \"a\"\n\
                [extra]\n";
    let err = parse(text).unwrap_err();
    let found: Vec<(Option<usize>, &str)> = err
        .problems()
        .iter()
        .map(|p| (p.line, p.key.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (Some(3), "server.admin_listen"),
            (Some(5), "account.concurrency"),
            (Some(9), "functions.a.timeout"),
            (Some(10), "functions.a.memory_mb"),
            (Some(14), "functions.b.colour"),
            (Some(17), "routes[0].function"),
            (Some(19), "routes[1].route"),
            (Some(21), "extra"),
        ],
        "{err}"
    );
    assert_eq!(err.to_string().lines().count(), 8);
    assert!(err
        .to_string()
        .contains("levee.toml:9: functions.a.timeout: invalid duration"));
}

#[test]
fn unreadable_file_is_a_problem_not_a_panic() {
    let err = Config::load(Path::new("/definitely/not/here/levee.toml")).unwrap_err();
    assert_eq!(err.problems().len(), 1);
    assert!(err.problems()[0]
        .message
        .starts_with("cannot read the file"));
    assert_eq!(err.origin(), "/definitely/not/here/levee.toml");

    let dir = TempDir::new();
    let file = dir.0.join("levee.toml");
    std::fs::write(&file, b"[server]\nlisten = \"\xff\"\n").unwrap();
    assert!(Config::load(&file).is_err());
}

#[test]
fn hostile_inputs_never_panic() {
    let long_key = "k".repeat(100_000);
    let nested = format!("x = {}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_table = format!("[functions.a.{}]\n", vec!["b"; 2000].join("."));
    let inputs = [
        "\u{0}",
        "[",
        "[[",
        "]]]]",
        "=",
        "routes = [[]]",
        "routes = [{}]",
        "routes = []",
        "[[functions]]\nx = 1",
        "[functions.a.env.X]\ny = 1",
        "[[functions.a.env]]\ny = 1",
        "[functions.a]\ncommand = [[1]]\ncode = {}",
        "[functions.a]\ncommand = \"x\"\ncode = \"src\"",
        "[functions.a]\nmemory_mb = 1e400\ncommand = [\"x\"]\ncode = \"src\"",
        "[functions.a]\nmemory_mb = nan\ncommand = [\"x\"]\ncode = \"src\"",
        "[functions.a]\ntimeout = 1979-05-27T07:32:00Z\ncommand = [\"x\"]\ncode = \"src\"",
        "[functions.a]\nprovisioned = 9223372036854775807\nreserved_concurrency = 4294967295\ncommand = [\"x\"]\ncode = \"src\"",
        "[functions.a]\ntimeout = \"99999999999999999999999h\"\ncommand = [\"x\"]\ncode = \"src\"",
        "[functions.\"\u{202e}\u{0}\"]\ncommand = [\"\u{fffd}/\u{0}\"]\ncode = \"\\u0000\"",
        "[[routes]]\nroute = \"GET /{\u{1F600}}/{a+}/{*b}\"\nfunction = \"\u{0}\"",
        "[[routes]]\nroute = \"\u{3000}GET\u{3000}/a\"\nfunction = 1",
        "[[routes]]\nroute = \"GET /{{a}}\"\nfunction = \"a\"\n[[routes]]\nroute = \"GET /{*a}\"\nfunction = \"a\"",
        "[server]\ndata_dir = \"\\u0000\"\nlisten = \"[::]:65535\"\nadmin_listen = \"0.0.0.0:65535\"",
        "[server]\nlisten = \"1.2.3.4:99999\"",
        "account = { concurrency = -1 }",
        long_key.as_str(),
        nested.as_str(),
        deep_table.as_str(),
    ];
    for input in inputs {
        let result = std::panic::catch_unwind(|| parse(input));
        assert!(
            result.is_ok(),
            "panicked on {:?}",
            &input[..input.len().min(80)]
        );
    }
}

#[test]
fn every_truncation_and_corruption_of_the_example_is_handled() {
    let text = EXAMPLE.replace("examples/hello", "src");
    let cuts = (0..=text.len()).filter(|&i| text.is_char_boundary(i));
    for cut in cuts {
        let prefix = &text[..cut];
        assert!(
            std::panic::catch_unwind(|| parse(prefix)).is_ok(),
            "panicked on prefix {prefix:?}"
        );
    }
    for (i, _) in text.char_indices() {
        for replacement in ["\"", "[", "{", "\n", "=", "+"] {
            let mut corrupted = text.clone();
            corrupted.replace_range(i..i + 1, replacement);
            assert!(
                std::panic::catch_unwind(|| parse(&corrupted)).is_ok(),
                "panicked on {corrupted:?}"
            );
        }
    }
}

#[test]
fn ten_thousand_routes_are_quick() {
    let mut text = HELLO.to_owned();
    for i in 0..10_000 {
        text.push_str(&format!(
            "[[routes]]\nroute = \"GET /r{i}/{{id}}\"\nfunction = \"hello\"\n"
        ));
    }
    let started = Instant::now();
    let config = parse(&text).unwrap();
    assert_eq!(config.routes.len(), 10_000);

    // The same number of duplicates: one problem each, every one on its line.
    let mut text = HELLO.to_owned();
    for _ in 0..10_000 {
        text.push_str("[[routes]]\nroute = \"GET /same\"\nfunction = \"nope\"\n");
    }
    let err = parse(&text).unwrap_err();
    assert_eq!(err.problems().len(), 10_000 + 9_999);
    let last = err.problems().last().unwrap();
    assert_eq!(last.key, "routes[9999].function");
    assert_eq!(last.line, Some(3 + 3 * 10_000));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn budget_problems_name_their_nested_key_and_line() {
    let text = format!(
        "{HELLO}\n[budgets.daily]\nperiod = \"day\"\nlimit = 5.0\nscope = {{ function = \"ghost\" }}\n"
    );
    assert_problem(&text, "budgets.daily.scope.function", Some(8), "ghost");
}

#[test]
fn periods_take_lowercase_and_api_gateway_uppercase_alike() {
    for (quota, budget) in [("DAY", "day"), ("day", "DAY"), ("week", "MONTH")] {
        let text = format!(
            "{HELLO}\n[plans.p]\nquota = {{ limit = 5, period = \"{quota}\" }}\n\n[budgets.b]\nperiod = \"{budget}\"\nlimit = 1.0\n"
        );
        let config = parse(&text).unwrap_or_else(|e| panic!("{quota}/{budget}: {e}"));
        let period = config.plans["p"].limits.quota.unwrap().period;
        assert_eq!(
            format!("{period:?}").to_lowercase(),
            quota.to_lowercase(),
            "{quota}"
        );
        assert_eq!(
            format!("{:?}", config.budgets["b"].period).to_lowercase(),
            budget.to_lowercase()
        );
    }
}

#[test]
fn admin_limits_have_their_own_smaller_defaults_and_the_guards_keys() {
    let c = parse("").unwrap();
    assert_eq!(c.admin_limits, crate::Limits::admin_default());
    assert!(c.admin_limits.max_connections < c.limits.max_connections);
    assert!(c.admin_limits.max_header_bytes <= 16 * 1024);
    let c = parse("[admin_limits]\nmax_connections = 8\nmax_connections_per_ip = 2\nheader_timeout = \"1s\"\n")
        .unwrap();
    assert_eq!(
        (
            c.admin_limits.max_connections,
            c.admin_limits.max_connections_per_ip
        ),
        (8, 2)
    );
    assert_eq!(c.admin_limits.header_timeout, Duration::from_secs(1));
    assert_eq!(
        c.limits,
        crate::Limits::default(),
        "the edge's are untouched"
    );
    assert_problem(
        "[admin_limits]\nbody_min_rate = 10\n",
        "admin_limits.body_min_rate",
        Some(2),
        "only the edge",
    );
    assert_problem(
        "[admin_limits]\nmax_header_bytes = \"1KiB\"\n",
        "admin_limits.max_header_bytes",
        Some(2),
        "between",
    );
    assert_problem(
        "[limits]\nmax_connections = 19000\n[admin_limits]\nmax_connections = 100\n",
        "admin_limits.max_connections",
        Some(4),
        "together allow 19100",
    );
}

#[test]
fn an_admin_listener_off_loopback_is_a_warning_not_an_error() {
    assert!(parse("").unwrap().warnings.is_empty());
    assert!(parse("[server]\nadmin_listen = \"[::1]:9001\"\n")
        .unwrap()
        .warnings
        .is_empty());
    let c = parse("[server]\nadmin_listen = \"0.0.0.0:9001\"\n").unwrap();
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    let w = &c.warnings[0];
    assert_eq!((w.key.as_str(), w.line), ("server.admin_listen", Some(2)));
    assert!(
        w.message.contains("not a loopback address"),
        "{}",
        w.message
    );
}

#[test]
fn huge_keys_and_values_are_quoted_short() {
    // One 10 MB key used to come back twice in full (key path and message).
    let key = "k".repeat(10 * 1024 * 1024);
    let text =
        format!("[server]\n{key} = 1\n[functions.{key}]\ncommand = [\"x\"]\ncode = \"src\"\n");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.len() < 4096, "{} bytes: {}…", err.len(), &err[..200]);
    assert!(err.contains('…'), "{err}");
    assert!(err.contains("server"), "{err}");
    let value = "v".repeat(1024 * 1024);
    let err = parse(&format!("[client_ip]\ntrusted_proxies = [\"{value}\"]\n"))
        .unwrap_err()
        .to_string();
    assert!(err.len() < 1024, "{} bytes", err.len());
    assert!(err.contains("is not an IP address"), "{err}");
}
