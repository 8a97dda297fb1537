//! Exhausted file descriptors (issue 21, item 3): levee runs with a low
//! `RLIMIT_NOFILE` (through `prlimit`) and a storm of connections takes
//! every descriptor it has. Accepting then fails; the loop must back off
//! instead of spinning a core, say so without flooding the log, keep the
//! connections it already has working, and serve again by itself once
//! descriptors free up. Loops are bounded in count and time.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::{hello_function, Server};

/// One keep-alive GET on `s`; its status, reading exactly the answer.
fn get_on(s: &mut TcpStream, path: &str) -> Option<u16> {
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let len: usize = text[..end]
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if raw.len() >= end + 4 + len {
            return text.get(9..12)?.parse().ok();
        }
    }
}

fn connect(edge: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(edge).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// User plus system CPU seconds the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn out_of_descriptors_the_edge_backs_off_keeps_its_connections_and_recovers() {
    const LIMIT: u32 = 512;
    let s = Server::start_with_open_files(
        "descriptors",
        &format!(
            "[limits]\nmax_connections_per_ip = 10000\nheader_timeout = \"120s\"\nidle_timeout = \"300s\"\n\n{}\n[[routes]]\nroute = \"GET /f\"\nfunction = \"f\"\n",
            hello_function("f", "timeout = \"10s\"")
        ),
        LIMIT,
    );
    // Long head and idle timeouts: neither the storm nor the client that
    // was here first may be closed by them while the test looks.
    let pid = s.pid();
    // A client that was here first, on a warm instance.
    let mut kept = connect(s.edge);
    assert_eq!(get_on(&mut kept, "/f"), Some(200));
    let before = open_files(pid);

    // The storm: more connections than levee has descriptors left. The
    // kernel completes them into the listen backlog; accepting fails.
    let mut storm = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while open_files(pid) < LIMIT as usize - 2
        && storm.len() < 4 * LIMIT as usize
        && Instant::now() < deadline
    {
        if let Ok(c) = TcpStream::connect_timeout(&s.edge, Duration::from_secs(2)) {
            storm.push(c);
        }
    }
    // And more than it can take: these wait in the backlog.
    storm.extend(
        (0..100).filter_map(|_| TcpStream::connect_timeout(&s.edge, Duration::from_secs(2)).ok()),
    );
    let full = s.wait_until(Duration::from_secs(5), || {
        open_files(pid) >= LIMIT as usize - 2
    });
    assert!(
        full,
        "levee never ran out: {} of {LIMIT} open after {} storm connections",
        open_files(pid),
        storm.len()
    );

    // Refusing costs little: no spinning on EMFILE.
    let (cpu, started) = (cpu_seconds(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let share = (cpu_seconds(pid) - cpu) / started.elapsed().as_secs_f64();
    eprintln!(
        "{} storm connections; open files {before} → {}; CPU while out of descriptors: {:.1} % of a core",
        storm.len(),
        open_files(pid),
        share * 100.0
    );
    assert!(
        share < 0.5,
        "the accept loop spins: {:.0} % of a core",
        share * 100.0
    );
    // The connection that was already open is still served.
    assert_eq!(get_on(&mut kept, "/f"), Some(200));
    // Said, not shouted: one warning per 10 s at most.
    let warnings = s.stderr().matches("accept failed").count();
    assert!((1..=2).contains(&warnings), "{warnings} accept warnings");

    // Descriptors come back: new clients are served again.
    drop(storm);
    let served = s.wait_until(Duration::from_secs(20), || {
        let mut c = connect(s.edge);
        get_on(&mut c, "/f") == Some(200)
    });
    assert!(served, "levee did not recover");
}
