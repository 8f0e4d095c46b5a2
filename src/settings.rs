//! Settings, read by the supervisor at start and on SIGHUP: built-in defaults, then the TOML
//! file, then `AUTOTUNED_*` environment variables, then `--set key=value` flags; every key is
//! known and range-checked, and an error names the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use ipnet::IpNet;
use serde::Deserialize;

use crate::control::ControlState;
use crate::rt::{Mode, Params};
use crate::scales::{parse_key, Scale};

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("settings: {0}")]
    Parse(String),
    #[error("settings: `{key}` = {value}: {reason}")]
    Invalid { key: String, value: String, reason: String },
    #[error("settings: --set {0:?} is not key=value")]
    Override(String),
}

fn invalid(key: impl Into<String>, value: impl ToString, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid { key: key.into(), value: value.to_string(), reason: reason.into() }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub jack: JackSettings,
    pub model: ModelSettings,
    pub osc: OscSettings,
    pub tuning: TuningSettings,
    pub midi: MidiSettings,
    pub log: LogSettings,
    /// Named parameter sets, recalled with `/autotune/preset s name`.
    pub presets: Presets,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct JackSettings {
    pub client_name: String,
    /// Empty: the default server (or `JACK_DEFAULT_SERVER`).
    pub server_name: String,
    /// Ports connected to `<client>:in` after activation, e.g. "system:capture_1".
    pub connect_inputs: Vec<String>,
    /// Ports `<client>:out` is connected to after activation.
    pub connect_outputs: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSettings {
    /// Directory models are loaded from (and the only one `/model/reload` may load from).
    pub dir: PathBuf,
    /// The model file inside `dir`.
    pub file: String,
    /// libonnxruntime.so to use; empty: search (see README).
    pub onnxruntime: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OscSettings {
    pub bind: String,
    pub root: String,
    /// 0: reply to the sender's port; else to this port on the sender's address.
    pub reply_port: u16,
    pub errors_per_second: u32,
    /// Source networks allowed to send (CIDR, e.g. "192.168.1.0/24"); empty: any.
    pub allow: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TuningSettings {
    /// The start-up mode, and the one `/autotune/target/release` returns to.
    pub mode: String,
    pub strength: f32,
    pub target_hz: f32,
    pub retune_ms: f32,
    pub tuning_hz: f32,
    pub key: String,
    pub scale: String,
    pub transpose: f32,
    pub bypass: bool,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MidiSettings {
    /// Semitones a full pitch bend on `midi_in` moves the target.
    pub bend_range: f32,
    /// Channel (1..16) of the notes sent on `midi_out`.
    pub out_channel: u8,
    /// Voicing confidence (0..1) a sung note needs to be sent.
    pub out_threshold: f32,
    /// How long a note must hold before its note-on is sent, ms.
    pub out_min_note_ms: f32,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// error, warn, info, debug or trace; `RUST_LOG` wins when set.
    pub level: String,
}

/// A preset: the parameters it sets; the others keep their values.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Preset {
    pub mode: Option<String>,
    pub strength: Option<f32>,
    pub retune_ms: Option<f32>,
    pub target_hz: Option<f32>,
    pub tuning_hz: Option<f32>,
    pub key: Option<String>,
    pub scale: Option<String>,
    pub transpose: Option<f32>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct Presets(pub BTreeMap<String, Preset>);

impl Default for Presets {
    fn default() -> Self {
        let natural = Preset { strength: Some(0.8), retune_ms: Some(80.0), ..Preset::default() };
        let hard = Preset { strength: Some(1.0), retune_ms: Some(0.0), ..Preset::default() };
        Presets(BTreeMap::from([("natural".to_owned(), natural), ("hard".to_owned(), hard)]))
    }
}

impl Default for JackSettings {
    fn default() -> Self {
        JackSettings {
            client_name: "autotuned".into(),
            server_name: String::new(),
            connect_inputs: vec![],
            connect_outputs: vec![],
        }
    }
}

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings { dir: PathBuf::from("models"), file: "autotune.onnx".into(), onnxruntime: String::new() }
    }
}

impl Default for OscSettings {
    fn default() -> Self {
        OscSettings {
            bind: "127.0.0.1:9000".into(),
            root: "/autotune".into(),
            reply_port: 0,
            errors_per_second: 10,
            allow: Vec::new(),
        }
    }
}

impl Default for TuningSettings {
    fn default() -> Self {
        TuningSettings {
            mode: "auto".into(),
            strength: 1.0,
            target_hz: 440.0,
            retune_ms: 0.0,
            tuning_hz: 440.0,
            key: "C".into(),
            scale: "chromatic".into(),
            transpose: 0.0,
            bypass: false,
        }
    }
}

impl Default for MidiSettings {
    fn default() -> Self {
        MidiSettings { bend_range: 2.0, out_channel: 1, out_threshold: 0.6, out_min_note_ms: 60.0 }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings { level: "info".into() }
    }
}

/// Keys whose value is a list: comma-separated in `AUTOTUNED_*` variables and `--set`.
const LIST_KEYS: [&str; 3] = ["jack.connect_inputs", "jack.connect_outputs", "osc.allow"];

/// Ranges shared with the OSC address space.
pub const STRENGTH: (f32, f32) = (0.0, 1.0);
pub const TARGET_HZ: (f32, f32) = (20.0, 2000.0);
pub const RETUNE_MS: (f32, f32) = (0.0, 1000.0);
pub const TUNING_HZ: (f32, f32) = (400.0, 480.0);
pub const TRANSPOSE: (f32, f32) = (-24.0, 24.0);

fn range(key: &str, v: f32, (lo, hi): (f32, f32)) -> Result<(), SettingsError> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(invalid(key, v, format!("must be in {lo}..={hi}")))
    }
}

impl Preset {
    fn check(&self, name: &str) -> Result<(), SettingsError> {
        let key = |k: &str| format!("presets.{name}.{k}");
        let ranged = [
            ("strength", self.strength, STRENGTH),
            ("retune_ms", self.retune_ms, RETUNE_MS),
            ("target_hz", self.target_hz, TARGET_HZ),
            ("tuning_hz", self.tuning_hz, TUNING_HZ),
            ("transpose", self.transpose, TRANSPOSE),
        ];
        for (k, v, r) in ranged {
            if let Some(v) = v {
                range(&key(k), v, r)?;
            }
        }
        check_names(
            &key("mode"),
            self.mode.as_deref(),
            &key("key"),
            self.key.as_deref(),
            &key("scale"),
            self.scale.as_deref(),
        )
    }

    /// Sets what this preset names on `state`.
    pub fn apply(&self, state: &mut ControlState) {
        let p = &mut state.params;
        if let Some(mode) = self.mode.as_deref().and_then(Mode::parse) {
            p.mode = mode;
        }
        p.strength = self.strength.unwrap_or(p.strength);
        p.retune_ms = self.retune_ms.unwrap_or(p.retune_ms);
        p.target_hz = self.target_hz.unwrap_or(p.target_hz);
        p.tuning_hz = self.tuning_hz.unwrap_or(p.tuning_hz);
        p.transpose = self.transpose.unwrap_or(p.transpose);
        let key = self.key.as_deref().and_then(parse_key).unwrap_or(state.key);
        match self.scale.as_deref().and_then(Scale::parse) {
            Some(scale) => state.set_scale(key, scale),
            None => state.set_key(key),
        }
    }
}

fn check_names(
    mode_key: &str,
    mode: Option<&str>,
    key_key: &str,
    key: Option<&str>,
    scale_key: &str,
    scale: Option<&str>,
) -> Result<(), SettingsError> {
    if let Some(m) = mode.filter(|m| Mode::parse(m).is_none()) {
        return Err(invalid(mode_key, m, "must be auto, midi or manual"));
    }
    if let Some(k) = key.filter(|k| parse_key(k).is_none()) {
        return Err(invalid(key_key, k, "must be a note name C..B (with # or b)"));
    }
    if let Some(s) = scale.filter(|s| Scale::parse(s).is_none()) {
        return Err(invalid(scale_key, s, "must be a scale name listed in the README"));
    }
    Ok(())
}

impl Settings {
    /// Layers defaults, `file` (if any), the environment and `overrides` ("key=value").
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<Settings, SettingsError> {
        let mut builder = Config::builder();
        if let Some(path) = file {
            // Read it here, so a missing, unreadable or empty file is one clear error naming it.
            let text = std::fs::read_to_string(path)
                .map_err(|e| SettingsError::Parse(format!("cannot read {}: {e}", path.display())))?;
            if text.trim().is_empty() {
                return Err(SettingsError::Parse(format!(
                    "{} is empty (leave out --config to run on the defaults)",
                    path.display()
                )));
            }
            builder = builder.add_source(File::from_str(&text, FileFormat::Toml));
        }
        builder = builder.add_source(
            Environment::with_prefix("AUTOTUNED")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key(LIST_KEYS[0])
                .with_list_parse_key(LIST_KEYS[1])
                .with_list_parse_key(LIST_KEYS[2]),
        );
        for o in overrides {
            let (key, value) = o.split_once('=').ok_or_else(|| SettingsError::Override(o.clone()))?;
            let (key, value) = (key.trim(), value.trim());
            builder = if LIST_KEYS.contains(&key) {
                let items: Vec<String> =
                    value.split(',').map(str::trim).filter(|i| !i.is_empty()).map(String::from).collect();
                builder.set_override(key, items)
            } else {
                builder.set_override(key, value)
            }
            .map_err(|e| SettingsError::Parse(e.to_string()))?;
        }
        let origin = file.map_or_else(String::new, |p| format!("{}: ", p.display()));
        let settings: Settings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| SettingsError::Parse(format!("{origin}{e}")))?;
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), SettingsError> {
        let t = &self.tuning;
        range("tuning.strength", t.strength, STRENGTH)?;
        range("tuning.target_hz", t.target_hz, TARGET_HZ)?;
        range("tuning.retune_ms", t.retune_ms, RETUNE_MS)?;
        range("tuning.tuning_hz", t.tuning_hz, TUNING_HZ)?;
        range("tuning.transpose", t.transpose, TRANSPOSE)?;
        check_names("tuning.mode", Some(&t.mode), "tuning.key", Some(&t.key), "tuning.scale", Some(&t.scale))?;
        range("midi.bend_range", self.midi.bend_range, (0.0, 24.0))?;
        range("midi.out_threshold", self.midi.out_threshold, (0.0, 1.0))?;
        range("midi.out_min_note_ms", self.midi.out_min_note_ms, (0.0, 2000.0))?;
        if !(1..=16).contains(&self.midi.out_channel) {
            return Err(invalid("midi.out_channel", self.midi.out_channel, "must be in 1..=16"));
        }
        for (name, preset) in &self.presets.0 {
            preset.check(name)?;
        }
        if self.osc.bind.parse::<SocketAddr>().is_err() {
            return Err(invalid("osc.bind", &self.osc.bind, "must be address:port, e.g. 127.0.0.1:9000"));
        }
        if !self.osc.root.starts_with('/') || self.osc.root.len() < 2 || self.osc.root.ends_with('/') {
            return Err(invalid("osc.root", &self.osc.root, "must look like /autotune"));
        }
        for net in &self.osc.allow {
            if net.parse::<IpNet>().is_err() {
                return Err(invalid("osc.allow", net, "must be networks like 127.0.0.0/8 or ::1/128"));
            }
        }
        if !(1..=1000).contains(&self.osc.errors_per_second) {
            return Err(invalid("osc.errors_per_second", self.osc.errors_per_second, "must be in 1..=1000"));
        }
        if self.jack.client_name.is_empty() || self.jack.client_name.len() > 63 {
            return Err(invalid("jack.client_name", &self.jack.client_name, "must be 1..=63 characters"));
        }
        if self.model.file.is_empty() || Path::new(&self.model.file).components().count() != 1 {
            return Err(invalid("model.file", &self.model.file, "must be a file name inside model.dir"));
        }
        if log_level(&self.log.level).is_none() {
            return Err(invalid("log.level", &self.log.level, "must be error, warn, info, debug or trace"));
        }
        Ok(())
    }

    /// The mode `/autotune/target/release` returns to.
    pub fn default_mode(&self) -> Mode {
        Mode::parse(&self.tuning.mode).unwrap_or(Mode::Auto)
    }

    /// The parameters the engine starts with.
    pub fn initial_state(&self) -> ControlState {
        let t = &self.tuning;
        let params = Params {
            strength: t.strength,
            mode: self.default_mode(),
            target_hz: t.target_hz,
            retune_ms: t.retune_ms,
            tuning_hz: t.tuning_hz,
            scale_mask: 0x0fff,
            transpose: t.transpose,
            bend_range: self.midi.bend_range,
            bypass: t.bypass,
        };
        let mut state = ControlState { params, key: 0, scale: Scale::Named(0) };
        state.set_scale(parse_key(&t.key).unwrap_or(0), Scale::parse(&t.scale).unwrap_or(Scale::Named(0)));
        state
    }

    /// The parsed `osc.allow` networks (checked at load).
    pub fn osc_allow(&self) -> Vec<IpNet> {
        self.osc.allow.iter().filter_map(|n| n.parse().ok()).collect()
    }

    pub fn model_path(&self) -> PathBuf {
        self.model.dir.join(&self.model.file)
    }

    pub fn onnxruntime(&self) -> Option<&Path> {
        (!self.model.onnxruntime.is_empty()).then(|| Path::new(&self.model.onnxruntime))
    }
}

pub fn log_level(name: &str) -> Option<log::LevelFilter> {
    name.parse().ok()
}
