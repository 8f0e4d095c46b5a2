//! Settings, read by the supervisor at start and on SIGHUP: built-in defaults, then the TOML
//! file, then `AUTOTUNED_*` environment variables, then `--set key=value` flags; every key is
//! known and range-checked, and an error names the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

use crate::rt::{Mode, Params};

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("settings: {0}")]
    Parse(String),
    #[error("settings: `{key}` = {value}: {reason}")]
    Invalid { key: &'static str, value: String, reason: String },
    #[error("settings: --set {0:?} is not key=value")]
    Override(String),
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub jack: JackSettings,
    pub model: ModelSettings,
    pub osc: OscSettings,
    pub tuning: TuningSettings,
    pub log: LogSettings,
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
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TuningSettings {
    pub mode: String,
    pub strength: f32,
    pub target_hz: f32,
    pub retune_ms: f32,
    pub tuning_hz: f32,
    pub bypass: bool,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// error, warn, info, debug or trace; `RUST_LOG` wins when set.
    pub level: String,
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
        OscSettings { bind: "127.0.0.1:9000".into(), root: "/autotune".into(), reply_port: 0, errors_per_second: 10 }
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
            bypass: false,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings { level: "info".into() }
    }
}

/// Ranges shared with the OSC address space.
pub const STRENGTH: (f32, f32) = (0.0, 1.0);
pub const TARGET_HZ: (f32, f32) = (20.0, 2000.0);
pub const RETUNE_MS: (f32, f32) = (0.0, 1000.0);
pub const TUNING_HZ: (f32, f32) = (400.0, 480.0);

impl Settings {
    /// Layers defaults, `file` (if any), the environment and `overrides` ("key=value").
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<Settings, SettingsError> {
        let mut builder = Config::builder();
        if let Some(path) = file {
            builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
        }
        builder = builder.add_source(
            Environment::with_prefix("AUTOTUNED")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("jack.connect_inputs")
                .with_list_parse_key("jack.connect_outputs"),
        );
        for o in overrides {
            let (key, value) = o.split_once('=').ok_or_else(|| SettingsError::Override(o.clone()))?;
            builder =
                builder.set_override(key.trim(), value.trim()).map_err(|e| SettingsError::Parse(e.to_string()))?;
        }
        let settings: Settings =
            builder.build().and_then(|c| c.try_deserialize()).map_err(|e| SettingsError::Parse(e.to_string()))?;
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), SettingsError> {
        let range = |key: &'static str, v: f32, (lo, hi): (f32, f32)| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(SettingsError::Invalid { key, value: v.to_string(), reason: format!("must be in {lo}..={hi}") })
            }
        };
        range("tuning.strength", self.tuning.strength, STRENGTH)?;
        range("tuning.target_hz", self.tuning.target_hz, TARGET_HZ)?;
        range("tuning.retune_ms", self.tuning.retune_ms, RETUNE_MS)?;
        range("tuning.tuning_hz", self.tuning.tuning_hz, TUNING_HZ)?;
        if Mode::parse(&self.tuning.mode).is_none() {
            return Err(SettingsError::Invalid {
                key: "tuning.mode",
                value: self.tuning.mode.clone(),
                reason: "must be auto or manual".into(),
            });
        }
        if self.osc.bind.parse::<SocketAddr>().is_err() {
            return Err(SettingsError::Invalid {
                key: "osc.bind",
                value: self.osc.bind.clone(),
                reason: "must be address:port, e.g. 127.0.0.1:9000".into(),
            });
        }
        if !self.osc.root.starts_with('/') || self.osc.root.len() < 2 || self.osc.root.ends_with('/') {
            return Err(SettingsError::Invalid {
                key: "osc.root",
                value: self.osc.root.clone(),
                reason: "must look like /autotune".into(),
            });
        }
        if !(1..=1000).contains(&self.osc.errors_per_second) {
            return Err(SettingsError::Invalid {
                key: "osc.errors_per_second",
                value: self.osc.errors_per_second.to_string(),
                reason: "must be in 1..=1000".into(),
            });
        }
        if self.jack.client_name.is_empty() || self.jack.client_name.len() > 63 {
            return Err(SettingsError::Invalid {
                key: "jack.client_name",
                value: self.jack.client_name.clone(),
                reason: "must be 1..=63 characters".into(),
            });
        }
        if self.model.file.is_empty() || Path::new(&self.model.file).components().count() != 1 {
            return Err(SettingsError::Invalid {
                key: "model.file",
                value: self.model.file.clone(),
                reason: "must be a file name inside model.dir".into(),
            });
        }
        if log_level(&self.log.level).is_none() {
            return Err(SettingsError::Invalid {
                key: "log.level",
                value: self.log.level.clone(),
                reason: "must be error, warn, info, debug or trace".into(),
            });
        }
        Ok(())
    }

    /// The parameters the engine starts with.
    pub fn initial_params(&self) -> Params {
        let t = &self.tuning;
        Params {
            strength: t.strength,
            mode: Mode::parse(&t.mode).unwrap_or(Mode::Auto),
            target_hz: t.target_hz,
            retune_ms: t.retune_ms,
            tuning_hz: t.tuning_hz,
            scale_mask: 0x0fff,
            bypass: t.bypass,
        }
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
