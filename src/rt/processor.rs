//! The block engine: one 512-frame block of every voice in, one out, on the RT thread. It knows
//! no JACK; the JACK handler and the offline file processor both drive it.
//!
//! Per block: take pending commands, read each voice's parameters once, run the model once for
//! all voices, fall back to dry audio on a fault (only the faulty voice when one voice's output
//! is bad), crossfade to and from bypass per voice, publish meters. The dry path is the input
//! delayed by the model's latency, so bypass and fallbacks stay time-aligned with the wet path
//! and a bypassed node is bit-identical to its input after that delay.

use std::sync::Arc;

use rtrb::{Consumer, Producer};

use super::events::{Command, FaultKind, RtEvent};
use super::expression::{Expression, Shaping};
use super::inference::{BlockReport, Controls, Inference};
use super::meters::Meters;
use super::midi::Held;
use super::params::{Mode, Params, SharedParams};
use crate::BLOCK;
use crate::parameters::{NOTES, SCALE, STRENGTH, TARGET_HZ, TRANSPOSE, TUNING_HZ};
use crate::scales::{KEYBOARD, note_hz};

/// Longest model latency the dry delay line can follow, in samples.
pub const MAX_LATENCY: usize = 8192;
/// Bypass crossfade length, in samples (~5.8 ms at 44.1 kHz).
const FADE_SAMPLES: f32 = 256.0;
/// Consecutive faulty blocks after which the model is retired until a reload.
pub const MAX_CONSECUTIVE_FAULTS: u32 = 100;

/// The rings a processor talks through; the other ends belong to the supervisor.
pub struct ProcessorRings {
    pub commands: Consumer<Command>,
    pub retired: Producer<Box<Inference>>,
    pub events: Producer<RtEvent>,
}

/// A fixed-capacity delay line whose length can change without allocating.
struct DelayLine {
    buffer: Box<[f32]>,
    write: usize,
    delay: usize,
}

impl DelayLine {
    fn new(delay: usize) -> DelayLine {
        DelayLine { buffer: vec![0.0; MAX_LATENCY + BLOCK].into_boxed_slice(), write: 0, delay: delay.min(MAX_LATENCY) }
    }

    /// Writes `input` and reads the same number of samples `delay` samples older into `out`.
    fn process(&mut self, input: &[f32], out: &mut [f32]) {
        let len = self.buffer.len();
        for (x, y) in input.iter().zip(out.iter_mut()) {
            self.buffer[self.write] = *x;
            *y = self.buffer[(self.write + len - self.delay) % len];
            self.write = (self.write + 1) % len;
        }
    }
}

/// What one voice carries from block to block besides the model's own state.
struct Voice {
    params: Arc<SharedParams>,
    current: Params,
    dry_line: DelayLine,
    /// 1 = all wet, 0 = all dry (bypassed); moves towards the bypass setting per sample.
    wet_gain: f32,
    expression: Expression,
}

pub struct Processor {
    model: Option<Box<Inference>>,
    latency: usize,
    rings: ProcessorRings,
    meters: Arc<Meters>,
    voices: Box<[Voice]>,
    /// The voices' blocks one after the other (`voices × BLOCK`), as the model takes them.
    clean: Box<[f32]>,
    dry: Box<[f32]>,
    wet: Box<[f32]>,
    controls: Box<[Controls]>,
    outcomes: Box<[Result<BlockReport, FaultKind>]>,
    reports: Box<[BlockReport]>,
    fault_streak: u32,
    blocks: u64,
    /// One block's length, ms, at the stream's rate.
    block_ms: f32,
}

impl Processor {
    /// One voice per entry of `params`. `model` may be absent: audio passes through until one
    /// is swapped in; it must serve as many voices as there are `params`.
    pub fn new(
        model: Option<Box<Inference>>,
        rings: ProcessorRings,
        params: Vec<Arc<SharedParams>>,
        meters: Arc<Meters>,
    ) -> Processor {
        let latency = model.as_ref().map_or(0, |m| m.latency().min(MAX_LATENCY));
        meters.set_model_loaded(model.is_some());
        let voices: Box<[Voice]> = params
            .into_iter()
            .map(|params| {
                let current = params.try_load().unwrap_or_default();
                Voice {
                    params,
                    current,
                    dry_line: DelayLine::new(latency),
                    wet_gain: if current.bypass() { 0.0 } else { 1.0 },
                    expression: Expression::default(),
                }
            })
            .collect();
        let n = voices.len();
        Processor {
            model,
            latency,
            rings,
            meters,
            clean: vec![0.0; n * BLOCK].into_boxed_slice(),
            dry: vec![0.0; n * BLOCK].into_boxed_slice(),
            wet: vec![0.0; n * BLOCK].into_boxed_slice(),
            controls: vec![Controls::default(); n].into_boxed_slice(),
            outcomes: vec![Ok(BlockReport::default()); n].into_boxed_slice(),
            reports: vec![BlockReport::default(); n].into_boxed_slice(),
            voices,
            fault_streak: 0,
            blocks: 0,
            block_ms: BLOCK as f32 * 1000.0 / 44_100.0,
        }
    }

    /// The rate the stream runs at (44.1 kHz unless set), for the controls that count time.
    pub fn set_sample_rate(&mut self, sample_rate: u32) {
        self.block_ms = BLOCK as f32 * 1000.0 / sample_rate.max(1) as f32;
    }

    /// How many voices each block carries.
    pub fn voices(&self) -> usize {
        self.voices.len()
    }

    /// The parameters voice `index` (0-based) had in the last block.
    pub fn params(&self, index: usize) -> Params {
        self.voices.get(index).map_or_else(Params::default, |v| v.current)
    }

    /// The delay from input to output in samples, for the current model.
    pub fn latency(&self) -> usize {
        self.latency
    }

    /// Processes exactly one block of every voice: `input` and `output` hold the voices'
    /// blocks one after the other and must be `voices × BLOCK` long, else the output is
    /// silence (a contract breach by the caller must not panic on the RT thread).
    /// `held` is what each voice's MIDI input holds (for MIDI mode and the `midi` scale). Each
    /// voice's report is in [`Processor::reports`] afterwards.
    pub fn process(&mut self, input: &[f32], output: &mut [f32], held: &[Held]) {
        let n = self.voices.len();
        if input.len() != n * BLOCK || output.len() != n * BLOCK || held.len() != n {
            output.fill(0.0);
            self.reports.fill(BlockReport::default());
            return;
        }
        self.take_commands();
        for (c, x) in self.clean.iter_mut().zip(input) {
            *c = if x.is_finite() { *x } else { 0.0 };
        }
        for (k, voice) in self.voices.iter_mut().enumerate() {
            if let Some(p) = voice.params.try_load() {
                voice.current = p;
            }
            let rows = k * BLOCK..(k + 1) * BLOCK;
            voice.dry_line.process(&self.clean[rows.clone()], &mut self.dry[rows]);
        }
        self.run_model(held);
        for ((voice, out), (wet, dry)) in self
            .voices
            .iter_mut()
            .zip(output.chunks_exact_mut(BLOCK))
            .zip(self.wet.chunks_exact(BLOCK).zip(self.dry.chunks_exact(BLOCK)))
        {
            voice.mix(wet, dry, out);
        }
        self.blocks += 1;
    }

    /// What each voice's last block reported, voice 1 first.
    pub fn reports(&self) -> &[BlockReport] {
        &self.reports
    }

    /// What each voice's model was fed for its last block (the strength after flex-tune, the
    /// target), voice 1 first.
    pub fn fed(&self) -> &[Controls] {
        &self.controls
    }

    fn run_model(&mut self, held: &[Held]) {
        let Some(model) = self.model.as_mut() else {
            self.reports.fill(BlockReport::default());
            self.wet.copy_from_slice(&self.dry);
            return;
        };
        let transposes = model.feeds(TRANSPOSE);
        for (((controls, voice), held), last) in
            self.controls.iter_mut().zip(self.voices.iter_mut()).zip(held).zip(self.reports.iter())
        {
            let shaping = voice.expression.next(&voice.current, last, self.block_ms);
            *controls = model_controls(&voice.current, held, &shaping, transposes);
        }
        self.reports.fill(BlockReport::default());
        let mut faulted = None;
        match model.run(&self.clean, &self.controls, &mut self.wet, &mut self.outcomes) {
            Ok(()) => {
                let reports_target = model.reports_target();
                for (k, outcome) in self.outcomes.iter().enumerate() {
                    let rows = k * BLOCK..(k + 1) * BLOCK;
                    match outcome {
                        Ok(report) => {
                            let mut report = *report;
                            if !reports_target {
                                report.target_hz = self.controls[k].target_hz;
                            }
                            self.meters.voice(k).publish(report.detected_hz, report.confidence, report.target_hz);
                            self.reports[k] = report;
                        }
                        Err(kind) => {
                            self.wet[rows.clone()].copy_from_slice(&self.dry[rows]);
                            faulted = Some(*kind);
                        }
                    }
                }
                self.meters.count_block();
            }
            Err(kind) => {
                self.wet.copy_from_slice(&self.dry);
                faulted = Some(kind);
            }
        }
        let Some(kind) = faulted else {
            self.fault_streak = 0;
            return;
        };
        self.meters.count_fault();
        self.fault_streak += 1;
        let _ = self.rings.events.push(RtEvent::Fault { kind, block: self.blocks });
        if self.fault_streak >= MAX_CONSECUTIVE_FAULTS && self.rings.retired.slots() > 0 {
            self.retire_model();
            let _ = self.rings.events.push(RtEvent::ModelUnloaded { after_faults: self.fault_streak });
            self.fault_streak = 0;
        }
    }

    /// Applies queued commands. A command that would retire a model waits in the ring while the
    /// retire ring is full, so no model is ever dropped here. The supervisor only sends models
    /// loaded for this processor's number of voices (another would fault every block).
    fn take_commands(&mut self) {
        while self.rings.retired.slots() > 0 || self.model.is_none() {
            let Ok(command) = self.rings.commands.pop() else { return };
            match command {
                Command::Swap(new) => {
                    let latency = new.latency();
                    self.retire_model();
                    self.model = Some(new);
                    self.set_latency(latency.min(MAX_LATENCY));
                    self.meters.set_model_loaded(true);
                    let _ = self.rings.events.push(RtEvent::ModelSwapped { block: self.blocks });
                }
                Command::Unload => self.retire_model(),
            }
        }
    }

    fn set_latency(&mut self, latency: usize) {
        self.latency = latency;
        for voice in self.voices.iter_mut() {
            voice.dry_line.delay = latency;
        }
    }

    fn retire_model(&mut self) {
        if let Some(old) = self.model.take() {
            if let Err(rtrb::PushError::Full(old)) = self.rings.retired.push(old) {
                // Callers check for a free slot first; keep running it rather than drop it here.
                self.model = Some(old);
                return;
            }
            self.set_latency(0);
            self.meters.set_model_loaded(false);
        }
    }
}

impl Voice {
    /// This voice's output: wet, dry (bypassed), or a crossfade on the way between them.
    fn mix(&mut self, wet: &[f32], dry: &[f32], output: &mut [f32]) {
        let target = if self.current.bypass() { 0.0 } else { 1.0 };
        if self.wet_gain == target {
            output.copy_from_slice(if target == 0.0 { dry } else { wet });
            return;
        }
        let step = 1.0 / FADE_SAMPLES;
        for ((y, wet), dry) in output.iter_mut().zip(wet).zip(dry) {
            self.wet_gain = if target > self.wet_gain {
                (self.wet_gain + step).min(target)
            } else {
                (self.wet_gain - step).max(target)
            };
            *y = self.wet_gain * wet + (1.0 - self.wet_gain) * dry;
        }
    }
}

/// What the model is fed this block. Explicit targets (manual, MIDI) are transposed here
/// when the model cannot transpose itself; with no MIDI note held, MIDI mode corrects nothing.
/// With the `midi` scale the allowed notes are the pitch classes held, while any are. `shaping`
/// (flex-tune, humanize) scales the strength and moves the transpose.
fn model_controls(p: &Params, held: &Held, shaping: &Shaping, model_transposes: bool) -> Controls {
    let shift = if model_transposes { 1.0 } else { (shaping.transpose / 12.0).exp2() };
    let strength = p.get(STRENGTH) * shaping.strength_gain;
    let mut params = p.with(TRANSPOSE, shaping.transpose);
    if p.get(SCALE) as usize == KEYBOARD && held.classes != 0 {
        params.set(NOTES, f32::from(held.classes));
    }
    let (target_hz, strength) = match (p.mode(), held.note) {
        (Mode::Auto, _) => (0.0, strength),
        (Mode::Manual, _) => (p.get(TARGET_HZ) * shift, strength),
        (Mode::Midi, Some(note)) => (note_hz(note, p.get(TUNING_HZ)) * shift, strength),
        (Mode::Midi, None) => (0.0, 0.0),
    };
    Controls { target_hz, strength, params }
}
