//! The block engine: one 512-frame block in, one out, on the RT thread. It knows no JACK; the
//! JACK handler and the offline file processor both drive it.
//!
//! Per block: take pending commands, read the parameters once, run the model, fall back to dry
//! audio on a fault, crossfade to and from bypass, publish meters. The dry path is the input
//! delayed by the model's latency, so bypass and fallbacks stay time-aligned with the wet path
//! and a bypassed node is bit-identical to its input after that delay.

use std::sync::Arc;

use rtrb::{Consumer, Producer};

use super::events::{Command, RtEvent};
use super::inference::{BlockReport, Controls, Inference};
use super::meters::Meters;
use super::params::{Mode, Params, SharedParams};
use crate::BLOCK;
use crate::parameters::{STRENGTH, TARGET_HZ, TRANSPOSE, TUNING_HZ};
use crate::scales::note_hz;

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

pub struct Processor {
    model: Option<Box<Inference>>,
    latency: usize,
    rings: ProcessorRings,
    params: Arc<SharedParams>,
    meters: Arc<Meters>,
    current: Params,
    clean: Box<[f32]>,
    dry: Box<[f32]>,
    wet: Box<[f32]>,
    dry_line: DelayLine,
    /// 1 = all wet, 0 = all dry (bypassed); moves towards the bypass setting per sample.
    wet_gain: f32,
    fault_streak: u32,
    blocks: u64,
}

impl Processor {
    /// `model` may be absent: audio passes through until one is swapped in.
    pub fn new(
        model: Option<Box<Inference>>,
        rings: ProcessorRings,
        params: Arc<SharedParams>,
        meters: Arc<Meters>,
    ) -> Processor {
        let current = params.try_load().unwrap_or_default();
        let latency = model.as_ref().map_or(0, |m| m.latency().min(MAX_LATENCY));
        meters.set_model_loaded(model.is_some());
        Processor {
            model,
            latency,
            rings,
            params,
            meters,
            current,
            clean: vec![0.0; BLOCK].into_boxed_slice(),
            dry: vec![0.0; BLOCK].into_boxed_slice(),
            wet: vec![0.0; BLOCK].into_boxed_slice(),
            dry_line: DelayLine::new(latency),
            wet_gain: if current.bypass() { 0.0 } else { 1.0 },
            fault_streak: 0,
            blocks: 0,
        }
    }

    /// The parameters of the last block.
    pub fn params(&self) -> Params {
        self.current
    }

    /// The delay from input to output in samples, for the current model.
    pub fn latency(&self) -> usize {
        self.latency
    }

    /// Processes exactly one block: `input` and `output` must be `BLOCK` long, else the output
    /// is silence (a contract breach by the caller must not panic on the RT thread).
    /// `midi_note` is the note held on the MIDI input (fractional, bend included), for MIDI mode.
    pub fn process(&mut self, input: &[f32], output: &mut [f32], midi_note: Option<f32>) -> BlockReport {
        if input.len() != BLOCK || output.len() != BLOCK {
            output.fill(0.0);
            return BlockReport::default();
        }
        self.take_commands();
        if let Some(p) = self.params.try_load() {
            self.current = p;
        }
        for (c, x) in self.clean.iter_mut().zip(input) {
            *c = if x.is_finite() { *x } else { 0.0 };
        }
        self.dry_line.process(&self.clean, &mut self.dry);
        let report = self.run_model(midi_note);
        self.mix(output);
        self.blocks += 1;
        report
    }

    fn run_model(&mut self, midi_note: Option<f32>) -> BlockReport {
        let Some(model) = self.model.as_mut() else {
            self.wet.copy_from_slice(&self.dry);
            return BlockReport::default();
        };
        let controls = model_controls(&self.current, midi_note, model.feeds(TRANSPOSE));
        match model.run(&self.clean, &controls, &mut self.wet) {
            Ok(mut report) => {
                self.fault_streak = 0;
                if !model.reports_target() {
                    report.target_hz = controls.target_hz;
                }
                self.meters.publish_block(report.detected_hz, report.confidence, report.target_hz);
                report
            }
            Err(kind) => {
                self.wet.copy_from_slice(&self.dry);
                self.meters.count_fault();
                self.fault_streak += 1;
                let _ = self.rings.events.push(RtEvent::Fault { kind, block: self.blocks });
                if self.fault_streak >= MAX_CONSECUTIVE_FAULTS && self.rings.retired.slots() > 0 {
                    self.retire_model();
                    let _ = self.rings.events.push(RtEvent::ModelUnloaded { after_faults: self.fault_streak });
                    self.fault_streak = 0;
                }
                BlockReport::default()
            }
        }
    }

    fn mix(&mut self, output: &mut [f32]) {
        let target = if self.current.bypass() { 0.0 } else { 1.0 };
        if self.wet_gain == target {
            output.copy_from_slice(if target == 0.0 { &self.dry } else { &self.wet });
            return;
        }
        let step = 1.0 / FADE_SAMPLES;
        for ((y, wet), dry) in output.iter_mut().zip(self.wet.iter()).zip(self.dry.iter()) {
            self.wet_gain = if target > self.wet_gain {
                (self.wet_gain + step).min(target)
            } else {
                (self.wet_gain - step).max(target)
            };
            *y = self.wet_gain * wet + (1.0 - self.wet_gain) * dry;
        }
    }

    /// Applies queued commands. A command that would retire a model waits in the ring while the
    /// retire ring is full, so no model is ever dropped here.
    fn take_commands(&mut self) {
        while self.rings.retired.slots() > 0 || self.model.is_none() {
            let Ok(command) = self.rings.commands.pop() else { return };
            match command {
                Command::Swap(new) => {
                    let latency = new.latency();
                    self.retire_model();
                    self.model = Some(new);
                    self.latency = latency.min(MAX_LATENCY);
                    self.dry_line.delay = self.latency;
                    self.meters.set_model_loaded(true);
                    let _ = self.rings.events.push(RtEvent::ModelSwapped { block: self.blocks });
                }
                Command::Unload => self.retire_model(),
            }
        }
    }

    fn retire_model(&mut self) {
        if let Some(old) = self.model.take() {
            if let Err(rtrb::PushError::Full(old)) = self.rings.retired.push(old) {
                // Callers check for a free slot first; keep running it rather than drop it here.
                self.model = Some(old);
                return;
            }
            self.latency = 0;
            self.dry_line.delay = 0;
            self.meters.set_model_loaded(false);
        }
    }
}

/// What the model is fed this block. Explicit targets (manual, MIDI) are transposed here
/// when the model cannot transpose itself; with no MIDI note held, nothing is corrected.
fn model_controls(p: &Params, midi_note: Option<f32>, model_transposes: bool) -> Controls {
    let shift = if model_transposes { 1.0 } else { (p.get(TRANSPOSE) / 12.0).exp2() };
    let strength = p.get(STRENGTH);
    let (target_hz, strength) = match (p.mode(), midi_note) {
        (Mode::Auto, _) => (0.0, strength),
        (Mode::Manual, _) => (p.get(TARGET_HZ) * shift, strength),
        (Mode::Midi, Some(note)) => (note_hz(note, p.get(TUNING_HZ)) * shift, strength),
        (Mode::Midi, None) => (0.0, 0.0),
    };
    Controls { target_hz, strength, params: *p }
}
