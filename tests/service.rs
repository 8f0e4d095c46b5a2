//! The daemon as systemd and a person start it: readiness before any server answers, the
//! watchdog through a JACK outage (both through a test `NOTIFY_SOCKET`), start-up errors that
//! stop it with the path and reason, and paths that hold from any working directory.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use rosc::OscType;

/// A socket standing in for systemd's notification socket.
struct NotifySocket {
    path: PathBuf,
    socket: UnixDatagram,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let path = std::env::temp_dir().join(unique("at-notify"));
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        NotifySocket { path, socket }
    }

    /// Every message received within `how_long`.
    fn collect(&self, how_long: Duration) -> Vec<String> {
        let until = Instant::now() + how_long;
        let mut buffer = [0u8; 4096];
        let mut out = Vec::new();
        while Instant::now() < until {
            if let Ok(n) = self.socket.recv(&mut buffer) {
                out.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
            }
        }
        out
    }

    /// Waits for a message containing `text`; returns every message seen on the way.
    fn wait_for(&self, text: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            seen.extend(self.collect(Duration::from_millis(200)));
            if seen.iter().any(|m| m.contains(text)) {
                return seen;
            }
        }
        panic!("no notification with {text:?}; got {seen:?}");
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn state(daemon: &Daemon) -> String {
    match &daemon.status()[7] {
        OscType::String(s) => s.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ready_is_sent_before_any_server_answers() {
    let notify = NotifySocket::new();
    let socket = notify.path.to_str().unwrap().to_owned();
    let absent = unique("at-absent");
    let daemon = Daemon::start_in(&root(), &absent, None, &[], &[("NOTIFY_SOCKET", &socket)]);
    let seen = notify.wait_for("READY=1");
    let ready = seen.iter().find(|m| m.contains("READY=1")).unwrap();
    assert!(ready.contains("STATUS=waiting for the JACK server"), "{ready}");
    assert!(state(&daemon).starts_with("waiting_for_server"), "{}", state(&daemon));
}

#[test]
fn the_watchdog_is_fed_while_the_server_is_gone() {
    let _lock = jack_lock();
    let server = JackServer::start(44_100, 512);
    let notify = NotifySocket::new();
    let socket = notify.path.to_str().unwrap().to_owned();
    let daemon = Daemon::start(&server, None, &[], &[("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", "2000000")]);
    wait_for(Duration::from_secs(30), "the daemon to serve", || state(&daemon) == "running");
    let name = server.name.clone();
    drop(server);
    wait_for(Duration::from_secs(30), "the daemon to notice", || state(&daemon).starts_with("waiting_for_server"));
    let pings = notify.collect(Duration::from_secs(8)).iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(pings >= 6, "{pings} watchdog pings in 8 s without a server (WATCHDOG_USEC = 2 s)");
    let server = JackServer::start_named(&name, 44_100, 512);
    wait_for(Duration::from_secs(30), "the daemon to serve again", || state(&daemon) == "running");
    drop(server);
}

fn run_binary(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_autotuned"))
        .current_dir(dir)
        .env("JACK_NO_START_SERVER", "1")
        .args(["--set", &format!("jack.server_name={}", unique("at-absent"))])
        .args(["--set", "osc.bind=127.0.0.1:0"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_missing_or_broken_configured_model_stops_the_daemon_with_the_path_and_reason() {
    let config = root().join("config/autotuned.toml");
    let config = config.to_str().unwrap();
    let missing = run_binary(&root(), &["--config", config, "--set", "model.file=no-such-model.onnx"]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    let path = root().join("models/no-such-model.onnx");
    assert!(stderr.contains(&format!("cannot read model {}", path.display())), "{stderr}");
    assert_eq!(stderr.matches("no-such-model.onnx").count(), 1, "one message: {stderr}");

    let fixtures = root().join("tests/fixtures");
    let dir = format!("model.dir={}", fixtures.display());
    let broken = run_binary(&root(), &["--set", &dir, "--set", "model.file=wrong_shape.onnx"]);
    assert!(!broken.status.success());
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(stderr.contains("wrong_shape.onnx") && stderr.contains("tensor `audio_buffer`"), "{stderr}");
}

#[test]
fn the_shipped_config_works_from_another_directory() {
    let _lock = jack_lock();
    let server = JackServer::start(44_100, 512);
    let elsewhere = std::env::temp_dir().join(unique("at-elsewhere"));
    std::fs::create_dir_all(&elsewhere).unwrap();
    let config = root().join("config/autotuned.toml");
    let daemon = Daemon::start_in(&elsewhere, &server.name, Some(&config), &[], &[]);
    wait_for(Duration::from_secs(30), "the daemon to serve", || state(&daemon) == "running");
    let model = root().join("models/autotune.onnx");
    assert!(daemon.log().contains(&format!("from {}", model.display())), "the log names the absolute path");
    drop(daemon);
    std::fs::remove_dir_all(elsewhere).unwrap();
}

#[test]
fn wrapper_variables_are_warned_about_not_fatal() {
    let _lock = jack_lock();
    let server = JackServer::start(44_100, 512);
    let daemon = Daemon::start(&server, None, &[], &[("AUTOTUNED_CMD", "autotuned --verbose")]);
    daemon.wait_for_log("environment variable AUTOTUNED_CMD is not a setting and is ignored");
    assert_eq!(daemon.status()[0], OscType::String(env!("CARGO_PKG_VERSION").into()));
}
