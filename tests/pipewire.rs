//! PipeWire's JACK layer for real: a headless PipeWire (no D-Bus, no session manager, a dummy
//! driver) in a private runtime directory, with the daemon and a JACK test client on it through
//! `pw-jack`, at two quanta.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use rosc::OscType;

/// The quantum the client half runs at; set only by the test that starts it under `pw-jack`.
const QUANTUM_VARIABLE: &str = "AUTOTUNED_TEST_PIPEWIRE_QUANTUM";

/// What a studio's PipeWire has for JACK clients, minus devices and session management:
/// the native protocol, client nodes, links, metadata, and a dummy driver to clock the graph.
const CONFIG: &str = r#"
context.properties = {
    core.daemon = true
    core.name = pipewire-0
    support.dbus = false
    default.clock.rate = 44100
    default.clock.quantum = 512
    default.clock.min-quantum = 32
    default.clock.max-quantum = 2048
}
context.spa-libs = {
    audio.convert.* = audioconvert/libspa-audioconvert
    support.* = support/libspa-support
}
context.modules = [
    { name = libpipewire-module-protocol-native }
    { name = libpipewire-module-metadata }
    { name = libpipewire-module-spa-node-factory }
    { name = libpipewire-module-client-node }
    { name = libpipewire-module-access }
    { name = libpipewire-module-adapter }
    { name = libpipewire-module-link-factory }
]
context.objects = [
    { factory = metadata args = { metadata.name = default } }
    { factory = spa-node-factory
        args = {
            factory.name = support.node.driver
            node.name = Dummy-Driver
            node.group = pipewire.dummy
            priority.driver = 20000
        }
    }
]
"#;

/// A private PipeWire server, stopped and its runtime directory removed on drop.
struct PipeWire {
    child: Child,
    runtime_dir: PathBuf,
}

impl PipeWire {
    fn start() -> PipeWire {
        let runtime_dir = std::env::temp_dir().join(unique("at-pipewire"));
        std::fs::create_dir(&runtime_dir).unwrap();
        let config = runtime_dir.join("pipewire.conf");
        std::fs::write(&config, CONFIG).unwrap();
        let child = Command::new("pipewire")
            .arg("-c")
            .arg(&config)
            .env("XDG_RUNTIME_DIR", &runtime_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pipewire (apt install pipewire-jack)");
        let server = PipeWire { child, runtime_dir };
        wait_for(Duration::from_secs(10), "PipeWire's socket", || server.runtime_dir.join("pipewire-0").exists());
        server
    }
}

impl Drop for PipeWire {
    fn drop(&mut self) {
        terminate(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.runtime_dir);
    }
}

/// The JACK library is chosen when a process starts, so each quantum runs the client half of
/// this test again in a new process of this binary, under `pw-jack`.
#[test]
fn corrects_a_voice_under_pipewire_at_quanta_512_and_256() {
    let pipewire = PipeWire::start();
    for quantum in [512, 256] {
        let out = Command::new("pw-jack")
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", "client_under_pw_jack", "--ignored", "--nocapture"])
            .env("XDG_RUNTIME_DIR", &pipewire.runtime_dir)
            .env("PIPEWIRE_QUANTUM", format!("{quantum}/{RATE}"))
            .env(QUANTUM_VARIABLE, quantum.to_string())
            .output()
            .expect("pw-jack (apt install pipewire-jack)");
        let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && log.contains("1 passed"), "quantum {quantum}:\n{log}");
    }
}

#[test]
#[ignore = "the client half of corrects_a_voice_under_pipewire_at_quanta_512_and_256, run by it under pw-jack"]
fn client_under_pw_jack() {
    let quantum: i32 = std::env::var(QUANTUM_VARIABLE)
        .expect("started by corrects_a_voice_under_pipewire_at_quanta_512_and_256")
        .parse()
        .unwrap();
    let daemon = Daemon::start_in(&root(), "", Some(&root().join("config/autotuned.toml")), &[], &[]);
    OscClient::new().send(daemon.osc, "/autotune/target/note", vec![OscType::Int(57)]);
    let status = daemon.status();
    assert_eq!(status[1], OscType::Int(RATE as i32), "status {status:?}");
    assert_eq!(status[2], OscType::Int(quantum), "the status reports the quantum as the period: {status:?}");

    *current_server() = String::new();
    let (tone, sung) = sharp_a3();
    let mut client = TestClient::start(&daemon.client, tone, 8);
    let mut recorded = Vec::new();
    client.record(3.0, &mut recorded);
    client.close();

    assert_lands_on_a3(&recorded, sung, &format!("under PipeWire at {quantum}"));
}
