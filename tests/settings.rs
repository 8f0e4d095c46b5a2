//! Settings: the shipped file loads and matches the built-in defaults, layering order holds, and
//! bad keys and values are errors that name the key.

mod common;

use autotuned::parameters::{FORMANT_PRESERVE, OUT_CHANNEL, SCALE, STRENGTH, TRANSPOSE};
use autotuned::rt::MidiChannels;
use autotuned::scales::SCALA;
use autotuned::settings::Settings;
use common::root;

fn shipped() -> std::path::PathBuf {
    root().join("config/autotuned.toml")
}

#[test]
fn the_shipped_config_loads_and_documents_the_defaults() {
    let mut settings = Settings::load(Some(&shipped()), &[]).unwrap();
    // model.dir = "../models" is relative to the file, so it names the checkout's models.
    assert_eq!(settings.model_path(), root().join("models/autotune.onnx"));
    settings.model.dir = Settings::default().model.dir;
    assert_eq!(settings.scala.dir, root().join("config/scales"));
    settings.scala.dir = Settings::default().scala.dir;
    assert_eq!(settings, Settings::default());
}

#[test]
fn a_scala_setting_tunes_every_voice_and_a_bad_file_names_its_line() {
    let dir = std::env::temp_dir().join(common::unique("scales"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(root().join("config/scales/19-edo.scl"), dir.join("19-edo.scl")).unwrap();
    std::fs::write(dir.join("bad.scl"), "! bad.scl\nBroken\n3\n9/8\nfive/4\n2/1\n").unwrap();
    let load = |file: &str| {
        let overrides = [format!("tuning.scala_dir={}", dir.display()), format!("tuning.scala={file}")];
        Settings::load(Some(&shipped()), &overrides)
    };
    let s = load("19-edo.scl").unwrap();
    assert_eq!(s.params.get(SCALE) as usize, SCALA);
    assert_eq!((s.params.tuning.len, s.params.tuning.period), (19, 12.0));
    let err = load("bad.scl").unwrap_err().to_string();
    assert!(err.contains("`tuning.scala`") && err.contains("bad.scl, line 5"), "{err}");
    let err = load("../19-edo.scl").unwrap_err().to_string();
    assert!(err.contains("not a file name"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
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
    assert_eq!(s.params.get(STRENGTH), 0.25);
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

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn only_section_key_variables_are_settings_and_their_errors_name_the_variable() {
    let vars = env(&[("AUTOTUNED_CMD", "/usr/bin/autotuned"), ("AUTOTUNED_NOWHERE__KEY", "1")]);
    let s = Settings::load_with(Some(&shipped()), vars, &[]).unwrap();
    assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
    assert!(s.warnings[0].contains("AUTOTUNED_CMD") && s.warnings[0].contains("ignored"), "{:?}", s.warnings);

    let vars = env(&[("AUTOTUNED_TUNING__FORMANT_PRESERVE", "0.25")]);
    let s = Settings::load_with(Some(&shipped()), vars, &[]).unwrap();
    assert_eq!(s.params.get(FORMANT_PRESERVE), 0.25, "a new table row is a setting with no other change");

    for (name, value) in [("AUTOTUNED_TUNING__STRENGTH", "7"), ("AUTOTUNED_OSC__COLOUR", "blue")] {
        let e = Settings::load_with(Some(&shipped()), env(&[(name, value)]), &[]).unwrap_err().to_string();
        assert!(e.contains(&format!("environment variable {name}")), "{e}");
        assert!(!e.contains("autotuned.toml"), "the file is not to blame: {e}");
    }
}

#[test]
fn relative_paths_resolve_against_the_file_or_the_working_directory() {
    let dir = std::env::temp_dir().join(common::unique("at-paths"));
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    let file = dir.join("etc/autotuned.toml");
    std::fs::write(&file, "[model]\ndir = \"../share/models\"\nonnxruntime = \"lib/libonnxruntime.so\"\n").unwrap();
    let s = Settings::load_with(Some(&file), env(&[]), &[]).unwrap();
    assert_eq!(s.model.dir, dir.join("share/models"));
    assert_eq!(s.onnxruntime(), Some(dir.join("etc/lib/libonnxruntime.so").as_path()));
    let cwd = std::env::current_dir().unwrap();
    let s = Settings::load_with(Some(&file), env(&[]), &["model.dir=here".into()]).unwrap();
    assert_eq!(s.model.dir, cwd.join("here"));
    let s = Settings::load_with(Some(&file), env(&[("AUTOTUNED_MODEL__DIR", "there")]), &[]).unwrap();
    assert_eq!(s.model.dir, cwd.join("there"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn presets_take_every_preset_key_of_the_table() {
    let overrides = ["presets.breathy.formant_preserve=0.5".to_owned(), "presets.breathy.key=Eb".to_owned()];
    let s = Settings::load_with(Some(&shipped()), env(&[]), &overrides).unwrap();
    assert!(s.presets.0.contains_key("natural") && s.presets.0.contains_key("hard"));
    let mut p = s.params;
    s.presets.0["breathy"].apply(&mut p);
    assert_eq!(p.get(FORMANT_PRESERVE), 0.5);
    let e = Settings::load_with(None, env(&[]), &["presets.x.bypass=true".into()]).unwrap_err().to_string();
    assert!(e.contains("not a preset key"), "{e}");
}

#[test]
fn the_installed_config_names_the_installed_models_absolutely_and_a_users_config_is_kept() {
    let home = std::env::temp_dir().join(common::unique("at-home"));
    let install = || {
        let out = std::process::Command::new("make")
            .args(["-s", "-C"])
            .arg(root())
            .arg("install-config")
            .arg(format!("INSTALL_HOME={}", home.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    install();
    let file = home.join(".config/autotuned/autotuned.toml");
    let s = Settings::load_with(Some(&file), env(&[]), &[]).unwrap();
    assert_eq!(s.model.dir, home.join(".local/share/autotuned/models"));
    assert_eq!(s.params, Settings::load_with(Some(&shipped()), env(&[]), &[]).unwrap().params);
    std::fs::write(&file, "[model]\ndir = \"mine\"\n").unwrap();
    install();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "[model]\ndir = \"mine\"\n");
    std::fs::remove_dir_all(home).unwrap();
}

#[test]
fn voice_tables_override_tuning_for_their_voice_only() {
    let file = std::env::temp_dir().join(format!("{}.toml", common::unique("voices")));
    std::fs::write(
        &file,
        "[jack]\nvoices = 3\nlink = [[1, 2]]\n[tuning]\nstrength = 0.9\ntranspose = 1\n[voice.2]\ntranspose = -5\n[voice.3]\nstrength = 0.4\nout_channel = 3\n[midi]\nchannels = \"per_voice\"\n",
    )
    .unwrap();
    let s = Settings::load(Some(&file), &[]).unwrap();
    let voices = s.voice_params();
    let row = |id| voices.iter().map(|p| p.get(id)).collect::<Vec<f32>>();
    assert_eq!(row(STRENGTH), [0.9, 0.9, 0.4]);
    assert_eq!(row(TRANSPOSE), [1.0, -5.0, 1.0]);
    assert_eq!(row(OUT_CHANNEL), [1.0, 1.0, 3.0]);
    assert_eq!(s.midi_channels, MidiChannels::PerVoice);
    assert_eq!(s.link_groups().unwrap(), [vec![0, 1]], "from the file's [[1, 2]]");

    let err = |o: &str| Settings::load(Some(&file), &[o.into()]).unwrap_err().to_string();
    assert!(err("jack.voices=2").contains("there is no voice 3: [jack] voices is 2"), "{}", err("jack.voices=2"));
    assert!(err("jack.voices=65").contains("`jack.voices`"));
    assert!(err("jack.voices=0").contains("`jack.voices`"));
    assert!(err("voice.2.transpose=30").contains("`voice.2.transpose`"));
    assert!(err("voice.2.colour=blue").contains("[voice.K] takes the keys of [tuning] and [midi]"));
    assert!(err("voice.x.strength=0.5").contains("[voice.1] … [voice.64]"));
    assert!(err("midi.channels=some").contains("`midi.channels`"));
    assert_eq!(Settings::load(Some(&file), &["jack.link=1+3".into()]).unwrap().link_groups().unwrap(), [vec![0, 2]]);
    assert!(err("jack.link=1+4").contains("must list voices 1..=3"));
    assert!(err("jack.link=2").contains("two or more voices"));
    assert!(err("jack.link=1+2,2+3").contains("voice 2 is in two groups"));
    std::fs::remove_file(file).unwrap();
}
