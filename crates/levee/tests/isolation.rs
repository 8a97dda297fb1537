//! Isolation end to end: hostile functions (real Python under the real
//! awslambdaric) beside a normal neighbour, through the real server. Each
//! test asserts what the hostile code saw or managed, and that the server
//! and the neighbour kept answering.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{get, hello_function, processes_of_uid, python, workspace, Server};

const NEIGHBOUR_SECRET: &str = "neighbour-secret-7f3a9c";

fn hostile(name: &str, extra: &str) -> String {
    format!(
        "[functions.{name}]\ncommand = [\"{}\", \"-m\", \"awslambdaric\", \"app.handler\"]\ncode = \"{}\"\ntimeout = \"30s\"\n{extra}\n",
        python(),
        workspace()
            .join("crates/levee/tests/fixtures/hostile")
            .display()
    )
}

fn neighbour() -> String {
    hello_function(
        "neighbour",
        &format!("env = {{ NEIGHBOUR_SECRET = \"{NEIGHBOUR_SECRET}\" }}\n\n[[routes]]\nroute = \"GET /n\"\nfunction = \"neighbour\""),
    )
}

/// Invokes `function` through the Invoke API; the function's JSON answer.
fn invoke(s: &Server, function: &str, event: &Value) -> Value {
    let r = s.admin(
        "POST",
        &format!("/2015-03-31/functions/{function}/invocations"),
        event.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn neighbour_answers(s: &Server) {
    let r = get(s.edge, "/n?action=pid");
    assert_eq!(r.status, 200, "the neighbour keeps answering: {}", r.text());
}

#[test]
fn a_hostile_function_reaches_nothing_outside_its_sandbox() {
    let s = Server::start(
        "hostile",
        &format!("{}{}", hostile("hostile", ""), neighbour()),
    );
    neighbour_answers(&s);
    let data = s.dir.join("data");
    let mut secrets = serde_json::Map::new();
    secrets.insert("shadow".into(), json!("/etc/shadow"));
    secrets.insert("admin token".into(), json!(data.join("admin.token")));
    secrets.insert("config".into(), json!(s.dir.join("levee.toml")));
    secrets.insert(
        "neighbour staged code".into(),
        json!(data.join("functions/neighbour/code/README.md")),
    );
    secrets.insert(
        "neighbour source code".into(),
        json!(workspace().join("examples/hello/code/README.md")),
    );
    secrets.insert("neighbour binary".into(), json!(support::hello_fn()));
    secrets.insert("root's home".into(), json!("/root/.bashrc"));
    secrets.insert("sysfs".into(), json!("/sys/kernel/hostname"));
    for entry in std::fs::read_dir(&data).unwrap().flatten() {
        secrets.insert(
            format!("data_dir/{}", entry.file_name().to_string_lossy()),
            json!(entry.path()),
        );
    }
    let event = json!({
        "action": "probe",
        "secrets": secrets,
        "writes": {
            "/var/task": "/var/task/x",
            "/usr": "/usr/x",
            "/etc/passwd": "/etc/passwd",
            "/": "/x",
        },
        "connect": {
            "admin listener": s.admin.to_string(),
            "edge listener": s.edge.to_string(),
            "outside (TEST-NET-1)": "192.0.2.1:80",
        },
        "neighbour_secret": NEIGHBOUR_SECRET,
        "server_pid": s.pid(),
    });
    let out = invoke(&s, "hostile", &event);
    let field = |k: &str| out[k].clone();

    for name in secrets.keys() {
        assert_eq!(
            field(&format!("read {name}")),
            "ENOENT",
            "{name} is visible: {out:#}"
        );
    }
    for name in ["/var/task", "/usr", "/etc/passwd", "/"] {
        let got = field(&format!("write {name}"));
        assert!(got == "EROFS" || got == "EACCES", "write {name}: {got}");
    }
    assert_eq!(field("tmp write"), "ok");
    for name in ["admin listener", "edge listener", "outside (TEST-NET-1)"] {
        let got = field(&format!("connect {name}"));
        assert!(
            got == "ECONNREFUSED" || got == "ENETUNREACH",
            "connect {name}: {got}"
        );
    }
    assert_eq!(field("neighbour secret seen"), false);
    assert_eq!(field("pids"), json!([1]), "only its own process is visible");
    let root: Vec<String> = serde_json::from_value(field("root")).unwrap();
    let allowed = [
        "bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "root", "sbin", "tmp",
        "usr", "var",
    ];
    assert!(
        root.iter().all(|e| allowed.contains(&e.as_str())),
        "unexpected entries at /: {root:?}"
    );
    assert_eq!(
        field("dev"),
        json!(["fd", "full", "null", "random", "stderr", "stdin", "stdout", "urandom", "zero"])
    );
    let etc: Vec<String> = serde_json::from_value(field("etc")).unwrap();
    assert!(!etc.contains(&"shadow".to_string()), "{etc:?}");
    let status = field("status");
    for cap in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
        assert_eq!(status[cap], "0000000000000000", "{cap}: {status}");
    }
    assert_eq!(status["NoNewPrivs"], "1");
    assert_eq!(status["Seccomp"], "2");
    assert_eq!(status["Groups"], "");
    let uid = field("uid").as_u64().unwrap();
    assert!(s.uids.contains(&uid), "uid {uid} outside {:?}", s.uids);
    assert_eq!(
        status["Gid"].as_str().unwrap().split_whitespace().next(),
        Some(uid.to_string().as_str())
    );
    assert_eq!(field("hostname"), "localhost");
    assert_eq!(field("cwd"), "/var/task");
    let cgroup = field("cgroup");
    assert!(
        cgroup.as_str().unwrap().lines().all(|l| l.ends_with(":/")),
        "a cgroup namespace of its own: {cgroup}"
    );
    assert_eq!(
        field("env"),
        json!({"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001", "LAMBDA_TASK_ROOT": "/var/task", "HOME": "/tmp", "TMPDIR": "/tmp"})
    );
    assert_eq!(field("tmp bytes"), 512 * 1024 * 1024);
    for (call, want) in [
        ("setuid(0)", "EPERM"),
        ("unshare(NEWUSER)", "EPERM"),
        ("unshare(NEWNS)", "EPERM"),
        ("mount tmpfs", "EPERM"),
        ("chroot", "EPERM"),
        ("ptrace(ATTACH, 1)", "EPERM"),
        ("process_vm_readv", "EPERM"),
        ("io_uring_setup", "ENOSYS"),
        ("bpf", "EPERM"),
        ("perf_event_open", "EPERM"),
        ("keyctl", "EPERM"),
        ("userfaultfd", "EPERM"),
        ("clone3", "ENOSYS"),
        ("kill server", "ESRCH"),
    ] {
        assert_eq!(field(call), want, "{call}: {out:#}");
    }
    assert_ne!(
        field("setuid mount binary"),
        0,
        "a setuid-root mount did not run as root"
    );
    let kill_all = field("kill(-1, SIGKILL)");
    assert!(kill_all == "ok" || kill_all == "ESRCH", "{kill_all}");

    // The server, the neighbour and this test runner survived all of it.
    assert_eq!(s.admin("GET", "/admin/functions", b"").status, 200);
    neighbour_answers(&s);
    assert!(s.stderr().lines().all(|l| !l.contains("panicked")));
}

#[test]
fn tmp_is_private_bounded_and_uids_are_distinct() {
    let s = Server::start(
        "tmp",
        &format!(
            "{}{}{}",
            hostile("a", "memory_mb = 1024"),
            hostile("b", ""),
            hostile("small", "memory_mb = 128")
        ),
    );
    let a1 = invoke(&s, "a", &json!({"action": "tmp_marker", "who": "a"}));
    let b1 = invoke(&s, "b", &json!({"action": "tmp_marker", "who": "b"}));
    let a2 = invoke(&s, "a", &json!({"action": "tmp_marker", "who": "a"}));
    assert_eq!(a1["existed"], false);
    assert_eq!(b1["existed"], false, "b never sees a's /tmp");
    assert_eq!(a2["existed"], true, "a warm instance keeps its own /tmp");
    assert_eq!(a1["uid"], a2["uid"]);
    assert_ne!(a1["uid"], b1["uid"], "live instances never share a uid");

    let filled = invoke(&s, "a", &json!({"action": "fill_tmp", "mib": 600}));
    assert_eq!(filled["stopped"], "ENOSPC", "{filled}");
    let mib = filled["written_mib"].as_u64().unwrap();
    assert!((500..=512).contains(&mib), "stopped at {mib} MiB");

    // /tmp is memory: past the memory limit, the instance is OOM-killed.
    let r = s.admin(
        "POST",
        "/2015-03-31/functions/small/invocations",
        json!({"action": "fill_tmp", "mib": 400})
            .to_string()
            .as_bytes(),
    );
    assert!(
        r.text().contains("Runtime.OutOfMemory"),
        "{} {}",
        r.status,
        r.text()
    );
    let fresh = invoke(
        &s,
        "small",
        &json!({"action": "tmp_marker", "who": "small"}),
    );
    assert_eq!(fresh["existed"], false, "a fresh instance, an empty /tmp");
}

#[test]
fn a_fork_bomb_is_held_by_the_pids_limit_and_leaves_nothing_behind() {
    let s = Server::start(
        "bomb",
        &format!(
            "{}{}",
            hostile("bomb", "idle_timeout = \"1s\"\nmemory_mb = 1024"),
            neighbour()
        ),
    );
    neighbour_answers(&s);
    let bomb = std::thread::scope(|scope| {
        let bomb = scope.spawn(|| invoke(&s, "bomb", &json!({"action": "fork_bomb", "hold": 8})));
        let mut latencies = Vec::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(4) {
            let t = Instant::now();
            neighbour_answers(&s);
            latencies.push(t.elapsed());
        }
        latencies.sort();
        let p99 = latencies[latencies.len() * 99 / 100];
        println!(
            "neighbour during the fork bomb: {} requests, p99 {p99:?}",
            latencies.len()
        );
        bomb.join().unwrap()
    });
    assert_eq!(bomb["refused"], "EAGAIN", "{bomb}");
    let made = bomb["made"].as_u64().unwrap();
    assert!(made < 1024, "made {made} processes");
    let uid = bomb["uid"].as_u64().unwrap();
    assert!(
        s.wait_until(Duration::from_secs(30), || processes_of_uid(uid).is_empty()),
        "processes of uid {uid} outlived the instance: {:?}",
        processes_of_uid(uid)
    );
    neighbour_answers(&s);
}

#[test]
fn forward_reaches_one_host_service_and_nothing_else() {
    let service = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = service.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in service.incoming().take(4).flatten() {
            let mut line = String::new();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let _ = reader.read_line(&mut line);
            let _ = (&conn).write_all(format!("pong {}", line.trim()).as_bytes());
        }
    });
    let s = Server::start(
        "forward",
        &hostile("talk", &format!("forward = [\"{addr}\"]")),
    );
    let through = invoke(
        &s,
        "talk",
        &json!({"action": "talk", "addr": addr.to_string()}),
    );
    assert_eq!(through["answer"], "pong ping", "{through}");
    let admin = invoke(
        &s,
        "talk",
        &json!({"action": "talk", "addr": s.admin.to_string()}),
    );
    assert_eq!(admin["error"], "ECONNREFUSED", "{admin}");
}

#[test]
fn instances_die_with_a_killed_server_and_starts_leave_nothing_behind() {
    let s = Server::start(
        "kill9",
        &hello_function(
            "f",
            "provisioned = 1\n\n[[routes]]\nroute = \"ANY /f\"\nfunction = \"f\"",
        ),
    );
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    // Each crash ends an instance; the next request starts another.
    let mut uids = std::collections::HashSet::new();
    for _ in 0..30 {
        let r = get(s.edge, "/f?action=pid");
        uids.insert(r.json()["uid"].as_u64().unwrap());
        assert_eq!(get(s.edge, "/f?action=crash").status, 502);
    }
    assert!(uids.len() > 1, "crashed instances were replaced");
    for &uid in &uids {
        assert!(
            s.wait_until(Duration::from_secs(10), || processes_of_uid(uid).len() <= 1),
            "uid {uid}"
        );
    }
    let mounts_after = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    assert_eq!(mounts_before, mounts_after, "no mount reached the host");
    let live = get(s.edge, "/f?action=pid").json()["uid"].as_u64().unwrap();
    assert!(!processes_of_uid(live).is_empty());
    s.kill9();
    let gone = || processes_of_uid(live).is_empty();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gone() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(gone(), "an instance outlived its server");
}

/// `nobody` on Debian: a uid with no home, no groups and no privilege.
const NOBODY: u32 = 65534;

#[test]
fn an_ordinary_user_still_isolates_instances_in_user_namespaces() {
    let body = hello_function("f", "\n[[routes]]\nroute = \"ANY /f\"\nfunction = \"f\"");
    let s = Server::start_unprivileged("rootless", &body, NOBODY);
    let me = get(s.edge, "/f?action=pid");
    assert_eq!(me.status, 200, "{} {}", me.text(), s.stderr());
    let me = me.json();
    assert_eq!(me["pid"], 1, "pid 1 of its own pid namespace");
    assert_eq!(me["uid"], NOBODY, "Levee's own uid, mapped");
    // Seen from the host: the function process and what it holds.
    let status = processes_of_uid(NOBODY.into())
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "hello-fn")
        })
        .map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap())
        .next()
        .expect("the instance runs as Levee's uid");
    for (field, want) in [
        ("CapEff:", "0000000000000000"),
        ("CapBnd:", "0000000000000000"),
        ("NoNewPrivs:", "1"),
        ("Seccomp:", "2"),
    ] {
        let got = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .map(str::trim);
        assert_eq!(got, Some(want), "{field} in\n{status}");
    }
    let nspid = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .unwrap();
    assert!(
        nspid.trim().ends_with("\t1") || nspid.split_whitespace().last() == Some("1"),
        "{nspid}"
    );
    let env = get(s.edge, "/f?action=env").json();
    assert_eq!(env["AWS_LAMBDA_RUNTIME_API"], "127.0.0.1:9001");
    assert_eq!(env["LAMBDA_TASK_ROOT"], "/var/task");
    let check = std::process::Command::new("setpriv")
        .arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .args([
            "--clear-groups",
            "--",
            env!("CARGO_BIN_EXE_levee"),
            "check",
            "--config",
        ])
        .arg(s.dir.join("levee.toml"))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{printed}");
    assert!(
        printed.contains("without root: Levee's own uid in a user namespace"),
        "{printed}"
    );
}

/// A host outside Levee's machine: a network namespace of the test's own,
/// reached from the host over a veth pair, with a TCP service that answers
/// "outside". Removed (namespace, link, service) on drop.
struct Outside {
    ns: String,
    service: std::process::Child,
    addr: std::net::SocketAddr,
    gateway: std::net::Ipv4Addr,
}

impl Outside {
    fn start() -> Outside {
        let pid = std::process::id();
        let ns = format!("levee-it-{pid}");
        let link = format!("lit{:x}", pid & 0xff_ffff);
        let net = 10 + pid % 200;
        let (gateway, addr) = (format!("10.251.{net}.1"), format!("10.251.{net}.2"));
        let ip = |args: &str| {
            let ok = std::process::Command::new("ip")
                .args(args.split_whitespace())
                .status()
                .unwrap()
                .success();
            assert!(ok, "ip {args}");
        };
        ip(&format!("netns add {ns}"));
        ip(&format!(
            "link add {link} type veth peer name eth0 netns {ns}"
        ));
        ip(&format!("address add {gateway}/30 dev {link}"));
        ip(&format!("link set {link} up"));
        ip(&format!("-n {ns} address add {addr}/30 dev eth0"));
        ip(&format!("-n {ns} link set eth0 up"));
        ip(&format!("-n {ns} link set lo up"));
        ip(&format!("-n {ns} route add default via {gateway}"));
        let script = format!(
            "import socket\ns = socket.create_server(('{addr}', 8000))\ns.settimeout(60)\nfor _ in range(50):\n    c, _ = s.accept()\n    c.sendall(b'outside\\n')\n    c.close()\n"
        );
        let service = std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "python3", "-c", &script])
            .spawn()
            .unwrap();
        let addr: std::net::SocketAddr = format!("{addr}:8000").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the outside service did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Outside {
            ns,
            service,
            addr,
            gateway: gateway.parse().unwrap(),
        }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = self.service.kill();
        let _ = self.service.wait();
        // Deleting the namespace deletes its end of the pair, and so the pair.
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.ns])
            .status();
    }
}

#[test]
fn egress_reaches_the_outside_and_never_the_host_or_other_instances() {
    let outside = Outside::start();
    // A host service on every address: the case a firewall must cover.
    let host_service = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = host_service.local_addr().unwrap().port();
    let s = Server::start(
        "egress",
        &format!(
            "{}{}{}",
            hostile("out", "network = \"egress\""),
            hostile("peer", "network = \"egress\""),
            hostile("closed", "")
        ),
    );
    let talk = |function: &str, addr: String| {
        invoke(&s, function, &json!({"action": "talk", "addr": addr}))
    };
    let reached = talk("out", outside.addr.to_string());
    assert_eq!(reached["answer"], "outside\n", "{reached}");
    let closed = talk("closed", outside.addr.to_string());
    assert_eq!(closed["error"], "ENETUNREACH", "{closed}");

    let me = invoke(
        &s,
        "out",
        &json!({"action": "whoami", "toward": outside.addr.ip().to_string()}),
    );
    let my_ip: std::net::Ipv4Addr = me["ip"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        my_ip.octets()[0],
        100,
        "an address of its own in 100.64.0.0/10: {me}"
    );
    let my_gateway = std::net::Ipv4Addr::from(u32::from(my_ip) - 1);
    for target in [
        format!("{my_gateway}:{port}"),
        format!("{}:{port}", outside.gateway),
        format!("{my_gateway}:{}", s.admin.port()),
        format!("{my_gateway}:{}", s.edge.port()),
    ] {
        let got = talk("out", target.clone());
        assert_eq!(
            got["error"], "EHOSTUNREACH",
            "refused by the firewall, not answered, at {target}: {got}"
        );
    }
    let peer = invoke(
        &s,
        "peer",
        &json!({"action": "listen", "port": 7000, "secs": 20, "toward": outside.addr.ip().to_string()}),
    );
    let peer_ip = peer["ip"].as_str().unwrap().to_string();
    assert_ne!(peer_ip, my_ip.to_string());
    let got = talk("out", format!("{peer_ip}:7000"));
    assert!(
        got.get("answer").is_none(),
        "reached another instance: {got}"
    );
    drop(host_service);
}

/// Starts `levee serve` as `nobody` under a seccomp filter that refuses
/// `unshare`, so neither root nor user namespaces are to be had.
#[allow(unsafe_code)]
fn serve_without_namespaces(dir: &std::path::Path) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let rules = [(libc::SYS_unshare, Vec::new())].into_iter().collect();
    let filter: seccompiler::BpfProgram = seccompiler::SeccompFilter::new(
        rules,
        seccompiler::SeccompAction::Allow,
        seccompiler::SeccompAction::Errno(libc::EPERM as u32),
        std::env::consts::ARCH.try_into().unwrap(),
    )
    .and_then(TryInto::try_into)
    .unwrap();
    let mut cmd = std::process::Command::new("setpriv");
    cmd.arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .args([
            "--clear-groups",
            "--",
            env!("CARGO_BIN_EXE_levee"),
            "serve",
            "--config",
        ])
        .arg(dir.join("levee.toml"))
        .env("LEVEE_ADMIN_TOKEN", support::ADMIN_TOKEN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: installing a filter only makes the seccomp syscalls on a
    // program built before the fork.
    unsafe {
        cmd.pre_exec(move || seccompiler::apply_filter(&filter).map_err(std::io::Error::other));
    }
    cmd.spawn().unwrap()
}

/// The first line of `stream` that contains `needle`, within 20 s.
fn line_with(stream: impl std::io::Read + Send + 'static, needle: &'static str) -> Option<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if line.contains(needle) {
                let _ = tx.send(line);
                return;
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20)).ok()
}

#[test]
fn without_root_or_user_namespaces_levee_refuses_to_start_functions() {
    let dir = support::scratch("refuse");
    std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
    let config = |extra: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\n{extra}\n{}",
            hello_function("f", "")
        )
    };
    std::fs::write(dir.join("levee.toml"), config("")).unwrap();
    let mut refused = serve_without_namespaces(&dir);
    let why = line_with(refused.stderr.take().unwrap(), "cannot be isolated");
    let _ = refused.kill();
    let status = refused.wait().unwrap();
    let why = why.expect("levee says why it will not start functions");
    assert!(
        why.contains("isolation = \"none\""),
        "and what to do: {why}"
    );
    assert!(!status.success(), "{status}");
    // Said explicitly, unisolated instances are what the operator asked for.
    std::fs::write(dir.join("levee.toml"), config("isolation = \"none\"")).unwrap();
    let mut serving = serve_without_namespaces(&dir);
    let edge = line_with(serving.stdout.take().unwrap(), "edge listening");
    let _ = serving.kill();
    let _ = serving.wait();
    assert!(edge.is_some(), "levee serves unisolated when told to");
    let _ = std::fs::remove_dir_all(&dir);
}
