//! Shared helpers for the integration tests: start the real `levee` binary on
//! port 0 with a config written for the test, read back the addresses it
//! printed, and speak plain HTTP/1.1 to it over std sockets.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Runs `cargo build --quiet -p hello-fn` with `args` and `env`.
fn build_hello_fn(args: &[String], env: &[(&str, &str)]) {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "hello-fn"])
        .args(args)
        .envs(env.iter().copied())
        .current_dir(workspace())
        .status()
        .expect("running cargo build -p hello-fn");
    assert!(status.success(), "building hello-fn {args:?} failed");
}

/// Path of the `hello-fn` example binary, built once per test binary.
pub fn hello_fn() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let levee = PathBuf::from(env!("CARGO_BIN_EXE_levee"));
            let profile_dir = levee.parent().unwrap().to_path_buf();
            let release = profile_dir.file_name().is_some_and(|n| n == "release");
            let args: &[String] = if release {
                &["--release".to_string()]
            } else {
                &[]
            };
            build_hello_fn(args, &[]);
            profile_dir.join("hello-fn")
        })
        .clone()
}

/// `hello-fn` linked statically (`crt-static`), built once into its own
/// target directory: a function binary that needs nothing of the host.
pub fn static_hello_fn() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = workspace().join("target/static");
            let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
            let args = [
                "--target".to_string(),
                triple.clone(),
                "--target-dir".to_string(),
                target.display().to_string(),
            ];
            build_hello_fn(&args, &[("RUSTFLAGS", "-C target-feature=+crt-static")]);
            target.join(triple).join("debug/hello-fn")
        })
        .clone()
}

/// The Node.js fixture (`tests/fixtures/node`) with the real aws-lambda-ric
/// installed by `npm ci` (once; its native part builds with cmake), and the
/// sources it built from removed so staging copies only what runs.
pub fn node_fixture() -> PathBuf {
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let dir = workspace().join("crates/levee/tests/fixtures/node");
            let ric = dir.join("node_modules/aws-lambda-ric");
            if !ric.join("dist/rapid-client.node").exists() {
                let out = Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund"])
                    .current_dir(&dir)
                    .output()
                    .expect("npm must be installed");
                assert!(
                    out.status.success(),
                    "npm ci in {}: {}",
                    dir.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let _ = std::fs::remove_dir_all(ric.join("deps"));
            dir
        })
        .clone()
}

/// The Python that has `awslambdaric` and `boto3` (the pyenv one here, or
/// whatever `python3` resolves to), as an absolute path.
pub fn python() -> String {
    static PY: OnceLock<String> = OnceLock::new();
    PY.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 must be installed");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
    .clone()
}

/// A webhook receiver: answers every POST 200 and keeps its body (at
/// most [`Webhook::MAX_POSTS`], each cut at 1 MiB).
pub struct Webhook {
    pub url: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Webhook {
    const MAX_POSTS: usize = 100;

    pub fn start() -> Webhook {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&bodies);
        std::thread::spawn(move || {
            for stream in listener.incoming().take(Self::MAX_POSTS).flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len.min(1 << 20)];
                let _ = reader.read_exact(&mut body);
                sink.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
                let _ = (&stream).write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Webhook { url, bodies }
    }

    /// The bodies received so far, parsed as JSON.
    pub fn posts(&self) -> Vec<serde_json::Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| serde_json::from_str(b).unwrap_or(serde_json::Value::Null))
            .collect()
    }
}

/// A TCP service on the host that collects the lines functions send it
/// (reached from isolated instances through `forward`).
pub struct Collector {
    pub addr: SocketAddr,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Collector {
    /// Most connections served; each is read to its end.
    const MAX_CONNECTIONS: usize = 10_000;

    pub fn start() -> Collector {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&lines);
        std::thread::spawn(move || {
            for conn in listener.incoming().take(Self::MAX_CONNECTIONS).flatten() {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let got: Vec<String> = BufReader::new(&conn)
                    .lines()
                    .map_while(Result::ok)
                    .collect();
                sink.lock().unwrap().extend(got);
                // Closed only now: a writer that waits for the close knows
                // its lines are recorded.
                drop(conn);
            }
        });
        Collector { addr, lines }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

/// Host pids of live (not zombie) processes running as `uid`: an isolated
/// instance's uid is its own, so none may be left once it is gone.
pub fn processes_of_uid(uid: u64) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                return false;
            };
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::trim)
                    .unwrap_or("")
                    .to_string()
            };
            field("Uid:").split_whitespace().next() == Some(&uid.to_string())
                && !field("State:").starts_with('Z')
        })
        .collect()
}

/// A unique scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("levee-it-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What starts levee: itself, or a tool that changes its process first
/// and then runs it in its place (so [`Server::pid`] is levee's).
enum Wrapper {
    None,
    /// `setpriv` to this uid and gid.
    Setpriv(u32),
    /// `prlimit` to this soft limit of open files.
    OpenFiles(u32),
}

/// The admin token every test server runs with.
pub const ADMIN_TOKEN: &str = "levee-test-admin-token-0123456789";

/// A running `levee serve`.
pub struct Server {
    child: Child,
    pub edge: SocketAddr,
    pub admin: SocketAddr,
    /// The edge's HTTPS listener, with `[tls]`.
    pub https: Option<SocketAddr>,
    pub dir: PathBuf,
    stderr_path: PathBuf,
    /// What levee printed on stdout before it was ready.
    pub printed: Vec<String>,
    /// The `instance_uids` this server was given.
    pub uids: std::ops::RangeInclusive<u64>,
}

impl Server {
    /// Starts levee with `[server]` on port 0 and `body` (functions, routes…).
    pub fn start(name: &str, body: &str) -> Server {
        Self::start_with_env(name, body, &[])
    }

    /// Like [`Server::start`], with extra environment for the levee process.
    pub fn start_with_env(name: &str, body: &str, env: &[(&str, &str)]) -> Server {
        Self::launch(name, body, env, true)
    }

    /// Like [`Server::start`], but without `LEVEE_ADMIN_TOKEN`, so levee
    /// uses (or creates) its token file.
    pub fn start_with_token_file(name: &str, body: &str) -> Server {
        Self::launch(name, body, &[], false)
    }

    /// Starts levee in an existing directory (its config and data), e.g. to
    /// restart after [`Server::kill9`].
    pub fn start_in(dir: PathBuf, body: &str, env: &[(&str, &str)]) -> Server {
        Self::launch_in(dir, body, env, true)
    }

    /// Like [`Server::start`], with levee running as the unprivileged uid
    /// and gid `id` (through `setpriv`, no supplementary groups), in a
    /// directory it owns.
    pub fn start_unprivileged(name: &str, body: &str, id: u32) -> Server {
        let dir = scratch(name);
        std::os::unix::fs::chown(&dir, Some(id), Some(id)).unwrap();
        Self::launch_as(dir, body, &[], true, Wrapper::Setpriv(id))
    }

    /// Like [`Server::start`], with levee allowed at most `limit` open
    /// files (the soft `RLIMIT_NOFILE`, through `prlimit`).
    pub fn start_with_open_files(name: &str, body: &str, limit: u32) -> Server {
        Self::launch_as(scratch(name), body, &[], true, Wrapper::OpenFiles(limit))
    }

    fn launch(name: &str, body: &str, env: &[(&str, &str)], env_token: bool) -> Server {
        Self::launch_in(scratch(name), body, env, env_token)
    }

    fn launch_in(dir: PathBuf, body: &str, env: &[(&str, &str)], env_token: bool) -> Server {
        Self::launch_as(dir, body, env, env_token, Wrapper::None)
    }

    fn launch_as(
        dir: PathBuf,
        body: &str,
        env: &[(&str, &str)],
        env_token: bool,
        wrapper: Wrapper,
    ) -> Server {
        let config = dir.join("levee.toml");
        // Servers running side by side get uid ranges of their own, as two
        // servers on one machine must: a uid then names one instance of one
        // server, which the process checks below rely on. Clear of the
        // default range and of levee-runtime's sandbox_cycles (300000…).
        static SERVERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 60;
        let uids = 400_000 + n * 1000;
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\ninstance_uids = [{uids}, {}]\n\n{body}",
                uids + 999
            ),
        )
        .unwrap();
        let stderr_path = dir.join("levee.stderr");
        let mut cmd = match wrapper {
            Wrapper::Setpriv(id) => {
                let mut cmd = Command::new("setpriv");
                cmd.arg(format!("--reuid={id}"))
                    .arg(format!("--regid={id}"))
                    .args(["--clear-groups", "--", env!("CARGO_BIN_EXE_levee")]);
                cmd
            }
            Wrapper::OpenFiles(limit) => {
                let mut cmd = Command::new("prlimit");
                // The soft limit only: instances set their own (lower)
                // limits, which a lowered hard limit would refuse.
                cmd.arg(format!("--nofile={limit}:"))
                    .args(["--", env!("CARGO_BIN_EXE_levee")]);
                cmd
            }
            Wrapper::None => Command::new(env!("CARGO_BIN_EXE_levee")),
        };
        if env_token {
            cmd.env("LEVEE_ADMIN_TOKEN", ADMIN_TOKEN);
        } else {
            cmd.env_remove("LEVEE_ADMIN_TOKEN");
        }
        let mut child = cmd
            .args(["serve", "--config"])
            .arg(&config)
            .envs(env.iter().copied())
            .env("LEVEE_LOG", "info,levee::report=debug")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("starting levee");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut edge, mut admin, mut https) = (None, None, None);
        let mut printed = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while edge.is_none() || admin.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    printed.push(line.clone());
                    let addr = |prefix: &str| -> Option<SocketAddr> {
                        line.strip_prefix(prefix)?.trim().parse().ok()
                    };
                    edge = edge.or(addr("levee: edge listening on http://"));
                    https = https.or(addr("levee: edge listening on https://"));
                    admin = admin
                        .or(addr("levee: admin listening on http://"))
                        .or(addr("levee: admin listening on https://"));
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "levee did not print its addresses; stderr:\n{}",
                        std::fs::read_to_string(&stderr_path).unwrap_or_default()
                    );
                }
            }
        }
        Server {
            child,
            edge: edge.unwrap(),
            admin: admin.unwrap(),
            https,
            dir,
            stderr_path,
            printed,
            uids: u64::from(uids)..=u64::from(uids) + 999,
        }
    }

    /// Stops the server with SIGTERM, waiting at most `within`: how long it
    /// took to exit (`None`: it had not), and its directory for a restart.
    pub fn terminate(mut self, within: Duration) -> (Option<Duration>, PathBuf) {
        let took = self.sigterm(within);
        (took, std::mem::take(&mut self.dir))
    }

    /// Kills the server with SIGKILL (no chance to flush) and returns its
    /// directory for a restart.
    pub fn kill9(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::take(&mut self.dir)
    }

    /// What the server logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A request to the admin listener, with the admin token.
    pub fn admin(&self, method: &str, path: &str, body: &[u8]) -> Resp {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        request(self.admin, method, path, &[("authorization", &auth)], body)
    }

    /// One SQS JSON-protocol call on the admin listener, whatever its status.
    pub fn admin_sqs_call(&self, action: &str, payload: &serde_json::Value) -> Resp {
        try_sqs_call(self.admin, action, payload).unwrap_or_else(|e| panic!("{e}"))
    }

    /// One SQS JSON-protocol call that must succeed; the JSON answer.
    pub fn admin_sqs(&self, action: &str, payload: &serde_json::Value) -> serde_json::Value {
        let r = self.admin_sqs_call(action, payload);
        assert_eq!(r.status, 200, "{action}: {}", r.text());
        r.json()
    }

    /// `GET /admin/functions`, as `name → instances` JSON.
    pub fn instances(&self, function: &str) -> serde_json::Value {
        let resp = self.admin("GET", "/admin/functions", b"");
        let doc = resp.json();
        doc["functions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == function)
            .map(|f| f["instances"].clone())
            .unwrap_or_else(|| panic!("no function {function} in {doc}"))
    }

    /// Polls `cond` every 50 ms for at most `within`.
    pub fn wait_until(&self, within: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        cond()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        // Keep the directory (config, data, logs) of a failed test to look
        // at; a passing one leaves nothing behind (each holds SQLite files
        // and code copies).
        if !std::thread::panicking() && !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Server {
    fn stop(&mut self) {
        if self.sigterm(Duration::from_secs(15)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// SIGTERM for a clean shutdown (instances and cgroups removed), then
    /// waits at most `within`; how long the exit took, if it came. Only
    /// this test's own child is signalled.
    fn sigterm(&mut self, within: Duration) -> Option<Duration> {
        if let Ok(Some(_)) = self.child.try_wait() {
            return Some(Duration::ZERO);
        }
        let started = Instant::now();
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        while started.elapsed() < within {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header named `name`.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), with a
/// 60 s bound on the whole exchange.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    try_request(addr, method, path, headers, body).unwrap_or_else(|e| panic!("{e}"))
}

/// One SQS JSON-protocol call to the admin listener at `admin`, with the
/// admin token, whatever its status; an error when no answer came (for a
/// server that may be killed mid-call).
pub fn try_sqs_call(
    admin: SocketAddr,
    action: &str,
    payload: &serde_json::Value,
) -> Result<Resp, String> {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let target = format!("AmazonSQS.{action}");
    try_request(
        admin,
        "POST",
        "/",
        &[
            ("authorization", &auth),
            ("x-amz-target", &target),
            ("content-type", "application/x-amz-json-1.0"),
        ],
        payload.to_string().as_bytes(),
    )
}

/// Like [`request`], saying what went wrong instead of panicking (for a
/// server that may be killed mid-request).
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Resp, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let framed = headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
    });
    if !framed && (!body.is_empty() || method == "POST" || method == "PUT") {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(body))
        .map_err(|e| format!("writing request: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("reading response: {e}"))?;
    if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        return Err(format!(
            "no header end in {:?}",
            String::from_utf8_lossy(&raw)
        ));
    }
    Ok(parse_response(&raw))
}

/// `GET path` on `addr`.
pub fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, &[], b"")
}

fn parse_response(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
}

/// An empty code directory for functions whose command is all they need.
pub fn empty_code() -> PathBuf {
    scratch("code")
}

/// A function table for `hello-fn` named `name`, with extra keys.
pub fn hello_function(name: &str, extra: &str) -> String {
    format!(
        "[functions.{name}]\ncommand = [\"{}\"]\ncode = \"{}\"\n{extra}\n",
        hello_fn().display(),
        workspace().join("examples/hello/code").display()
    )
}

/// Runs the real `curl` with `args` (bounded by `--max-time 30`); its exit
/// code and stdout. `--http2-prior-knowledge` speaks HTTP/2 cleartext.
pub fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "30"])
        .args(args)
        .output()
        .expect("curl must be installed");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// An HTTP/2 frame (RFC 9113 §4.1): type `kind`, `flags`, `stream`, and
/// `payload`.
pub fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Runs `cmd` with `input` on its stdin; its output, stdout and stderr
/// captured.
pub fn run_with_input(cmd: &mut Command, input: &str) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the command");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Test certificates made by the real `openssl`: CAs, and leaves they sign,
/// ECDSA P-256, valid for two days.
pub mod pki {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// A certificate and its key, PEM files.
    #[derive(Debug, Clone)]
    pub struct Pair {
        pub cert: PathBuf,
        pub key: PathBuf,
    }

    fn openssl(dir: &Path, args: &[&str]) {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl must be installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `openssl req` with a new unencrypted P-256 key in `key`, writing
    /// `out` (a self-signed certificate with `-x509` in `extra`, else a
    /// request) for subject `CN=cn`.
    fn new_key(dir: &Path, key: &str, out: &str, cn: &str, extra: &[&str]) {
        let subject = format!("/O=Levee Tests/CN={cn}");
        let mut args = vec![
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            key,
            "-out",
            out,
            "-subj",
            &subject,
        ];
        args.extend_from_slice(extra);
        openssl(dir, &args);
    }

    /// A self-signed CA named `name` in `dir`.
    pub fn ca(dir: &Path, name: &str) -> Pair {
        let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
        new_key(
            dir,
            &key,
            &cert,
            name,
            &[
                "-x509",
                "-days",
                "2",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        Pair {
            cert: dir.join(cert),
            key: dir.join(key),
        }
    }

    /// A leaf for `cn` signed by `ca`, with `sans` (`DNS:a.test`,
    /// `IP:127.0.0.1`, `URI:…`) and extended key usage `usage`
    /// (`serverAuth` or `clientAuth`), as `file.pem` and `file.key`.
    pub fn leaf(ca: &Pair, file: &str, cn: &str, sans: &[&str], usage: &str) -> Pair {
        let dir = ca.cert.parent().unwrap();
        let (cert, key, csr, ext) = (
            format!("{file}.pem"),
            format!("{file}.key"),
            format!("{file}.csr"),
            format!("{file}.ext"),
        );
        std::fs::write(
            dir.join(&ext),
            format!(
                "subjectAltName={}\nbasicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n",
                sans.join(",")
            ),
        )
        .unwrap();
        new_key(dir, &key, &csr, cn, &[]);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca.cert.display().to_string(),
                "-CAkey",
                &ca.key.display().to_string(),
                "-CAcreateserial",
                "-out",
                &cert,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
        Pair {
            cert: dir.join(cert),
            key: dir.join(key),
        }
    }
}
