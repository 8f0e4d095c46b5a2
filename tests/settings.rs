//! Settings: the shipped file loads and matches the built-in defaults, layering order holds, and
//! bad keys and values are errors that name the key.

mod common;

use autotuned::settings::Settings;
use common::root;

fn shipped() -> std::path::PathBuf {
    root().join("config/autotuned.toml")
}

#[test]
fn the_shipped_config_loads_and_documents_the_defaults() {
    let settings = Settings::load(Some(&shipped()), &[]).unwrap();
    assert_eq!(settings, Settings::default());
    assert_eq!(settings.model_path(), std::path::Path::new("models/autotune.onnx"));
}

#[test]
fn every_key_in_the_shipped_file_has_a_comment() {
    let text = std::fs::read_to_string(shipped()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.contains(" = ") && !line.starts_with('#') {
            assert!(i > 0 && lines[i - 1].starts_with('#'), "`{line}` has no comment above it");
        }
    }
}

#[test]
fn overrides_win_over_the_file() {
    let overrides = ["tuning.strength=0.25", "osc.bind=127.0.0.1:9100", "jack.connect_outputs=a:1, b:2"];
    let s = Settings::load(Some(&shipped()), &overrides.map(String::from)).unwrap();
    assert_eq!(s.tuning.strength, 0.25);
    assert_eq!(s.osc.bind, "127.0.0.1:9100");
    assert_eq!(s.jack.connect_outputs, ["a:1", "b:2"]);
}

#[test]
fn bad_keys_and_values_name_the_key() {
    let err = |o: &str| Settings::load(Some(&shipped()), &[o.into()]).unwrap_err().to_string();
    assert!(err("tuning.strength=1.5").contains("`tuning.strength`"));
    assert!(err("tuning.retune_ms=5000").contains("`tuning.retune_ms`"));
    assert!(err("tuning.tuning_hz=300").contains("`tuning.tuning_hz`"));
    assert!(err("tuning.mode=sideways").contains("`tuning.mode`"));
    assert!(err("osc.bind=nowhere").contains("`osc.bind`"));
    assert!(err("osc.root=autotune").contains("`osc.root`"));
    assert!(err("model.file=../../etc/passwd").contains("`model.file`"));
    assert!(err("log.level=loud").contains("`log.level`"));
    let unknown = err("tuning.colour=blue");
    assert!(unknown.contains("colour") && unknown.contains("tuning"), "{unknown}");
    assert!(err("no-equals-sign").contains("key=value"));
}

#[test]
fn broken_files_are_clear_errors() {
    let dir = std::env::temp_dir().join(common::unique("at-settings"));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[tuning\nstrength = ").unwrap();
    let e = Settings::load(Some(&bad), &[]).unwrap_err().to_string();
    assert!(e.contains("bad.toml") || e.contains("TOML"), "{e}");
    let unknown_section = dir.join("unknown.toml");
    std::fs::write(&unknown_section, "[midi]\nport = 1\n").unwrap();
    assert!(Settings::load(Some(&unknown_section), &[]).unwrap_err().to_string().contains("midi"));
    assert!(Settings::load(Some(&dir.join("missing.toml")), &[]).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_environment_sits_between_the_file_and_the_flags() {
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_autotuned"))
            .current_dir(root())
            .env("AUTOTUNED_TUNING__STRENGTH", "7")
            .args(["--config", "config/autotuned.toml"])
            .args(extra)
            .args(["check-model", "tests/fixtures/identity.onnx"])
            .output()
            .unwrap()
    };
    let from_env = run(&[]);
    assert!(!from_env.status.success());
    assert!(String::from_utf8_lossy(&from_env.stderr).contains("`tuning.strength` = 7"));
    assert!(run(&["--set", "tuning.strength=0.5"]).status.success());
}

#[test]
fn corrupt_truncated_empty_and_unreadable_configs_each_give_one_clear_error() {
    let dir = std::env::temp_dir().join(common::unique("at-config"));
    std::fs::create_dir_all(&dir).unwrap();
    let shipped_text = std::fs::read_to_string(shipped()).unwrap();
    let cases = [
        ("corrupt.toml", "[tuning]\nstrength = = 1\n".to_owned(), "corrupt.toml"),
        (
            "truncated.toml",
            shipped_text[..shipped_text.find("strength = 1.0").unwrap() + 10].to_owned(),
            "truncated.toml",
        ),
        ("empty.toml", "\n".to_owned(), "is empty"),
        ("wrong.toml", "[tuning]\nstrength = \"loud\"\n".to_owned(), "wrong.toml"),
    ];
    for (name, text, expected) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let e = Settings::load(Some(&path), &[]).unwrap_err().to_string();
        assert!(e.starts_with("settings: ") && e.contains(expected), "{name}: {e}");
    }
    let unreadable = dir.join("a-directory.toml");
    std::fs::create_dir_all(&unreadable).unwrap();
    let e = Settings::load(Some(&unreadable), &[]).unwrap_err().to_string();
    assert!(e.contains("cannot read") && e.contains("a-directory.toml"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}
