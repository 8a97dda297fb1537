//! HTTPS on the edge and admin listeners, with certificates made by the real
//! `openssl` and spoken to by the real `curl` and rustls clients: SNI, ALPN
//! (HTTP/2), TLS 1.2, the cleartext redirect, reload under an open
//! connection, mutual TLS into `requestContext`, non-TLS bytes, a silent
//! client, and a handshake flood from many loopback addresses beside
//! legitimate clients. Every loop is bounded in count and time.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::pki::{self, Pair};
use support::{curl, get, hello_function, scratch, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// `[tls]` with `certs` (cert, key) and `extra` keys, a hello function on
/// `ANY /echo` (it echoes the event) and `GET /hello/{name}`.
fn tls_config(certs: &[&Pair], extra: &str) -> String {
    let list: Vec<String> = certs
        .iter()
        .map(|p| {
            format!(
                "{{ cert = \"{}\", key = \"{}\" }}",
                p.cert.display(),
                p.key.display()
            )
        })
        .collect();
    format!(
        "[tls]\nlisten = \"127.0.0.1:0\"\ncertificates = [{}]\n{extra}\n\n{}\n\
         [[routes]]\nroute = \"ANY /echo\"\nfunction = \"f\"\n\n\
         [[routes]]\nroute = \"GET /hello/{{name}}\"\nfunction = \"f\"\n",
        list.join(", "),
        hello_function("f", "timeout = \"10s\"")
    )
}

fn https(s: &Server) -> SocketAddr {
    s.https.expect("levee printed its HTTPS address")
}

/// curl over HTTPS to `name` (resolved to the listener), trusting `ca`.
fn curl_https(s: &Server, ca: &Path, name: &str, path: &str, extra: &[&str]) -> (i32, String) {
    let port = https(s).port();
    let resolve = format!("{name}:{port}:127.0.0.1");
    let url = format!("https://{name}:{port}{path}");
    let ca = ca.display().to_string();
    let mut args = vec!["--cacert", &ca, "--resolve", &resolve];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

fn roots(ca: &Path) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(roots)
}

fn client(ca: &Path, identity: Option<&Pair>) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca));
    let mut config = match identity {
        Some(p) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(&p.cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(&p.key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// A TCP connection from `src`.
async fn connect_from(src: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((src, 0)))?;
    socket.connect(to).await
}

/// A finished handshake from `src` for `name`, within 10 s.
async fn handshake(
    tls: &TlsConnector,
    src: Ipv4Addr,
    to: SocketAddr,
    name: &str,
) -> Result<TlsStream<TcpStream>, String> {
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let attempt = async {
        let tcp = connect_from(src, to).await.map_err(|e| e.to_string())?;
        tls.connect(name, tcp).await.map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .map_err(|_| "handshake timed out".to_owned())?
}

/// One keep-alive GET on an open TLS stream; the status.
async fn get_on(stream: &mut TlsStream<TcpStream>, path: &str) -> Result<u16, String> {
    let head = format!("GET {path} HTTP/1.1\r\nhost: a.test\r\n\r\n");
    let exchange = async {
        stream.write_all(head.as_bytes()).await?;
        // Read the head, then exactly content-length bytes.
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::other("closed"));
            }
            raw.extend_from_slice(&buf[..n]);
            let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if raw.len() >= end + 4 + len {
                return Ok(head[9..12].parse().unwrap_or(0));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .map_err(|_| "request timed out".to_owned())?
        .map_err(|e| e.to_string())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The value of the first metrics line starting with `prefix`, or 0.
fn metric(s: &Server, prefix: &str) -> f64 {
    let text = s.admin("GET", "/metrics", b"").text();
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn https_chooses_certificates_by_sni_speaks_h2_and_tls12_and_redirects_cleartext() {
    let dir = scratch("tls-sni");
    let ca = pki::ca(&dir, "ca");
    let a = pki::leaf(&ca, "a", "a.test", &["DNS:a.test"], "serverAuth");
    let b = pki::leaf(
        &ca,
        "b",
        "b.test",
        &["DNS:b.test", "DNS:*.b.test"],
        "serverAuth",
    );
    let s = Server::start("tls-sni", &tls_config(&[&a, &b], "redirect = true"));

    // Each name gets its own certificate: curl verifies the name.
    for name in ["a.test", "b.test", "x.b.test"] {
        let (code, body) = curl_https(&s, &ca.cert, name, "/hello/tls", &[]);
        assert_eq!(code, 0, "{name}: curl failed");
        assert!(body.contains("tls"), "{name}: {body}");
    }
    // A name no certificate holds gets the first (a.test), which is not
    // valid for it.
    let rt = runtime();
    let err = rt
        .block_on(handshake(
            &client(&ca.cert, None),
            Ipv4Addr::LOCALHOST,
            https(&s),
            "c.test",
        ))
        .unwrap_err();
    assert!(err.contains("only valid for DnsName(\"a.test\")"), "{err}");

    // openssl s_client and Python's ssl verify the same choices.
    let connect = format!("127.0.0.1:{}", https(&s).port());
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &connect, "-servername", "b.test"])
        .args([
            "-verify_hostname",
            "b.test",
            "-verify_return_error",
            "-CAfile",
        ])
        .arg(&ca.cert)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    assert!(text.contains("CN = b.test"), "{text}");
    let script = "import socket, ssl, sys\n\
        ctx = ssl.create_default_context(cafile=sys.argv[1])\n\
        ctx.set_alpn_protocols(['http/1.1'])\n\
        with socket.create_connection(('127.0.0.1', int(sys.argv[2])), timeout=10) as raw:\n\
        \x20   with ctx.wrap_socket(raw, server_hostname='a.test') as tls:\n\
        \x20       tls.sendall(b'GET /hello/py HTTP/1.1\\r\\nhost: a.test\\r\\nconnection: close\\r\\n\\r\\n')\n\
        \x20       answer, version = b'', tls.version()\n\
        \x20       while chunk := tls.recv(65536):\n\
        \x20           answer += chunk\n\
        print(version, answer.split(b'\\r\\n')[0].decode())\n";
    let out = std::process::Command::new(support::python())
        .args(["-c", script])
        .arg(&ca.cert)
        .arg(https(&s).port().to_string())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "TLSv1.3 HTTP/1.1 200 OK",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // ALPN offers h2; TLS 1.2 still works.
    let (code, version) = curl_https(
        &s,
        &ca.cert,
        "a.test",
        "/hello/x",
        &["--http2", "-o", "/dev/null", "-w", "%{http_version}"],
    );
    assert_eq!((code, version.as_str()), (0, "2"));
    let (code, version) = curl_https(
        &s,
        &ca.cert,
        "a.test",
        "/hello/x",
        &[
            "--tlsv1.2",
            "--tls-max",
            "1.2",
            "--http1.1",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
        ],
    );
    assert_eq!((code, version.as_str()), (0, "1.1"));

    // The cleartext listener only redirects, keeping host, path and query.
    let url = format!("http://{}/hello/x?y=1", s.edge);
    let (code, answer) = curl(&[
        "-H",
        "host: a.test:8080",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        &url,
    ]);
    let port = https(&s).port();
    assert_eq!(code, 0);
    assert_eq!(answer, format!("308 https://a.test:{port}/hello/x?y=1"));
}

#[test]
fn non_tls_bytes_and_silent_clients_are_closed_and_counted() {
    let dir = scratch("tls-hostile");
    let ca = pki::ca(&dir, "ca");
    let a = pki::leaf(&ca, "a", "a.test", &["DNS:a.test"], "serverAuth");
    let s = Server::start(
        "tls-hostile",
        &format!(
            "[limits]\nhandshake_timeout = \"1s\"\n\n{}",
            tls_config(&[&a], "")
        ),
    );
    let rt = runtime();
    rt.block_on(async {
        // Plain HTTP on the TLS port: no HTTP answer, the connection ends.
        let mut plain = connect_from(Ipv4Addr::LOCALHOST, https(&s)).await.unwrap();
        plain
            .write_all(b"GET / HTTP/1.1\r\nhost: a.test\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut got)).await;
        assert!(read.is_ok(), "the connection was not closed");
        assert!(
            !got.starts_with(b"HTTP/"),
            "{:?}",
            String::from_utf8_lossy(&got)
        );

        // A client that sends nothing is closed at handshake_timeout.
        let started = Instant::now();
        let mut silent = connect_from(Ipv4Addr::LOCALHOST, https(&s)).await.unwrap();
        let mut buf = [0u8; 16];
        let closed = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
        assert!(started.elapsed() >= Duration::from_millis(900));
    });
    // Garbage and huge "certificates" from a client never reach a panic:
    // the server still serves.
    let (code, _) = curl_https(&s, &ca.cert, "a.test", "/hello/ok", &[]);
    assert_eq!(code, 0);
    let failed = "levee_tls_handshakes_total{listener=\"edge_tls\",outcome=\"failed\"}";
    let timeout = "levee_tls_handshakes_total{listener=\"edge_tls\",outcome=\"timeout\"}";
    assert!(metric(&s, failed) >= 1.0);
    assert!(metric(&s, timeout) >= 1.0);
}

#[test]
fn certificates_reload_while_an_open_connection_keeps_being_served() {
    let dir = scratch("tls-reload");
    let old_ca = pki::ca(&dir, "old-ca");
    let new_ca = pki::ca(&dir, "new-ca");
    let live = pki::leaf(&old_ca, "live", "a.test", &["DNS:a.test"], "serverAuth");
    let s = Server::start("tls-reload", &tls_config(&[&live], ""));
    let rt = runtime();
    let mut open = rt
        .block_on(handshake(
            &client(&old_ca.cert, None),
            Ipv4Addr::LOCALHOST,
            https(&s),
            "a.test",
        ))
        .unwrap();
    assert_eq!(rt.block_on(get_on(&mut open, "/hello/one")), Ok(200));

    // A broken file refuses the reload and changes nothing.
    let good = std::fs::read(&live.cert).unwrap();
    std::fs::write(&live.cert, b"not a certificate").unwrap();
    let r = s.admin("POST", "/admin/reload", b"");
    assert_ne!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("CERTIFICATE"), "{}", r.text());
    std::fs::write(&live.cert, good).unwrap();
    assert_eq!(curl_https(&s, &old_ca.cert, "a.test", "/hello/x", &[]).0, 0);

    // The same files now hold a certificate from another CA.
    let next = pki::leaf(&new_ca, "next", "a.test", &["DNS:a.test"], "serverAuth");
    std::fs::copy(&next.cert, &live.cert).unwrap();
    std::fs::copy(&next.key, &live.key).unwrap();
    let r = s.admin("POST", "/admin/reload", b"");
    assert_eq!(r.status, 200, "{}", r.text());

    // The open connection is still served; new ones get the new certificate.
    assert_eq!(rt.block_on(get_on(&mut open, "/hello/two")), Ok(200));
    assert_eq!(curl_https(&s, &new_ca.cert, "a.test", "/hello/x", &[]).0, 0);
    assert_ne!(curl_https(&s, &old_ca.cert, "a.test", "/hello/x", &[]).0, 0);
}

#[test]
fn mutual_tls_hands_the_verified_client_certificate_to_the_function() {
    let dir = scratch("tls-mutual");
    let ca = pki::ca(&dir, "ca");
    let clients = pki::ca(&dir, "clients");
    let strangers = pki::ca(&dir, "strangers");
    let server = pki::leaf(&ca, "a", "a.test", &["DNS:a.test"], "serverAuth");
    let alice = pki::leaf(
        &clients,
        "alice",
        "alice",
        &["DNS:alice.test", "URI:spiffe://levee/alice"],
        "clientAuth",
    );
    let mallory = pki::leaf(
        &strangers,
        "mallory",
        "mallory",
        &["DNS:m.test"],
        "clientAuth",
    );
    let s = Server::start(
        "tls-mutual",
        &tls_config(
            &[&server],
            &format!("client_ca = \"{}\"", clients.cert.display()),
        ),
    );
    let with = |p: &Pair| {
        let (cert, key) = (p.cert.display().to_string(), p.key.display().to_string());
        curl_https(
            &s,
            &ca.cert,
            "a.test",
            "/echo",
            &["--cert", &cert, "--key", &key],
        )
    };
    let (code, body) = with(&alice);
    assert_eq!(code, 0, "alice refused");
    let event: serde_json::Value = serde_json::from_str(&body).unwrap();
    let cert = &event["requestContext"]["authentication"]["clientCert"];
    assert!(
        cert["subjectDN"].as_str().unwrap().contains("CN=alice"),
        "{cert}"
    );
    assert!(cert["issuerDN"].as_str().unwrap().contains("CN=clients"));
    assert!(cert["clientCertPem"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(cert["serialNumber"].as_str().unwrap().contains(':'));
    assert!(cert["validity"]["notAfter"]
        .as_str()
        .unwrap()
        .ends_with(" GMT"));
    assert_eq!(
        cert["subjectAlternativeNames"],
        serde_json::json!(["DNS:alice.test", "URI:spiffe://levee/alice"])
    );
    // No certificate, or one from a CA not trusted: no handshake, no
    // invocation.
    let before = s.instances("f")["invocations"].clone();
    assert_ne!(with(&mallory).0, 0);
    assert_ne!(curl_https(&s, &ca.cert, "a.test", "/echo", &[]).0, 0);
    assert_eq!(s.instances("f")["invocations"].clone(), before);

    // client_auth = "optional": served without a certificate, and the
    // event says nothing of one.
    let optional = Server::start(
        "tls-mutual-optional",
        &tls_config(
            &[&server],
            &format!(
                "client_ca = \"{}\"\nclient_auth = \"optional\"",
                clients.cert.display()
            ),
        ),
    );
    let (code, body) = curl_https(&optional, &ca.cert, "a.test", "/echo", &[]);
    assert_eq!(code, 0);
    let event: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(event["requestContext"].get("authentication").is_none());
}

#[test]
fn the_admin_listener_speaks_https_and_levee_check_reads_the_certificates() {
    let dir = scratch("tls-admin");
    let ca = pki::ca(&dir, "ca");
    let admin = pki::leaf(&ca, "admin", "levee-admin", &["IP:127.0.0.1"], "serverAuth");
    let s = Server::start(
        "tls-admin",
        &format!(
            "[admin_tls]\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n",
            admin.cert.display(),
            admin.key.display()
        ),
    );
    assert!(s
        .printed
        .iter()
        .any(|l| l.starts_with("levee: admin listening on https://")));
    let ca_path = ca.cert.display().to_string();
    let url = format!("https://{}/healthz", s.admin);
    let (code, body) = curl(&["--cacert", &ca_path, &url]);
    assert_eq!(code, 0, "{body}");
    // The CLI speaks HTTPS to it, trusting the CA it is given.
    let cli = |ca: Option<&Path>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_levee"));
        cmd.args(["plans", "--admin", &format!("https://{}", s.admin)])
            .args(["--token", support::ADMIN_TOKEN]);
        if let Some(ca) = ca {
            cmd.arg("--admin-ca").arg(ca);
        }
        cmd.output().unwrap()
    };
    let out = cli(Some(&ca.cert));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let untrusted = cli(None);
    assert!(!untrusted.status.success());
    assert!(
        String::from_utf8_lossy(&untrusted.stderr).contains("TLS"),
        "{}",
        String::from_utf8_lossy(&untrusted.stderr)
    );
    // Cleartext on the admin port gets no answer.
    assert_ne!(curl(&[&format!("http://{}/healthz", s.admin)]).0, 0);

    // `levee check` loads the files as `serve` would.
    let other = pki::leaf(&ca, "other", "other", &["DNS:other.test"], "serverAuth");
    for (cert, key, says) in [
        (&admin.cert, &other.key, "does not belong"),
        (&admin.key, &admin.key, "no CERTIFICATE block"),
    ] {
        let config = dir.join("check.toml");
        std::fs::write(
            &config,
            format!(
                "[tls]\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n",
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_levee"))
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains("tls") && stderr.contains(says), "{stderr}");
    }
}

/// A handshake flood from many loopback addresses — 1,500 silent
/// connections that never say hello from 150 addresses, and full
/// handshakes as fast as 8 addresses can make them — beside legitimate
/// clients making a fresh HTTPS connection per request from addresses of
/// their own. The bounds refuse the flood before certificate work; the
/// legitimate clients keep ≥ 99.9 % success.
#[test]
fn a_handshake_flood_is_refused_before_certificate_work_and_clients_are_served() {
    let dir = scratch("tls-flood");
    let ca = pki::ca(&dir, "ca");
    let a = pki::leaf(&ca, "a", "a.test", &["DNS:a.test"], "serverAuth");
    let s = Server::start(
        "tls-flood",
        &format!(
            "[limits]\nhandshake_timeout = \"2s\"\nmax_handshakes_per_ip = 4\nhandshake_rate_per_ip = 20\n\n{}",
            tls_config(&[&a], "")
        ),
    );
    let to = https(&s);
    // Warm one instance so the first legitimate answers are not a cold start.
    assert_eq!(get(s.edge, "/hello/warm").status, 200);
    let rt = runtime();
    let (ok, total) = rt.block_on(async {
        let tls = client(&ca.cert, None);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut attack = Vec::new();
        // Silent holders: 10 connections from each of 150 addresses.
        for i in 0..150u32 {
            let stop = Arc::clone(&stop);
            attack.push(tokio::spawn(async move {
                let src = Ipv4Addr::new(127, 1, (i / 200) as u8, (i % 200) as u8 + 1);
                let mut held = Vec::new();
                for _ in 0..10 {
                    if let Ok(c) = connect_from(src, to).await {
                        held.push(c);
                    }
                }
                let deadline = Instant::now() + Duration::from_secs(30);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                drop(held);
            }));
        }
        // Full handshakes, as fast as each of 8 addresses can.
        for i in 0..8u8 {
            let (tls, stop) = (tls.clone(), Arc::clone(&stop));
            attack.push(tokio::spawn(async move {
                let src = Ipv4Addr::new(127, 2, 0, i + 1);
                let deadline = Instant::now() + Duration::from_secs(30);
                for _ in 0..100_000 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) || Instant::now() > deadline
                    {
                        break;
                    }
                    let _ = handshake(&tls, src, to, "a.test").await;
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Legitimate clients: 1,000 requests, each a fresh connection from
        // one of 250 addresses, 4 at a time.
        let mut clients = Vec::new();
        for c in 0..4u32 {
            let tls = tls.clone();
            clients.push(tokio::spawn(async move {
                let mut ok = 0u32;
                for n in 0..250u32 {
                    let src = Ipv4Addr::new(127, 3, c as u8, (n % 250) as u8 + 1);
                    if let Ok(mut stream) = handshake(&tls, src, to, "a.test").await {
                        if get_on(&mut stream, "/hello/client").await == Ok(200) {
                            ok += 1;
                        }
                    }
                }
                ok
            }));
        }
        let mut ok = 0;
        for c in clients {
            ok += c.await.unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in attack {
            let _ = t.await;
        }
        (ok, 1000u32)
    });
    assert!(
        f64::from(ok) >= 0.999 * f64::from(total),
        "{ok} of {total} legitimate requests served"
    );
    let refused = |reason: &str| {
        metric(
            &s,
            &format!(
                "levee_connections_refused_total{{listener=\"edge_tls\",reason=\"{reason}\"}}"
            ),
        )
    };
    let (per_ip, rate) = (
        refused("max_handshakes_per_ip"),
        refused("handshake_rate_per_ip"),
    );
    eprintln!("legitimate: {ok} of {total} served; refused at accept: {per_ip} by max_handshakes_per_ip, {rate} by handshake_rate_per_ip");
    assert!(per_ip >= 1.0 && rate >= 1.0);
    // The server is still answering afterwards.
    assert_eq!(curl_https(&s, &ca.cert, "a.test", "/hello/after", &[]).0, 0);
}
