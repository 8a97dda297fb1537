//! The command line: `levee check`, and config errors that name the key and
//! line with exit status 2, for `check` and `serve` alike.

mod support;

use std::process::Command;

use support::{scratch, workspace};

fn levee(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_levee"))
        .args(args)
        .output()
        .expect("running levee");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_example_config_checks_clean() {
    let config = workspace().join("levee.toml");
    let (code, stdout, stderr) = levee(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("ok (2 functions, 3 routes)"), "{stdout}");
    // Run as root, as the tests are: every layer, with the default uid range.
    assert!(
        stdout.contains("isolation: namespaces (a uid per instance from 200000..=265535")
            && stdout.contains("seccomp filter"),
        "{stdout}"
    );
}

#[test]
fn bad_configs_exit_2_naming_every_key_and_line() {
    let dir = scratch("badconfig");
    let config = dir.join("levee.toml");
    std::fs::write(
        &config,
        format!(
            r#"[functions.a]
command = ["/bin/true"]
code = "{code}"
timeout = "3 parsecs"

[functions.b]
command = ["/bin/true"]
code = "{code}"
memroy_mb = 256

[[routes]]
route = "GET /x/{{id}}"
function = "a"

[[routes]]
route = "GET /x/{{other}}"
function = "a"

[[routes]]
route = "GET /y"
function = "missing"
"#,
            code = dir.display()
        ),
    )
    .unwrap();
    for cmd in ["check", "serve"] {
        let (code, stdout, stderr) = levee(&[cmd, "--config", config.to_str().unwrap()]);
        assert_eq!(code, 2, "{cmd}: {stdout}{stderr}");
        for needle in [
            ":4: functions.a.timeout",
            ":9: functions.b",
            "memroy_mb",
            ":16: routes[1]",
            "overlaps",
            ":21: routes[2].function",
            "missing",
        ] {
            assert!(
                stderr.contains(needle),
                "{cmd}: `{needle}` not in:\n{stderr}"
            );
        }
    }
}

#[test]
fn a_code_directory_holding_the_data_dir_is_refused() {
    let dir = scratch("code-holds-data");
    let config = dir.join("levee.toml");
    std::fs::write(
        &config,
        "[server]\ndata_dir = \"state/levee\"\n\n[functions.f]\ncommand = [\"/bin/true\"]\ncode = \".\"\n",
    )
    .unwrap();
    let (code, stdout, stderr) = levee(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains(":6: functions.f.code") && stderr.contains("holds server.data_dir"),
        "{stderr}"
    );
    assert!(
        !dir.join("state").exists(),
        "check must not create the data dir"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let (code, _, stderr) = levee(&["check", "--config", "/nonexistent/levee.toml"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/levee.toml"), "{stderr}");
}

#[test]
fn aws_waf_web_acls_import_into_a_config_that_checks() {
    let acl = workspace().join("crates/levee-shield/src/firewall/testdata/web-acl.json");
    let (code, toml, notes) = levee(&["firewall", "import", acl.to_str().unwrap()]);
    assert_eq!(code, 0, "{notes}");
    assert!(toml.contains("[[firewall.rules]]"), "{toml}");
    assert!(
        notes.contains("GeoMatchStatement"),
        "unconvertible parts are listed: {notes}"
    );
    let dir = scratch("wafimport");
    let config = dir.join("levee.toml");
    std::fs::write(
        &config,
        format!("{}\n{toml}", support::hello_function("f", "")),
    )
    .unwrap();
    let (code, stdout, stderr) = levee(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "imported rules must validate: {stdout}{stderr}");

    std::fs::write(dir.join("bad.json"), "{\"not\": \"an acl\"}").unwrap();
    let (code, _, stderr) = levee(&["firewall", "import", dir.join("bad.json").to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn a_second_server_on_the_same_data_dir_stops_before_touching_it() {
    let body =
        support::hello_function("f", "") + "\n[[routes]]\nroute = \"GET /f\"\nfunction = \"f\"\n";
    let first = support::Server::start("twice", &body);
    assert_eq!(support::get(first.edge, "/f").status, 200);
    let instances = first.dir.join("data/functions/f/code");
    let listing = || {
        let mut names: Vec<_> = std::fs::read_dir(&instances)
            .map(|d| d.filter_map(|e| Some(e.ok()?.file_name())).collect())
            .unwrap_or_default();
        names.sort();
        names
    };
    let before = listing();
    assert!(!before.is_empty(), "the staged code is in place");
    let config = first.dir.join("levee.toml");
    let (code, _, stderr) = levee(&["serve", "--config", config.to_str().unwrap()]);
    assert_ne!(code, 0, "the second server must not start");
    assert!(stderr.contains("lock"), "{stderr}");
    assert_eq!(
        listing(),
        before,
        "the running server's staged code is untouched"
    );
    assert_eq!(support::get(first.edge, "/f").status, 200);
}

#[test]
fn check_warns_when_the_admin_listener_is_off_loopback() {
    let dir = scratch("checkwarn");
    let config = dir.join("levee.toml");
    std::fs::write(&config, "[server]\nadmin_listen = \"0.0.0.0:8081\"\n").unwrap();
    let (code, _, stderr) = levee(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "a warning, not an error: {stderr}");
    assert!(
        stderr.contains(
            "levee.toml:2: warning: server.admin_listen: 0.0.0.0:8081 is not a loopback address"
        ),
        "{stderr}"
    );
    std::fs::write(&config, "[server]\nadmin_listen = \"127.0.0.1:8081\"\n").unwrap();
    let (code, _, stderr) = levee(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!((code, stderr.as_str()), (0, ""));
}

#[test]
fn check_quotes_a_huge_key_short() {
    let dir = scratch("checkhuge");
    let config = dir.join("levee.toml");
    let key = "k".repeat(10 * 1024 * 1024);
    std::fs::write(&config, format!("[server]\n{key} = 1\n")).unwrap();
    let (code, stdout, stderr) = levee(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stdout.len() + stderr.len() < 4096, "{} bytes", stderr.len());
    assert!(stderr.contains("unknown field"), "{stderr:.300}");
}
