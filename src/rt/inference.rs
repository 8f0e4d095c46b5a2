//! One loaded model with every tensor it reads and writes allocated up front; `run` executes a
//! block on the RT thread. Built (and warmed up) off the RT thread by `model.rs`.
//!
//! The call goes straight to ONNX Runtime's C `Run` with arrays of names and values prepared
//! here at construction: the `ort` crate's own run paths either allocate per call or can only
//! name the session's plain inputs, while a model's optional inputs (state, controls) are
//! "overridable initializers" that must be fed by name.

use std::ffi::{CString, c_char};
use std::ptr;

use ort::AsPointer;
use ort::session::Session;
use ort::sys::{OrtSession, OrtValue};
use ort::value::Tensor;

use super::events::FaultKind;
use super::params::Params;
use crate::parameters::{Id, Kind};

/// What the model is fed besides audio, once per block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Controls {
    /// Hz; ≤ 0 asks the model for auto mode.
    pub target_hz: f32,
    pub strength: f32,
    /// Every parameter; the model gets those its table rows name as model inputs.
    pub params: Params,
}

impl Default for Controls {
    /// Auto mode, hard tune, and the table's defaults.
    fn default() -> Self {
        Controls { target_hz: 0.0, strength: 1.0, params: Params::default() }
    }
}

/// What a block reported besides audio.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockReport {
    pub confidence: f32,
    /// Hz, 0 when unvoiced or when the model has no `detected_pitch` output.
    pub detected_hz: f32,
    /// The target the model steers to, Hz; 0 when it has none or no `applied_target_hz` output.
    pub target_hz: f32,
}

/// Which of the preallocated inputs and outputs plays which part of the contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slots {
    pub audio: usize,
    pub target: usize,
    pub strength: usize,
    /// Inputs fed from a parameter (its row's `model_input`).
    pub params: Vec<(usize, Id)>,
    pub corrected: usize,
    pub confidence: usize,
    pub detected: Option<usize>,
    pub applied_target: Option<usize>,
    /// (input, output) pairs whose output is fed back as the input next block.
    pub state: Vec<(usize, usize)>,
    /// The [voices, voices] mix linked voices are analysed on; identity unless linked.
    pub voice_mix: Option<usize>,
    /// (`scale_notes`, `scale_period`): the pitches auto mode snaps to, from any tuning.
    pub scale: Option<(usize, usize)>,
    /// `note_hysteresis`: how much closer another pitch must be before auto mode moves to it.
    pub hysteresis: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("tensor name {0:?} contains a NUL byte")]
    Name(String),
    #[error("could not allocate tensor `{name}`: {source}")]
    Allocate { name: String, source: ort::Error },
}

/// A named f32 tensor owned here, with its data pointer taken once.
struct Slot {
    name: CString,
    value: Tensor<f32>,
    data: *mut f32,
    len: usize,
}

impl Slot {
    fn new(name: &str, shape: &[usize]) -> Result<Slot, InferenceError> {
        let len = shape.iter().product();
        let mut value = Tensor::from_array((shape.to_vec(), vec![0.0f32; len]))
            .map_err(|source| InferenceError::Allocate { name: name.to_owned(), source })?;
        let data = value.extract_tensor_mut().1.as_mut_ptr();
        let name = CString::new(name).map_err(|_| InferenceError::Name(name.to_owned()))?;
        Ok(Slot { name, value, data, len })
    }

    fn data(&self) -> &[f32] {
        // SAFETY: `data` points at the `len` floats owned by `self.value`, which lives as long as
        // `self`; ONNX Runtime only writes them inside `Run`, which takes `&mut Inference`.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }

    fn data_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `data`, and `&mut self` makes this the only live view.
        unsafe { std::slice::from_raw_parts_mut(self.data, self.len) }
    }
}

/// A session plus every tensor a block needs, for a fixed number of voices: each tensor is
/// [voices, …], one row per voice, and the rows never mix.
pub struct Inference {
    session: Session,
    voices: usize,
    inputs: Vec<Slot>,
    outputs: Vec<Slot>,
    input_names: Vec<*const c_char>,
    input_values: Vec<*const OrtValue>,
    output_names: Vec<*const c_char>,
    output_values: Vec<*mut OrtValue>,
    slots: Slots,
    latency: usize,
}

// SAFETY: the raw pointers point into tensors and strings owned by this struct, on the heap, so
// they stay valid when it moves to another thread; the ONNX Runtime session is usable from any
// thread as long as one thread at a time runs it, which `&mut self` on `run` guarantees.
unsafe impl Send for Inference {}

impl Inference {
    /// Allocates every tensor. `inputs` and `outputs` are (name, shape) in the order `slots`
    /// indexes them, every shape leading with the voice axis; only the listed outputs are
    /// computed. `latency` is the model's delay in samples.
    pub fn new(
        session: Session,
        voices: usize,
        inputs: &[(String, Vec<usize>)],
        outputs: &[(String, Vec<usize>)],
        slots: Slots,
        latency: usize,
    ) -> Result<Inference, InferenceError> {
        let inputs: Vec<Slot> = inputs.iter().map(|(n, s)| Slot::new(n, s)).collect::<Result<_, _>>()?;
        let mut outputs: Vec<Slot> = outputs.iter().map(|(n, s)| Slot::new(n, s)).collect::<Result<_, _>>()?;
        let input_names = inputs.iter().map(|s| s.name.as_ptr()).collect();
        let input_values = inputs.iter().map(|s| s.value.ptr()).collect();
        let output_names = outputs.iter().map(|s| s.name.as_ptr()).collect();
        let output_values = outputs.iter_mut().map(|s| s.value.ptr_mut()).collect();
        let voices = voices.max(1);
        let mut inference = Inference {
            session,
            voices,
            inputs,
            outputs,
            input_names,
            input_values,
            output_names,
            output_values,
            slots,
            latency,
        };
        inference.reset_state();
        inference.link(&[]);
        Ok(inference)
    }

    /// Makes each group of voices (0-based indices) be analysed on the mean of its voices, so the
    /// group is corrected alike; every other voice alone. Does nothing for a model without a
    /// `voice_mix` input. Called off the RT thread, before the model runs.
    pub fn link(&mut self, groups: &[Vec<usize>]) {
        let Some(slot) = self.slots.voice_mix else { return };
        let voices = self.voices;
        let mix = self.inputs[slot].data_mut();
        mix.fill(0.0);
        for voice in 0..voices {
            mix[voice * voices + voice] = 1.0;
        }
        for group in groups.iter().filter(|g| g.iter().all(|v| *v < voices)) {
            for &row in group {
                mix[row * voices..(row + 1) * voices].fill(0.0);
                for &column in group {
                    mix[row * voices + column] = 1.0 / group.len() as f32;
                }
            }
        }
    }

    /// Whether the model can analyse linked voices together (it has a `voice_mix` input).
    pub fn links(&self) -> bool {
        self.slots.voice_mix.is_some()
    }

    /// Runs one block of every voice: `audio` and `out` hold the voices' blocks one after the
    /// other (`voices × BLOCK`), `controls` and `reports` one entry per voice. A failed `Run`
    /// leaves `out` untouched, resets every voice's state and is the error; a voice whose row
    /// came back non-finite gets `Err(NonFinite)` in `reports`, its part of `out` untouched and
    /// its state reset, so one bad block cannot poison the next, nor the other voices.
    pub fn run(
        &mut self,
        audio: &[f32],
        controls: &[Controls],
        out: &mut [f32],
        reports: &mut [Result<BlockReport, FaultKind>],
    ) -> Result<(), FaultKind> {
        let voices = self.voices;
        // A caller that breaks the shapes gets a fault (dry audio), never a panic.
        let block_len = self.inputs[self.slots.audio].len;
        if audio.len() != block_len || out.len() != block_len || controls.len() != voices || reports.len() != voices {
            return Err(FaultKind::NonFinite);
        }
        self.write_inputs(audio, controls);
        let session: *mut OrtSession = self.session.ptr().cast_mut();
        // SAFETY: every name and value pointer refers to a live `Slot` of `self`; the arrays'
        // lengths are passed alongside; every output value is preallocated with the shape the
        // contract validated, so ONNX Runtime writes into it and returns no new value.
        let status = unsafe {
            (ort::api().Run)(
                session,
                ptr::null(),
                self.input_names.as_ptr(),
                self.input_values.as_ptr(),
                self.input_values.len(),
                self.output_names.as_ptr(),
                self.output_names.len(),
                self.output_values.as_mut_ptr(),
            )
        };
        if !status.0.is_null() {
            // SAFETY: a non-null status is an error object we own and release exactly once.
            let code = unsafe {
                let code = (ort::api().GetErrorCode)(status.0) as i32;
                (ort::api().ReleaseStatus)(status.0);
                code
            };
            self.reset_state();
            return Err(FaultKind::RunFailed(code));
        }
        if self.outputs[self.slots.corrected].len != out.len() {
            self.reset_state();
            return Err(FaultKind::NonFinite);
        }
        let sane = |x: f32| if x.is_finite() { x } else { 0.0 };
        let row = out.len() / voices;
        for (voice, report) in reports.iter_mut().enumerate() {
            let corrected = &self.outputs[self.slots.corrected].data()[voice * row..(voice + 1) * row];
            if !corrected.iter().all(|x| x.is_finite()) {
                self.reset_voice_state(voice);
                *report = Err(FaultKind::NonFinite);
                continue;
            }
            out[voice * row..(voice + 1) * row].copy_from_slice(corrected);
            let first = |slot: usize| self.outputs[slot].data()[voice * self.outputs[slot].len / voices];
            *report = Ok(BlockReport {
                confidence: sane(first(self.slots.confidence)),
                detected_hz: self.slots.detected.map_or(0.0, |slot| sane(first(slot))),
                target_hz: self.slots.applied_target.map_or(0.0, |slot| sane(first(slot))),
            });
            for &(input, output) in &self.slots.state {
                let (inputs, outputs) = (&mut self.inputs, &self.outputs);
                let width = outputs[output].len / voices;
                let rows = voice * width..(voice + 1) * width;
                inputs[input].data_mut()[rows.clone()].copy_from_slice(&outputs[output].data()[rows]);
            }
        }
        Ok(())
    }

    /// How many voices each run serves.
    pub fn voices(&self) -> usize {
        self.voices
    }

    /// Whether the model is fed parameter `id` (and so applies it itself).
    pub fn feeds(&self, id: Id) -> bool {
        self.slots.params.iter().any(|(_, fed)| *fed == id)
    }

    /// Whether the model reports the target it steers to.
    pub fn reports_target(&self) -> bool {
        self.slots.applied_target.is_some()
    }

    /// The model's delay from input to output, in samples.
    pub fn latency(&self) -> usize {
        self.latency
    }

    /// Zeros every state input: the start of a stream.
    pub fn reset_state(&mut self) {
        for &(input, _) in &self.slots.state {
            self.inputs[input].data_mut().fill(0.0);
        }
    }

    /// Zeros one voice's row of every state input.
    fn reset_voice_state(&mut self, voice: usize) {
        for &(input, _) in &self.slots.state {
            let width = self.inputs[input].len / self.voices;
            self.inputs[input].data_mut()[voice * width..(voice + 1) * width].fill(0.0);
        }
    }

    fn write_inputs(&mut self, audio: &[f32], controls: &[Controls]) {
        let slots = &self.slots;
        let voices = self.voices;
        self.inputs[slots.audio].data_mut().copy_from_slice(audio);
        for (voice, c) in controls.iter().enumerate() {
            self.inputs[slots.target].data_mut()[voice] = c.target_hz;
            self.inputs[slots.strength].data_mut()[voice] = c.strength;
            for &(slot, id) in &slots.params {
                let value = c.params.get(id);
                let data = self.inputs[slot].data_mut();
                let width = data.len() / voices;
                let row = &mut data[voice * width..(voice + 1) * width];
                match id.row().kind {
                    Kind::Mask => {
                        for (class, flag) in row.iter_mut().enumerate() {
                            *flag = f32::from(u8::from(value as u16 & (1 << class) != 0));
                        }
                    }
                    _ => {
                        if let Some(first) = row.first_mut() {
                            *first = value;
                        }
                    }
                }
            }
            if let Some((notes, period)) = slots.scale {
                let width = self.inputs[notes].len / voices;
                let row = &mut self.inputs[notes].data_mut()[voice * width..(voice + 1) * width];
                let (repeats, hysteresis) = c.params.allowed_pitches(row);
                self.inputs[period].data_mut()[voice] = repeats;
                if let Some(slot) = slots.hysteresis {
                    self.inputs[slot].data_mut()[voice] = hysteresis;
                }
            }
        }
    }
}
