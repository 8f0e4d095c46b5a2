//! The systemd units: the keys a studio deployment relies on, and `systemd-analyze --user
//! verify` (`make test` installs systemd and pipewire-jack, so both are always here).

mod common;

use std::process::Command;

use common::{root, unique};

fn unit(name: &str) -> String {
    std::fs::read_to_string(root().join("systemd").join(name)).unwrap()
}

#[test]
fn units_keep_real_time_and_talk_to_systemd() {
    for name in ["autotuned.service", "autotuned@.service"] {
        let text = unit(name);
        for key in [
            "Type=notify",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "Restart=on-failure",
            "WatchdogSec=",
            "LimitRTPRIO=",
            "LimitMEMLOCK=infinity",
            "Environment=PIPEWIRE_QUANTUM=512/44100",
            "NoNewPrivileges=yes",
            "SystemCallFilter=@system-service",
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
            "After=pipewire.service",
        ] {
            assert!(text.contains(key), "{name} lacks {key}");
        }
        let forbids = text.lines().any(|l| !l.starts_with('#') && l.trim() == "RestrictRealtime=yes");
        assert!(!forbids, "{name} forbids real time");
    }
    assert!(unit("autotuned@.service").contains("%i.toml"));
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let installed = Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(installed, "systemd-analyze is missing: `make apt` installs it (package systemd)");
    let runtime_dir = std::env::temp_dir().join(unique("at-xdg"));
    std::fs::create_dir_all(&runtime_dir).unwrap();
    // Templates verify as an instance.
    let instance = runtime_dir.join("autotuned@test.service");
    std::fs::write(&instance, unit("autotuned@.service")).unwrap();
    for path in [root().join("systemd/autotuned.service"), instance] {
        let out = Command::new("systemd-analyze")
            .args(["--user", "verify"])
            .arg(&path)
            .env("XDG_RUNTIME_DIR", &runtime_dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && stderr.trim().is_empty(), "{}: {stderr}", path.display());
    }
    std::fs::remove_dir_all(runtime_dir).unwrap();
}
