//! Settings, read by the supervisor at start and on SIGHUP: built-in defaults, then the TOML
//! file, then `AUTOTUNED_<SECTION>__<KEY>` environment variables, then `--set key=value` flags.
//! Every key is known and range-checked (the parameters by their table row), an error names the
//! key and where its value came from, and relative paths resolve against the file that named
//! them (or the working directory for the environment and flags).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use config::{Config, File, FileFormat, Source, ValueKind};
use ipnet::IpNet;
use serde::Deserialize;

use crate::control::{apply, tune};
use crate::parameters::{Id, KEY, TABLE, by_preset_key, by_setting, sections};
use crate::rt::{MidiChannels, Mode, Params};

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("settings: {0}")]
    Parse(String),
    #[error("settings: {origin}`{key}` = {value}: {reason}")]
    Invalid { origin: String, key: String, value: String, reason: String },
    #[error("settings: --set {0:?} is not key=value")]
    Override(String),
}

/// Where a setting's value came from, for error messages and path resolution.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Origin {
    Default,
    File(PathBuf),
    Environment(String),
    Flag,
}

impl fmt::Display for Origin {
    /// A prefix for messages: empty for defaults, else the source and ": ".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => Ok(()),
            Origin::File(path) => write!(f, "{}: ", path.display()),
            Origin::Environment(name) => write!(f, "environment variable {name}: "),
            Origin::Flag => write!(f, "--set: "),
        }
    }
}

/// A value as a layer gave it.
#[derive(Clone, Debug, PartialEq)]
enum Raw {
    Text(String),
    List(Vec<String>),
}

impl fmt::Display for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Raw::Text(t) => write!(f, "{t}"),
            Raw::List(items) => write!(f, "{items:?}"),
        }
    }
}

/// Most voices one node runs.
pub const MAX_VOICES: usize = 64;
/// Sections whose keys are typed fields here rather than parameter-table rows.
const TYPED_SECTIONS: [&str; 4] = ["jack", "model", "osc", "log"];
/// Keys whose value is a list: comma-separated in `AUTOTUNED_*` variables and `--set`.
const LIST_KEYS: [&str; 4] = ["jack.connect_inputs", "jack.connect_outputs", "jack.link", "osc.allow"];

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub jack: JackSettings,
    pub model: ModelSettings,
    pub osc: OscSettings,
    pub log: LogSettings,
    /// The start-up value of every parameter ([tuning] and [midi]).
    pub params: Params,
    /// Per voice (1-based): the `[voice.K]` values that replace `params` for voice K.
    pub voice_overrides: BTreeMap<usize, Vec<(Id, f32)>>,
    /// Which MIDI channels drive which voice (`[midi] channels`).
    pub midi_channels: MidiChannels,
    /// Named parameter sets, recalled with `/autotune/preset s name`.
    pub presets: Presets,
    /// Where Scala tunings come from, and the one loaded at start.
    pub scala: ScalaSettings,
    /// What loading ignored (e.g. `AUTOTUNED_*` variables that are not settings), to log once
    /// logging is up.
    pub warnings: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        let mut params = Params::default();
        let key = params.get(KEY);
        apply(&mut params, KEY, key);
        Settings {
            jack: JackSettings::default(),
            model: ModelSettings::default(),
            osc: OscSettings::default(),
            log: LogSettings::default(),
            params,
            voice_overrides: BTreeMap::new(),
            midi_channels: MidiChannels::Omni,
            presets: Presets::default(),
            scala: ScalaSettings::default(),
            warnings: Vec::new(),
        }
    }
}

/// `[tuning] scala`, `scala_kbm` and `scala_dir`.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalaSettings {
    /// The only directory Scala files are read from (the settings and `/autotune/scala`).
    pub dir: PathBuf,
    /// A `.scl` file inside `dir` to tune auto mode to at start (the scale becomes `scala`).
    pub file: String,
    /// A `.kbm` keyboard mapping inside `dir` for it; empty: degree 0 on the key's note.
    pub kbm: String,
}

impl Default for ScalaSettings {
    fn default() -> Self {
        ScalaSettings { dir: PathBuf::from("scales"), file: String::new(), kbm: String::new() }
    }
}

/// The typed sections, deserialized by `config`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Typed {
    jack: JackSettings,
    model: ModelSettings,
    osc: OscSettings,
    log: LogSettings,
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
    /// Voices the node corrects, each with its own ports, in one model run per block.
    pub voices: usize,
    /// Groups of voices (1-based) analysed together and corrected alike, each "1+2" (in the file
    /// `[[1, 2]]`).
    pub link: Vec<String>,
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
            voices: 1,
            link: vec![],
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

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings { level: "info".into() }
    }
}

/// A preset: the parameters it sets, in the order given; the others keep their values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Preset(pub Vec<(Id, f32)>);

impl Preset {
    /// Sets what this preset names.
    pub fn apply(&self, params: &mut Params) {
        for &(id, value) in &self.0 {
            apply(params, id, value);
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Presets(pub BTreeMap<String, Preset>);

impl Default for Presets {
    fn default() -> Self {
        use crate::parameters::{HUMANIZE, RETUNE_MS, STRENGTH, VIBRATO_NATURAL};
        let natural = Preset(vec![(STRENGTH, 0.8), (RETUNE_MS, 80.0), (HUMANIZE, 0.6), (VIBRATO_NATURAL, 1.0)]);
        let hard = Preset(vec![(STRENGTH, 1.0), (RETUNE_MS, 0.0), (HUMANIZE, 0.0), (VIBRATO_NATURAL, 0.0)]);
        Presets(BTreeMap::from([("natural".to_owned(), natural), ("hard".to_owned(), hard)]))
    }
}

/// The layered values, key → (value, where it came from); later layers replace earlier ones.
#[derive(Default)]
struct Layers {
    values: BTreeMap<String, (Raw, Origin)>,
    warnings: Vec<String>,
}

impl Layers {
    fn set(&mut self, key: String, raw: Raw, origin: Origin) {
        // A preset given by a later layer replaces the earlier one whole.
        if let Some(name) = key.strip_prefix("presets.").and_then(|k| k.split_once('.')).map(|(n, _)| n) {
            let prefix = format!("presets.{name}.");
            let replaced = self.values.iter().any(|(k, (_, o))| k.starts_with(&prefix) && !same_layer(o, &origin));
            if replaced {
                self.values.retain(|k, _| !k.starts_with(&prefix));
            }
        }
        self.values.insert(key, (raw, origin));
    }

    fn file(&mut self, path: &Path) -> Result<(), SettingsError> {
        // Read it here, so a missing, unreadable or empty file is one clear error naming it.
        let text = std::fs::read_to_string(path)
            .map_err(|e| SettingsError::Parse(format!("cannot read {}: {e}", path.display())))?;
        if text.trim().is_empty() {
            return Err(SettingsError::Parse(format!(
                "{} is empty (leave out --config to run on the defaults)",
                path.display()
            )));
        }
        let table = File::from_str(&text, FileFormat::Toml)
            .collect()
            .map_err(|e| SettingsError::Parse(format!("{}: {e}", path.display())))?;
        let origin = Origin::File(path.to_owned());
        let mut leaves = Vec::new();
        flatten(String::new(), table, &mut leaves)
            .map_err(|e| SettingsError::Parse(format!("{}: {e}", path.display())))?;
        for (key, raw) in leaves {
            self.set(key, raw, origin.clone());
        }
        Ok(())
    }

    /// `AUTOTUNED_<SECTION>__<KEY>` variables; other `AUTOTUNED_*` ones are warned about.
    fn environment(&mut self, vars: impl IntoIterator<Item = (String, String)>) {
        let known = known_sections();
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix("AUTOTUNED_") else { continue };
            let key = rest.to_ascii_lowercase().replace("__", ".");
            let section = key.split_once('.').map(|(s, _)| s);
            if section.is_some_and(|s| known.contains(&s)) && !key.ends_with('.') {
                let raw = if LIST_KEYS.contains(&key.as_str()) { list(&value) } else { Raw::Text(value) };
                self.set(key, raw, Origin::Environment(name));
            } else {
                self.warnings.push(format!(
                    "environment variable {name} is not a setting and is ignored (settings are \
                     AUTOTUNED_<SECTION>__<KEY> with a section of: {})",
                    known.join(", ")
                ));
            }
        }
    }

    fn flag(&mut self, flag: &str) -> Result<(), SettingsError> {
        let (key, value) = flag.split_once('=').ok_or_else(|| SettingsError::Override(flag.to_owned()))?;
        let (key, value) = (key.trim().to_owned(), value.trim());
        let raw = if LIST_KEYS.contains(&key.as_str()) { list(value) } else { Raw::Text(value.to_owned()) };
        self.set(key, raw, Origin::Flag);
        Ok(())
    }
}

fn known_sections() -> Vec<&'static str> {
    let mut known: Vec<&str> = TYPED_SECTIONS.to_vec();
    known.extend(sections());
    known.extend(["presets", "voice"]);
    known
}

/// The parameter a `[voice.K]` key names: a `[tuning]` or `[midi]` setting's key.
fn by_voice_key(field: &str) -> Option<Id> {
    sections().into_iter().find_map(|section| by_setting(&format!("{section}.{field}")))
}

/// `[midi] channels`: not a parameter, it decides which voice each MIDI channel drives.
const MIDI_CHANNELS: &str = "midi.channels";
/// The Scala keys of `[tuning]`, which are files rather than parameters.
const SCALA_FILE: &str = "tuning.scala";
const SCALA_KBM: &str = "tuning.scala_kbm";
const SCALA_DIR: &str = "tuning.scala_dir";

fn list(text: &str) -> Raw {
    Raw::List(text.split(',').map(str::trim).filter(|i| !i.is_empty()).map(String::from).collect())
}

fn flatten(
    prefix: String,
    table: config::Map<String, config::Value>,
    out: &mut Vec<(String, Raw)>,
) -> Result<(), String> {
    for (name, value) in table {
        let key = if prefix.is_empty() { name } else { format!("{prefix}.{name}") };
        match value.kind {
            ValueKind::Table(inner) => flatten(key, inner, out)?,
            ValueKind::Array(items) => {
                // An inner array (a `[jack] link` group) becomes one item, its elements joined by '+'.
                let item = |v: config::Value| match v.kind {
                    ValueKind::Array(inner) => {
                        let inner = inner.into_iter().map(|v| v.into_string()).collect::<Result<Vec<_>, _>>();
                        inner.map(|parts| parts.join("+"))
                    }
                    _ => v.into_string(),
                };
                let items = items.into_iter().map(|v| item(v).map_err(|e| format!("`{key}`: {e}")));
                let items = items.collect::<Result<_, _>>()?;
                out.push((key, Raw::List(items)));
            }
            kind => {
                let text = config::Value::new(None, kind).into_string().map_err(|e| format!("`{key}`: {e}"))?;
                out.push((key, Raw::Text(text)));
            }
        }
    }
    Ok(())
}

fn invalid(origin: &Origin, key: &str, value: impl ToString, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        origin: origin.to_string(),
        key: key.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// A `config` source holding one key or many, for deserializing the typed sections.
fn typed(values: &[(&str, &Raw)]) -> Result<Typed, config::ConfigError> {
    let mut builder = Config::builder();
    for (key, raw) in values {
        builder = match raw {
            Raw::Text(t) => builder.set_override(*key, t.as_str())?,
            Raw::List(items) => builder.set_override(*key, items.clone())?,
        };
    }
    builder.build()?.try_deserialize()
}

impl Settings {
    /// Layers defaults, `file` (if any), the process environment and `overrides` ("key=value").
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<Settings, SettingsError> {
        Settings::load_with(file, std::env::vars(), overrides)
    }

    /// [`Settings::load`] with the environment given.
    pub fn load_with(
        file: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
        overrides: &[String],
    ) -> Result<Settings, SettingsError> {
        let mut layers = Layers::default();
        if let Some(path) = file {
            layers.file(path)?;
        }
        layers.environment(environment);
        for o in overrides {
            layers.flag(o)?;
        }
        Settings::from_layers(layers)
    }

    fn from_layers(layers: Layers) -> Result<Settings, SettingsError> {
        let defaults = Settings::default();
        let mut params = defaults.params;
        let mut presets = defaults.presets.0;
        let mut user_presets: BTreeMap<String, Preset> = BTreeMap::new();
        let mut voice_overrides: BTreeMap<usize, Vec<(Id, f32)>> = BTreeMap::new();
        let mut midi_channels = MidiChannels::Omni;
        let mut scala = ScalaSettings::default();
        let mut typed_values = Vec::new();
        for (key, (raw, origin)) in &layers.values {
            let (section, rest) = key.split_once('.').unwrap_or((key, ""));
            if [SCALA_FILE, SCALA_KBM, SCALA_DIR].contains(&key.as_str()) {
                let Raw::Text(text) = raw else { return Err(invalid(origin, key, raw, "must be a file name")) };
                match key.as_str() {
                    SCALA_FILE => scala.file = text.clone(),
                    SCALA_KBM => scala.kbm = text.clone(),
                    _ => scala.dir = PathBuf::from(text),
                }
            } else if key == MIDI_CHANNELS {
                midi_channels = match raw {
                    Raw::Text(t) if t == "omni" => MidiChannels::Omni,
                    Raw::Text(t) if t == "per_voice" => MidiChannels::PerVoice,
                    _ => return Err(invalid(origin, key, raw, "must be \"omni\" or \"per_voice\"")),
                };
            } else if section == "voice" {
                let (voice, field) = rest.split_once('.').unwrap_or((rest, ""));
                let voice = voice.parse::<usize>().ok().filter(|k| (1..=MAX_VOICES).contains(k)).ok_or_else(|| {
                    invalid(origin, key, raw, format!("voice tables are [voice.1] … [voice.{MAX_VOICES}]"))
                })?;
                let id = by_voice_key(field).ok_or_else(|| {
                    invalid(origin, key, raw, "not a parameter; [voice.K] takes the keys of [tuning] and [midi]")
                })?;
                let value = parse_row(id, key, raw, origin)?;
                voice_overrides.entry(voice).or_default().push((id, value));
            } else if TYPED_SECTIONS.contains(&section) {
                // One key at a time, so an error is pinned on the layer that gave it.
                typed(&[(key, raw)]).map_err(|e| invalid(origin, key, raw, e.to_string()))?;
                typed_values.push((key.as_str(), raw));
            } else if section == "presets" {
                let (name, field) = rest.split_once('.').unwrap_or((rest, ""));
                let id = by_preset_key(field).ok_or_else(|| {
                    let known: Vec<&str> = TABLE.iter().filter(|r| r.preset).map(|r| r.name).collect();
                    invalid(origin, key, raw, format!("not a preset key; presets may set: {}", known.join(", ")))
                })?;
                let value = parse_row(id, key, raw, origin)?;
                user_presets.entry(name.to_owned()).or_default().0.push((id, value));
            } else if sections().contains(&section) {
                let id = by_setting(key).ok_or_else(|| {
                    let known: Vec<&str> =
                        TABLE.iter().filter_map(|r| r.setting?.strip_prefix(&format!("{section}."))).collect();
                    invalid(origin, key, raw, format!("unknown setting; [{section}] has: {}", known.join(", ")))
                })?;
                let value = parse_row(id, key, raw, origin)?;
                apply(&mut params, id, value);
            } else {
                return Err(invalid(
                    origin,
                    key,
                    raw,
                    format!("unknown section [{section}]; the sections are: {}", known_sections().join(", ")),
                ));
            }
        }
        // Table order, whatever order the layers listed them in: derived values (the notes of a
        // key and scale) come out the same either way.
        for preset in user_presets.values_mut() {
            preset.0.sort_by_key(|(id, _)| *id);
        }
        presets.extend(user_presets);
        for overrides in voice_overrides.values_mut() {
            overrides.sort_by_key(|(id, _)| *id);
        }
        let typed = typed(&typed_values).map_err(|e| SettingsError::Parse(e.to_string()))?;
        let mut settings = Settings {
            jack: typed.jack,
            model: typed.model,
            osc: typed.osc,
            log: typed.log,
            params,
            voice_overrides,
            midi_channels,
            presets: Presets(presets),
            scala,
            warnings: layers.warnings,
        };
        let origin = |key: &str| layers.values.get(key).map_or(Origin::Default, |(_, o)| o.clone());
        settings.check(&origin)?;
        settings.resolve_paths(&origin);
        settings.load_scala(&origin)?;
        Ok(settings)
    }

    fn check(&self, origin: &dyn Fn(&str) -> Origin) -> Result<(), SettingsError> {
        let fail = |key: &str, value: &dyn fmt::Display, reason: &str| Err(invalid(&origin(key), key, value, reason));
        if self.osc.bind.parse::<SocketAddr>().is_err() {
            return fail("osc.bind", &self.osc.bind, "must be address:port, e.g. 127.0.0.1:9000");
        }
        if !self.osc.root.starts_with('/') || self.osc.root.len() < 2 || self.osc.root.ends_with('/') {
            return fail("osc.root", &self.osc.root, "must look like /autotune");
        }
        if let Some(net) = self.osc.allow.iter().find(|n| n.parse::<IpNet>().is_err()) {
            return fail("osc.allow", net, "must be networks like 127.0.0.0/8 or ::1/128");
        }
        if !(1..=1000).contains(&self.osc.errors_per_second) {
            return fail("osc.errors_per_second", &self.osc.errors_per_second, "must be in 1..=1000");
        }
        if self.jack.client_name.is_empty() || self.jack.client_name.len() > 63 {
            return fail("jack.client_name", &self.jack.client_name, "must be 1..=63 characters");
        }
        if !(1..=MAX_VOICES).contains(&self.jack.voices) {
            return fail("jack.voices", &self.jack.voices, &format!("must be in 1..={MAX_VOICES}"));
        }
        if let Err(reason) = self.link_groups() {
            return fail("jack.link", &format!("{:?}", self.jack.link), &reason);
        }
        if let Some(voice) = self.voice_overrides.keys().find(|k| **k > self.jack.voices) {
            let key = format!("voice.{voice}");
            return fail(&key, voice, &format!("there is no voice {voice}: [jack] voices is {}", self.jack.voices));
        }
        if self.model.file.is_empty() || Path::new(&self.model.file).components().count() != 1 {
            return fail("model.file", &self.model.file, "must be a file name inside model.dir");
        }
        if log_level(&self.log.level).is_none() {
            return fail("log.level", &self.log.level, "must be error, warn, info, debug or trace");
        }
        Ok(())
    }

    /// Tunes every voice to `[tuning] scala` (its scale becomes `scala`), if one is set: a file
    /// that does not read is an error naming it, and the line at fault.
    fn load_scala(&mut self, origin: &dyn Fn(&str) -> Origin) -> Result<(), SettingsError> {
        if self.scala.file.is_empty() {
            return Ok(());
        }
        let kbm = (!self.scala.kbm.is_empty()).then_some(self.scala.kbm.as_str());
        let tuning = crate::scala::load(&self.scala.dir, &self.scala.file, kbm)
            .map_err(|e| invalid(&origin(SCALA_FILE), SCALA_FILE, &self.scala.file, e.to_string()))?;
        tune(&mut self.params, tuning);
        Ok(())
    }

    /// Makes `model.dir` and `model.onnxruntime` absolute: against the directory of the file
    /// that set them, else the working directory.
    fn resolve_paths(&mut self, origin: &dyn Fn(&str) -> Origin) {
        let cwd = std::env::current_dir().unwrap_or_default();
        let absolute = |key: &str, path: &Path| -> PathBuf {
            let base = match origin(key) {
                Origin::File(file) => cwd.join(file).parent().map(Path::to_path_buf).unwrap_or_else(|| cwd.clone()),
                _ => cwd.clone(),
            };
            normalize(&base.join(path))
        };
        self.model.dir = absolute("model.dir", &self.model.dir);
        self.scala.dir = absolute(SCALA_DIR, &self.scala.dir);
        if !self.model.onnxruntime.is_empty() {
            self.model.onnxruntime =
                absolute("model.onnxruntime", Path::new(&self.model.onnxruntime)).display().to_string();
        }
    }

    /// The `[jack] link` groups as 0-based voice indices: each of two or more voices that exist,
    /// no voice in two groups.
    pub fn link_groups(&self) -> Result<Vec<Vec<usize>>, String> {
        let mut seen = vec![false; self.jack.voices];
        let mut groups = Vec::new();
        for group in &self.jack.link {
            let voices: Vec<usize> = group
                .split('+')
                .map(|v| v.trim().parse::<usize>().ok().filter(|k| (1..=self.jack.voices).contains(k)))
                .collect::<Option<_>>()
                .ok_or_else(|| format!("group {group:?} must list voices 1..={} ([jack] voices)", self.jack.voices))?;
            if voices.len() < 2 {
                return Err(format!("group {group:?} must link two or more voices"));
            }
            for &k in &voices {
                if std::mem::replace(&mut seen[k - 1], true) {
                    return Err(format!("voice {k} is in two groups"));
                }
            }
            groups.push(voices.into_iter().map(|k| k - 1).collect());
        }
        Ok(groups)
    }

    /// Every voice's start-up parameters: `[tuning]` and `[midi]`, then its `[voice.K]` table.
    pub fn voice_params(&self) -> Vec<Params> {
        (1..=self.jack.voices)
            .map(|voice| {
                let mut params = self.params;
                for &(id, value) in self.voice_overrides.get(&voice).into_iter().flatten() {
                    apply(&mut params, id, value);
                }
                params
            })
            .collect()
    }

    /// The mode `/autotune/target/release` returns to.
    pub fn default_mode(&self) -> Mode {
        self.params.mode()
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

fn parse_row(id: Id, key: &str, raw: &Raw, origin: &Origin) -> Result<f32, SettingsError> {
    match raw {
        Raw::Text(text) => id.row().parse(text).map_err(|reason| invalid(origin, key, text, reason)),
        Raw::List(_) => Err(invalid(origin, key, raw, "must be a single value, not a list")),
    }
}

/// `a/./b/../c` → `a/c`, without touching the file system (the path may not exist yet).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

pub fn log_level(name: &str) -> Option<log::LevelFilter> {
    name.parse().ok()
}

fn same_layer(a: &Origin, b: &Origin) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}
