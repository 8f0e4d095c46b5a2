//! Expressive controls, per voice and block on the RT thread: flex-tune's share of the strength,
//! and humanize's, the natural vibrato's and the created vibrato's offsets of the target, worked
//! out from what the voice's last block reported (its sung pitch and the target it was steered
//! to).

use std::f32::consts::TAU;

use super::inference::BlockReport;
use super::params::Params;
use crate::parameters::{FLEX, HUMANIZE, TRANSPOSE, VIBRATO_DEPTH, VIBRATO_NATURAL, VIBRATO_ONSET_MS, VIBRATO_RATE_HZ};

/// Flex-tune fades the correction out over this many cents past its window.
const FLEX_FADE_CENTS: f32 = 10.0;
/// Humanize leaves a note alone this long after it starts, so short notes still snap ...
const HUMANIZE_AFTER_MS: f32 = 120.0;
/// ... then lengthens its retune time over this long ...
const HUMANIZE_RAMP_MS: f32 = 100.0;
/// ... to humanize × this.
const HUMANIZE_RETUNE_MS: f32 = 400.0;
/// A target this far from the last one is a new note.
const NEW_NOTE_CENTS: f32 = 50.0;
/// The sung vibrato is what moves faster than this: a second-order Butterworth high-pass at it
/// keeps 3–9 Hz (≥ 0.9 of the depth from 3 Hz) and leaves drifts to humanize (0.12 at 0.7 Hz).
const VIBRATO_FROM_HZ: f32 = 2.0;

/// How the next block's correction is shaped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shaping {
    /// Multiplies the strength (flex-tune).
    pub strength_gain: f32,
    /// Semitones the target moves: `transpose` plus humanize's and the vibrato's offsets.
    pub transpose: f32,
}

/// One voice's expressive state between blocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Expression {
    /// The transpose the model was fed last block, to find the note its target came from.
    fed_transpose: f32,
    /// The note being held, Hz (0 = none), and for how many blocks.
    note_hz: f32,
    held_blocks: u32,
    /// The sung pitch's slow movement around the note, cents: humanize corrects only this.
    slow_cents: f32,
    /// The created vibrato's phase, radians since its onset on this note.
    vibrato_phase: f32,
    /// Separates the sung vibrato from the deviation.
    sung_vibrato: HighPass,
}

impl Expression {
    /// The shaping of the next block, from the last block's report.
    pub fn next(&mut self, p: &Params, last: &BlockReport, block_ms: f32) -> Shaping {
        let note_hz = if last.target_hz > 0.0 { last.target_hz * (-self.fed_transpose / 12.0).exp2() } else { 0.0 };
        let deviation = (last.detected_hz > 0.0 && note_hz > 0.0).then(|| 1200.0 * (last.detected_hz / note_hz).log2());
        let strength_gain = flex_gain(p.get(FLEX), deviation);
        let offset = match deviation {
            Some(deviation) => {
                self.follow_note(note_hz, deviation);
                let vibrato = self.sung_vibrato.next(deviation, VIBRATO_FROM_HZ * block_ms / 1000.0);
                self.humanize(p.get(HUMANIZE), deviation - vibrato, block_ms)
                    + p.get(VIBRATO_NATURAL) * vibrato
                    + self.vibrato(p, block_ms)
            }
            None => {
                self.note_hz = 0.0;
                0.0
            }
        };
        self.fed_transpose = p.get(TRANSPOSE) + offset / 100.0;
        Shaping { strength_gain, transpose: self.fed_transpose }
    }

    /// Counts how long the note the target comes from has been held; a new note starts over.
    fn follow_note(&mut self, note_hz: f32, deviation: f32) {
        if self.note_hz <= 0.0 || (1200.0 * (note_hz / self.note_hz).log2()).abs() > NEW_NOTE_CENTS {
            self.note_hz = note_hz;
            self.held_blocks = 0;
            self.slow_cents = deviation;
            self.vibrato_phase = 0.0;
            self.sung_vibrato.settle(deviation);
        }
        self.held_blocks = self.held_blocks.saturating_add(1);
    }

    /// Humanize's offset of the target, cents: on a note held past `HUMANIZE_AFTER_MS` the
    /// correction follows the sung pitch through a retune time growing towards humanize ×
    /// `HUMANIZE_RETUNE_MS`, so the deviation's fast part (its movement) stays and its slow part
    /// (how far off the note is sung) is still corrected.
    fn humanize(&mut self, humanize: f32, deviation: f32, block_ms: f32) -> f32 {
        let held_ms = self.held_blocks as f32 * block_ms;
        let ramp = ((held_ms - HUMANIZE_AFTER_MS) / HUMANIZE_RAMP_MS).clamp(0.0, 1.0);
        let retune_ms = humanize * HUMANIZE_RETUNE_MS * ramp;
        self.slow_cents = if retune_ms > 0.0 {
            self.slow_cents + (deviation - self.slow_cents) * (1.0 - (-block_ms / retune_ms).exp())
        } else {
            deviation
        };
        deviation - self.slow_cents
    }

    /// The created vibrato's offset of the target, cents: a sine of `vibrato_depth` cents at
    /// `vibrato_rate` Hz from `vibrato_onset` ms after the note starts, rising from zero.
    fn vibrato(&mut self, p: &Params, block_ms: f32) -> f32 {
        let depth = p.get(VIBRATO_DEPTH);
        if depth <= 0.0 || (self.held_blocks as f32 * block_ms) < p.get(VIBRATO_ONSET_MS) {
            return 0.0;
        }
        let offset = depth * self.vibrato_phase.sin();
        self.vibrato_phase = (self.vibrato_phase + TAU * p.get(VIBRATO_RATE_HZ) * block_ms / 1000.0) % TAU;
        offset
    }
}

/// A second-order Butterworth high-pass over one value per block.
#[derive(Clone, Copy, Debug, Default)]
struct HighPass {
    x: [f32; 2],
    y: [f32; 2],
}

impl HighPass {
    /// Starts as if `x` had always been the input: a held offset gives 0, not a step.
    fn settle(&mut self, x: f32) {
        *self = HighPass { x: [x, x], y: [0.0, 0.0] };
    }

    /// The next output for input `x`, with the cut-off at `cycles` per block (< 0.5).
    fn next(&mut self, x: f32, cycles: f32) -> f32 {
        let (sin, cos) = (TAU * cycles).sin_cos();
        let alpha = sin * std::f32::consts::FRAC_1_SQRT_2;
        let a0 = 1.0 + alpha;
        let (b0, b1) = ((1.0 + cos) / 2.0 / a0, -(1.0 + cos) / a0);
        let (a1, a2) = (-2.0 * cos / a0, (1.0 - alpha) / a0);
        let y = b0 * (x + self.x[1]) + b1 * self.x[0] - a1 * self.y[0] - a2 * self.y[1];
        self.x = [x, self.x[0]];
        self.y = [y, self.y[0]];
        y
    }
}

/// Flex-tune's share of the strength: 1 within ±50·(1 − flex) cents of the note the target was
/// chosen from, falling to 0 over the next 10 cents; 1 with flex off or nothing to compare.
fn flex_gain(flex: f32, deviation: Option<f32>) -> f32 {
    let Some(off) = deviation.filter(|_| flex > 0.0).map(f32::abs) else { return 1.0 };
    let window = 50.0 * (1.0 - flex);
    (1.0 - (off - window) / FLEX_FADE_CENTS).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(detected_hz: f32, target_hz: f32) -> BlockReport {
        BlockReport { confidence: 1.0, detected_hz, target_hz }
    }

    #[test]
    fn humanize_keeps_a_held_note_s_movement_and_corrects_its_offset() {
        let p = Params::default().with(HUMANIZE, 1.0);
        let mut e = Expression::default();
        let block_ms = 512.0 * 1000.0 / 44_100.0;
        let cents_hz = |c: f32| 220.0 * (c / 1200.0).exp2();
        // 40 cents sharp and steady: the offset stays corrected.
        let steady: Vec<f32> =
            (0..200).map(|_| e.next(&p, &report(cents_hz(40.0), 220.0), block_ms).transpose).collect();
        assert!(steady.iter().all(|t| t.abs() < 1e-4), "{:?}", &steady[..5]);
        // A 0.7 Hz, ±15 cent drift around that: most of it passes once the note is held.
        let mut e = Expression::default();
        let drift = |b: usize| 40.0 + 15.0 * (std::f32::consts::TAU * 0.7 * b as f32 * block_ms / 1000.0).sin();
        let kept: Vec<f32> =
            (0..400).map(|b| 100.0 * e.next(&p, &report(cents_hz(drift(b)), 220.0), block_ms).transpose).collect();
        let late = &kept[200..];
        let swing = late.iter().copied().fold(f32::MIN, f32::max) - late.iter().copied().fold(f32::MAX, f32::min);
        assert!(swing > 15.0, "the target swings {swing} cents of the drift's 30");
        // Humanize 0 (and no natural vibrato) moves nothing.
        let mut e = Expression::default();
        let off = Params::default().with(VIBRATO_NATURAL, 0.0);
        assert!((0..100).all(|b| e.next(&off, &report(cents_hz(drift(b)), 220.0), block_ms).transpose == 0.0));
    }

    #[test]
    fn natural_vibrato_scales_the_sung_vibrato_and_not_its_offset() {
        let block_ms = 512.0 * 1000.0 / 44_100.0;
        let sung = |b: usize| -25.0 + 30.0 * (TAU * 5.5 * b as f32 * block_ms / 1000.0).sin();
        let swing = |natural: f32| {
            let p = Params::default().with(VIBRATO_NATURAL, natural);
            let mut e = Expression::default();
            // The model reports the target it was fed: the note moved by the last transpose.
            let mut fed = 0.0f32;
            let offsets: Vec<f32> = (0..300)
                .map(|b| {
                    let target = 220.0 * (fed / 12.0).exp2();
                    fed = e.next(&p, &report(220.0 * (sung(b) / 1200.0).exp2(), target), block_ms).transpose;
                    100.0 * fed
                })
                .collect();
            let late = &offsets[100..];
            let mean = late.iter().sum::<f32>() / late.len() as f32;
            (late.iter().copied().fold(f32::MIN, f32::max) - late.iter().copied().fold(f32::MAX, f32::min), mean)
        };
        let (kept, centre) = swing(1.0);
        assert!((kept - 60.0).abs() < 8.0, "natural 1 keeps a {kept} c swing of 60");
        assert!(centre.abs() < 1.0, "the offset is not passed: mean {centre}");
        assert!((swing(2.0).0 - 120.0).abs() < 16.0);
        assert_eq!(swing(0.0).0, 0.0);
    }

    #[test]
    fn flex_opens_near_the_note_and_closes_far_from_it() {
        assert_eq!(flex_gain(0.6, Some(10.0)), 1.0);
        assert!((flex_gain(0.6, Some(-25.0)) - 0.5).abs() < 1e-5);
        assert_eq!(flex_gain(0.6, Some(35.0)), 0.0);
        assert_eq!(flex_gain(0.0, Some(35.0)), 1.0);
        assert_eq!(flex_gain(0.6, None), 1.0);
    }
}
