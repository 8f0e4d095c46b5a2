//! Model host, off the RT thread (supervisor, offline and CLI): finds and loads ONNX Runtime,
//! builds sessions, validates a model against the contract and warms it up, producing an
//! [`Inference`] ready to hand to the RT thread.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use ort::environment::Environment;
use ort::logging::LogLevel;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{TensorElementType, ValueType};

use crate::BLOCK;
use crate::parameters::{Id, Kind, TABLE, by_model_input};
use crate::rt::inference::{BlockReport, Controls, Inference, InferenceError, Slots};
use crate::rt::params::SCALE_SLOTS;
use crate::rt::processor::MAX_LATENCY;

/// The ONNX Runtime wheel the daemon is built and tested against: `onnxruntime==X.Y.Z` in
/// `models/requirements.txt`, which the Makefile installs too.
pub fn ort_wheel_version() -> &'static str {
    let requirements = include_str!("../models/requirements.txt");
    requirements.lines().find_map(|line| line.trim().strip_prefix("onnxruntime==")).map(str::trim).unwrap_or("unknown")
}

/// The ONNX Runtime API (major.minor) the daemon is built against.
pub fn ort_version() -> &'static str {
    let wheel = ort_wheel_version();
    wheel.rsplit_once('.').map_or(wheel, |(api, _)| api)
}
/// Blocks of audio run through a fresh model before it may go to the RT thread.
const WARM_UP_BLOCKS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime {api} was not found. Looked in:\n{}\nInstall it with `make ort` \
         (the PyPI wheel onnxruntime=={wheel} into ./.ort), `pip install onnxruntime=={wheel}`, \
         or a distro package, or point `model.onnxruntime` / ORT_DYLIB_PATH at libonnxruntime.so",
        .tried.iter().map(|t| format!("  - {t}")).collect::<Vec<_>>().join("\n"),
        api = ort_version(),
        wheel = ort_wheel_version()
    )]
    NotFound { tried: Vec<String> },
    #[error("ONNX Runtime at {path} loaded but could not start: {source}")]
    Start { path: PathBuf, source: ort::Error },
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read model {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: ONNX Runtime cannot load it: {source}")]
    Load { path: PathBuf, source: ort::Error },
    #[error("{path}: tensor `{name}`: expected {expected}, found {found}")]
    Tensor { path: PathBuf, name: String, expected: String, found: String },
    #[error("{path}: required {kind} `{name}` is missing ({what})")]
    Missing { path: PathBuf, kind: &'static str, name: &'static str, what: &'static str },
    #[error(
        "{path}: unknown input `{name}`: autotuned feeds only the contract's inputs \
             (audio_buffer, target_pitch, correction_strength, {}, scale_notes, scale_period, \
             note_hysteresis, voice_mix, and state inputs X that have an output X_out)",
        parameter_inputs().join(", ")
    )]
    UnknownInput { path: PathBuf, name: String },
    #[error("{path}: metadata `{key}` = {value:?}: {reason}")]
    Metadata { path: PathBuf, key: &'static str, value: String, reason: String },
    #[error("{path}: {source}")]
    Allocate { path: PathBuf, source: InferenceError },
    #[error(
        "{path}: the model has no voice axis (its first axis is a fixed 1), so it serves one voice; \
         {voices} voices ([jack] voices, or a file's channels) need a model whose tensors lead with a \
         dynamic `voices` axis"
    )]
    Unbatched { path: PathBuf, voices: usize },
    #[error("{path}: warm-up run failed: {reason}")]
    WarmUp { path: PathBuf, reason: String },
}

/// Where a loaded ONNX Runtime came from, and its environment.
pub struct Runtime {
    pub library: PathBuf,
    environment: Environment,
}

/// Finds libonnxruntime and starts it. Order: `configured`, `ORT_DYLIB_PATH`, the project's
/// `.ort/` (next to the working directory or the executable), Python site-packages, system
/// library directories. Only one runtime can be started per process.
pub fn start_runtime(configured: Option<&Path>) -> Result<Runtime, RuntimeError> {
    let mut tried = Vec::new();
    for candidate in runtime_candidates(configured) {
        if !candidate.is_file() {
            tried.push(format!("{} (not there)", candidate.display()));
            continue;
        }
        match ort::init_from(&candidate) {
            Ok(builder) => {
                let environment = builder
                    .with_name("autotuned")
                    .build()
                    .map_err(|source| RuntimeError::Start { path: candidate.clone(), source })?;
                return Ok(Runtime { library: candidate, environment });
            }
            Err(e) => tried.push(format!("{} ({e})", candidate.display())),
        }
    }
    Err(RuntimeError::NotFound { tried })
}

fn runtime_candidates(configured: Option<&Path>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = configured.map(Path::to_path_buf).into_iter().collect();
    if let Some(env) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        out.push(PathBuf::from(env));
    }
    let mut roots = vec![PathBuf::from(".")];
    if let Ok(exe) = std::env::current_exe() {
        // target/{debug,release}/autotuned → the checkout's root.
        roots.extend(exe.ancestors().skip(1).take(3).map(Path::to_path_buf));
    }
    for root in roots {
        out.extend(wheel_library(&root.join(".ort/onnxruntime/capi")));
    }
    let mut site_dirs: Vec<PathBuf> = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        site_dirs.push(PathBuf::from(home).join(".local/lib"));
    }
    site_dirs.extend(["/usr/local/lib", "/usr/lib"].map(PathBuf::from));
    for dir in site_dirs {
        for python in sorted_entries(&dir).into_iter().filter(|p| file_name(p).starts_with("python3")) {
            for packages in ["site-packages", "dist-packages"] {
                out.extend(wheel_library(&python.join(packages).join("onnxruntime/capi")));
            }
        }
    }
    for dir in ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/local/lib", "/usr/lib"] {
        out.push(Path::new(dir).join("libonnxruntime.so"));
        out.push(Path::new(dir).join("libonnxruntime.so.1"));
    }
    out.dedup();
    out
}

fn wheel_library(capi: &Path) -> Option<PathBuf> {
    sorted_entries(capi).into_iter().filter(|p| file_name(p).starts_with("libonnxruntime.so")).max()
}

/// The model inputs the parameter table feeds.
fn parameter_inputs() -> Vec<&'static str> {
    TABLE.iter().filter_map(|r| r.model_input).collect()
}

/// The `.onnx` files directly inside `dir`, sorted.
pub fn models_in(dir: &Path) -> Vec<PathBuf> {
    sorted_entries(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "onnx")).collect()
}

/// The entries of `dir`, sorted; none if it cannot be read.
fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    entries.sort();
    entries
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The role of each input a model may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InputRole {
    Audio,
    Target,
    Strength,
    Parameter(Id),
    ScaleNotes,
    ScalePeriod,
    NoteHysteresis,
    State,
    VoiceMix,
}

/// What a model offers, as found at load.
#[derive(Clone, Debug, PartialEq)]
pub struct Contract {
    pub name: String,
    pub version: String,
    /// The pitch and voicing stage, as the model's `detector` metadata states it.
    pub detector: Option<String>,
    pub sample_rate: u32,
    pub latency_samples: usize,
    /// Voices the shapes below are resolved for (the first axis of every tensor).
    pub voices: usize,
    /// Whether that axis is dynamic, so the model can serve any number of voices.
    pub batched: bool,
    /// (name, shape) of every input autotuned feeds, in feeding order.
    pub inputs: Vec<(String, Vec<usize>)>,
    /// (name, shape) of every output autotuned reads.
    pub outputs: Vec<(String, Vec<usize>)>,
    pub slots: Slots,
}

impl Contract {
    /// Names of the extended-contract features this model has and lacks.
    pub fn features(&self) -> (Vec<&'static str>, Vec<&'static str>) {
        let s = &self.slots;
        let fed = |input: &str| s.params.iter().any(|(_, id)| id.row().model_input == Some(input));
        // The allowed notes reach a model as 12 flags or as a list of pitches: either serves scales.
        let notes = |input: &str| fed(input) || (input == "scale_mask" && s.scale.is_some());
        let mut all: Vec<(&'static str, bool)> = parameter_inputs().into_iter().map(|i| (i, notes(i))).collect();
        all.extend([
            ("detected_pitch", s.detected.is_some()),
            ("applied_target_hz", s.applied_target.is_some()),
            ("state", !s.state.is_empty()),
            ("voice_mix", s.voice_mix.is_some()),
            ("scale_notes", s.scale.is_some()),
        ]);
        let has = all.iter().filter(|(_, h)| *h).map(|(n, _)| *n).collect();
        let lacks = all.iter().filter(|(_, h)| !*h).map(|(n, _)| *n).collect();
        (has, lacks)
    }
}

impl fmt::Display for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model        {} {}", self.name, self.version)?;
        writeln!(f, "detector     {}", self.detector.as_deref().unwrap_or("not stated (no `detector` metadata)"))?;
        writeln!(f, "sample rate  {} Hz, block {BLOCK}, latency {} samples", self.sample_rate, self.latency_samples)?;
        writeln!(f, "inputs")?;
        for (name, shape) in &self.inputs {
            writeln!(f, "  {name:20} f32 {shape:?}")?;
        }
        writeln!(f, "outputs")?;
        for (name, shape) in &self.outputs {
            writeln!(f, "  {name:20} f32 {shape:?}")?;
        }
        let (has, lacks) = self.features();
        writeln!(f, "state pairs  {}", self.slots.state.len())?;
        let voices = if self.batched { "any number (a dynamic voice axis)" } else { "1 (no voice axis)" };
        writeln!(f, "voices       {voices}")?;
        writeln!(f, "features     {}", if has.is_empty() { "base contract only".to_owned() } else { has.join(", ") })?;
        write!(f, "unavailable  {}", if lacks.is_empty() { "none".to_owned() } else { lacks.join(", ") })
    }
}

impl Runtime {
    /// A session configured for the RT thread: one intra-op and one inter-op thread, no
    /// spinning, every graph optimisation.
    pub fn session(&self, path: &Path) -> Result<Session, ModelError> {
        let bytes =
            std::fs::read(path).map_err(|e| ModelError::Read { path: path.to_owned(), reason: e.to_string() })?;
        if bytes.is_empty() {
            return Err(ModelError::Read { path: path.to_owned(), reason: "the file is empty".into() });
        }
        build_session(&self.environment, &bytes).map_err(|source| ModelError::Load { path: path.to_owned(), source })
    }

    /// Loads, validates and warms up a model for `sample_rate` and one voice; ready for the RT
    /// thread.
    pub fn load(&self, path: &Path, sample_rate: Option<u32>) -> Result<(Inference, Contract), ModelError> {
        self.load_voices(path, sample_rate, 1)
    }

    /// [`Runtime::load`] with every tensor sized for `voices` voices, run together.
    pub fn load_voices(
        &self,
        path: &Path,
        sample_rate: Option<u32>,
        voices: usize,
    ) -> Result<(Inference, Contract), ModelError> {
        let session = self.session(path)?;
        let contract = validate(path, &session, voices)?;
        if let Some(rate) = sample_rate.filter(|r| *r != contract.sample_rate) {
            return Err(ModelError::Metadata {
                path: path.to_owned(),
                key: "sample_rate",
                value: contract.sample_rate.to_string(),
                reason: format!("the server runs at {rate} Hz; use a model made for {rate} Hz"),
            });
        }
        let mut inference = Inference::new(
            session,
            contract.voices,
            &contract.inputs,
            &contract.outputs,
            contract.slots.clone(),
            contract.latency_samples,
        )
        .map_err(|source| ModelError::Allocate { path: path.to_owned(), source })?;
        warm_up(&mut inference, contract.sample_rate)
            .map_err(|reason| ModelError::WarmUp { path: path.to_owned(), reason })?;
        Ok((inference, contract))
    }
}

fn build_session(environment: &Environment, bytes: &[u8]) -> ort::Result<Session> {
    Session::builder(environment)?
        // A kernel that fails inside `Run` would otherwise be logged from the JACK thread; its
        // status is returned either way and counted as a model fault.
        .with_log_level(LogLevel::Fatal)?
        .with_optimization_level(GraphOptimizationLevel::All)?
        .with_intra_threads(1)?
        .with_inter_threads(1)?
        .with_intra_op_spinning(false)?
        .with_inter_op_spinning(false)?
        .commit_from_memory(bytes)
}

/// Runs a voiced tone through every voice of the model so first-run costs are paid off the RT
/// thread, then resets its state.
fn warm_up(inference: &mut Inference, sample_rate: u32) -> Result<(), String> {
    let voices = inference.voices();
    let controls = vec![Controls::default(); voices];
    let mut reports = vec![Ok(BlockReport::default()); voices];
    let mut input = vec![0.0f32; voices * BLOCK];
    let mut out = vec![0.0f32; voices * BLOCK];
    for block in 0..WARM_UP_BLOCKS {
        for (i, x) in input.iter_mut().enumerate() {
            let t = (block * BLOCK + i % BLOCK) as f32 / sample_rate as f32;
            *x = 0.3 * (std::f32::consts::TAU * 196.0 * t).sin();
        }
        inference.run(&input, &controls, &mut out, &mut reports).map_err(|kind| format!("{kind:?}"))?;
        if let Some(Err(kind)) = reports.iter().find(|r| r.is_err()) {
            return Err(format!("{kind:?}"));
        }
    }
    inference.reset_state();
    Ok(())
}

/// The optional input that mixes voices for analysis: [voices, voices], both axes the voice axis.
const VOICE_MIX: &str = "voice_mix";
/// The allowed pitch classes ([N, SCALE_SLOTS], semitones above C) and their period ([N, 1],
/// semitones; 0 = none allowed) auto mode snaps to; both or neither are fed.
const SCALE_NOTES: &str = "scale_notes";
const SCALE_PERIOD: &str = "scale_period";
/// Semitones another allowed pitch must be closer before auto mode leaves its note ([N, 1]).
const NOTE_HYSTERESIS: &str = "note_hysteresis";

/// `voice_mix`'s shape: both axes dynamic (resolved to `voices`), or a fixed [1, 1].
fn square_shape(path: &Path, name: &str, dtype: &ValueType, voices: usize) -> Result<(Vec<usize>, bool), ModelError> {
    let ValueType::Tensor { ty: TensorElementType::Float32, shape, .. } = dtype else {
        return tensor_shape(path, name, dtype, voices);
    };
    let dynamic = shape.len() == 2 && shape.iter().all(|d| *d <= 0);
    let resolved = shape.iter().map(|&d| if d > 0 { d as usize } else { voices }).collect();
    Ok((resolved, dynamic))
}

/// A tensor's shape with a dynamic first axis resolved to `voices`, and whether it was dynamic.
fn tensor_shape(path: &Path, name: &str, dtype: &ValueType, voices: usize) -> Result<(Vec<usize>, bool), ModelError> {
    let err = |expected: &str, found: String| ModelError::Tensor {
        path: path.to_owned(),
        name: name.to_owned(),
        expected: expected.to_owned(),
        found,
    };
    let ValueType::Tensor { ty, shape, .. } = dtype else {
        return Err(err("a tensor", format!("{dtype:?}")));
    };
    if *ty != TensorElementType::Float32 {
        return Err(err("f32", format!("{ty:?}")));
    }
    let resolved = shape
        .iter()
        .enumerate()
        .map(|(axis, &d)| match d {
            d if d > 0 => Ok(d as usize),
            // Any other dynamic axis is not servable.
            _ if axis == 0 => Ok(voices),
            _ => Err(err("static dimensions (only the voice axis may be dynamic)", format!("{shape:?}"))),
        })
        .collect::<Result<_, _>>()?;
    Ok((resolved, shape.first().is_some_and(|d| *d <= 0)))
}

fn expect_shape(path: &Path, name: &str, shape: &[usize], expected: &[usize]) -> Result<(), ModelError> {
    if shape == expected {
        return Ok(());
    }
    Err(ModelError::Tensor {
        path: path.to_owned(),
        name: name.to_owned(),
        expected: format!("f32 {expected:?}"),
        found: format!("f32 {shape:?}"),
    })
}

fn metadata_number<T: std::str::FromStr>(
    path: &Path,
    meta: &BTreeMap<String, String>,
    key: &'static str,
    default: T,
) -> Result<T, ModelError> {
    match meta.get(key) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| ModelError::Metadata {
            path: path.to_owned(),
            key,
            value: v.clone(),
            reason: "not a whole number".into(),
        }),
    }
}

/// Checks a session against the contract (see README "Model contract") for `voices` voices.
pub fn validate(path: &Path, session: &Session, voices: usize) -> Result<Contract, ModelError> {
    let meta: BTreeMap<String, String> = session
        .metadata()
        .ok()
        .map(|m| {
            let keys = m.custom_keys().unwrap_or_default();
            keys.into_iter().filter_map(|k| m.custom(&k).map(|v| (k, v))).collect()
        })
        .unwrap_or_default();
    let sample_rate: u32 = metadata_number(path, &meta, "sample_rate", 44_100)?;
    let block: usize = metadata_number(path, &meta, "block_size", BLOCK)?;
    if block != BLOCK {
        return Err(ModelError::Metadata {
            path: path.to_owned(),
            key: "block_size",
            value: block.to_string(),
            reason: format!("autotuned serves {BLOCK}-sample blocks"),
        });
    }
    if !(8_000..=192_000).contains(&sample_rate) {
        return Err(ModelError::Metadata {
            path: path.to_owned(),
            key: "sample_rate",
            value: sample_rate.to_string(),
            reason: "outside 8000..192000 Hz".into(),
        });
    }
    let latency_samples: usize = metadata_number(path, &meta, "latency_samples", 0)?;
    if latency_samples > MAX_LATENCY {
        return Err(ModelError::Metadata {
            path: path.to_owned(),
            key: "latency_samples",
            value: latency_samples.to_string(),
            reason: format!(
                "longer than the {MAX_LATENCY} samples the engine can delay its dry path by (bypass and \
                 fallbacks would drift out of time)"
            ),
        });
    }

    let mut outputs_by_name: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for o in session.outputs() {
        if let Ok((shape, _)) = tensor_shape(path, o.name(), o.dtype(), voices) {
            outputs_by_name.insert(o.name().to_owned(), shape);
        }
    }
    let declared: Vec<(String, ValueType)> = session
        .inputs()
        .iter()
        .map(|i| (i.name().to_owned(), i.dtype().clone()))
        .chain(session.overridable_initializers().into_iter().map(|i| (i.name().to_owned(), i.dtype().clone())))
        .collect();

    let mut inputs = Vec::new();
    let mut roles = Vec::new();
    let mut batched = true;
    for (name, dtype) in &declared {
        let (shape, dynamic) = if name == VOICE_MIX {
            square_shape(path, name, dtype, voices)?
        } else {
            tensor_shape(path, name, dtype, voices)?
        };
        batched &= dynamic;
        let role = match (name.as_str(), by_model_input(name)) {
            ("audio_buffer", _) => InputRole::Audio,
            ("target_pitch", _) => InputRole::Target,
            ("correction_strength", _) => InputRole::Strength,
            (VOICE_MIX, _) => InputRole::VoiceMix,
            (SCALE_NOTES, _) => InputRole::ScaleNotes,
            (SCALE_PERIOD, _) => InputRole::ScalePeriod,
            (NOTE_HYSTERESIS, _) => InputRole::NoteHysteresis,
            (_, Some(id)) => InputRole::Parameter(id),
            _ if outputs_by_name.contains_key(&format!("{name}_out")) => InputRole::State,
            _ => return Err(ModelError::UnknownInput { path: path.to_owned(), name: name.clone() }),
        };
        if voices > 1 && !dynamic {
            return Err(ModelError::Unbatched { path: path.to_owned(), voices });
        }
        match role {
            InputRole::Audio => expect_shape(path, name, &shape, &[voices, BLOCK])?,
            InputRole::Parameter(id) if matches!(id.row().kind, Kind::Mask) => {
                expect_shape(path, name, &shape, &[voices, 12])?
            }
            InputRole::State => expect_shape(path, name, &shape, &outputs_by_name[&format!("{name}_out")])?,
            InputRole::VoiceMix => expect_shape(path, name, &shape, &[voices, voices])?,
            InputRole::ScaleNotes => expect_shape(path, name, &shape, &[voices, SCALE_SLOTS])?,
            _ => expect_shape(path, name, &shape, &[voices, 1])?,
        }
        inputs.push((name.clone(), shape));
        roles.push(role);
    }
    let find = |role: InputRole| roles.iter().position(|r| *r == role);
    let missing_input = |name, what| ModelError::Missing { path: path.to_owned(), kind: "input", name, what };
    let audio = find(InputRole::Audio).ok_or_else(|| missing_input("audio_buffer", "f32 [N, 512] audio block"))?;
    let target = find(InputRole::Target).ok_or_else(|| missing_input("target_pitch", "f32 [N, 1] Hz, <= 0 = auto"))?;
    let strength = find(InputRole::Strength).ok_or_else(|| missing_input("correction_strength", "f32 [N, 1] 0..1"))?;

    let mut outputs: Vec<(String, Vec<usize>)> = Vec::new();
    let mut take_output = |name: &str, expected: &[usize]| -> Result<Option<usize>, ModelError> {
        let Some(shape) = outputs_by_name.get(name) else { return Ok(None) };
        expect_shape(path, name, shape, expected)?;
        outputs.push((name.to_owned(), shape.clone()));
        Ok(Some(outputs.len() - 1))
    };
    let missing_output = |name, what| ModelError::Missing { path: path.to_owned(), kind: "output", name, what };
    let corrected = take_output("corrected_audio", &[voices, BLOCK])?
        .ok_or_else(|| missing_output("corrected_audio", "f32 [N, 512]"))?;
    let confidence =
        take_output("confidence", &[voices, 1])?.ok_or_else(|| missing_output("confidence", "f32 [N, 1] 0..1"))?;
    let detected = take_output("detected_pitch", &[voices, 1])?;
    let applied_target = take_output("applied_target_hz", &[voices, 1])?;
    let mut state = Vec::new();
    for (index, (name, shape)) in inputs.iter().enumerate() {
        if roles[index] == InputRole::State {
            let out = take_output(&format!("{name}_out"), shape)?.expect("state outputs were matched above");
            state.push((index, out));
        }
    }
    let slots = Slots {
        audio,
        target,
        strength,
        params: roles
            .iter()
            .enumerate()
            .filter_map(|(slot, role)| match role {
                InputRole::Parameter(id) => Some((slot, *id)),
                _ => None,
            })
            .collect(),
        corrected,
        confidence,
        detected,
        applied_target,
        state,
        voice_mix: find(InputRole::VoiceMix),
        scale: find(InputRole::ScaleNotes).zip(find(InputRole::ScalePeriod)),
        hysteresis: find(InputRole::NoteHysteresis),
    };
    let name = meta.get("name").cloned().unwrap_or_else(|| file_name(path));
    let version = meta.get("version").cloned().unwrap_or_else(|| "unversioned".into());
    let detector = meta.get("detector").cloned();
    Ok(Contract { name, version, detector, sample_rate, latency_samples, voices, batched, inputs, outputs, slots })
}
