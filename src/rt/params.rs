//! The parameter block and its lock-free crossing: control threads write, the RT thread reads
//! once per block.
//!
//! One `f32` per row of [`crate::parameters::TABLE`], in atomics under a sequence counter (a
//! seqlock without the spinning reader): a writer makes the counter odd, stores every value, and
//! makes it even again. The RT thread's [`SharedParams::try_load`] never waits: if a write is
//! under way or happened during its read, it keeps the previous block's values and picks the
//! change up one block later. So a whole OSC bundle lands in one block, never half of it.

use std::sync::atomic::{AtomicU32, Ordering, fence};

use crate::parameters::{BYPASS, COUNT, Id, KEY, MODE, NOTES, SCALE, TABLE, TUNING_HZ};
use crate::scales::{SCALA, hz_note};

/// How many allowed pitch classes a tuning (and the model's `scale_notes`) holds at most.
pub const SCALE_SLOTS: usize = 64;

/// A Scala tuning as auto mode uses it: its degrees within one period, and where degree 0 sits.
/// Made off the RT thread (`crate::scala`); the RT thread only reads it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScaleTuning {
    /// Semitones from one period to the next (12 for an octave); 0: no tuning loaded.
    pub period: f32,
    /// The frequency of degree 0, Hz; 0: the key's note in 12-TET from `tuning_hz`.
    pub anchor_hz: f32,
    /// How many of `degrees` the tuning has (1..=SCALE_SLOTS once loaded).
    pub len: u32,
    /// Semitones above degree 0 of each allowed degree, degree 0 (0.0) among them.
    pub degrees: [f32; SCALE_SLOTS],
    /// The smallest distance between two allowed degrees, semitones (the period for one).
    pub step: f32,
}

impl Default for ScaleTuning {
    /// No tuning: auto mode uses the 12-tone notes.
    fn default() -> Self {
        ScaleTuning { period: 0.0, anchor_hz: 0.0, len: 0, degrees: [0.0; SCALE_SLOTS], step: 0.0 }
    }
}

/// The floats a [`ScaleTuning`] crosses threads as: period, anchor, length, step, degrees.
const TUNING_WORDS: usize = 4 + SCALE_SLOTS;
/// Auto mode holds its note until another allowed one is this share of the scale's smallest
/// step closer ...
const HYSTERESIS_SHARE: f32 = 0.25;
/// ... and never more than this many semitones (a quarter of a 12-tone semitone).
const HYSTERESIS_MAX_ST: f32 = 0.25;

/// Where the target pitch comes from; the value of the `mode` parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The nearest allowed note of the detected pitch.
    Auto,
    /// The most recent note held on the MIDI input (bent by pitch bend); none held: no change.
    Midi,
    /// `target_hz`, set over OSC as Hz or as a MIDI note.
    Manual,
}

impl Mode {
    /// The mode a `mode` value (its index in the table's names) stands for.
    pub fn from_value(value: f32) -> Mode {
        match value as u32 {
            1 => Mode::Midi,
            2 => Mode::Manual,
            _ => Mode::Auto,
        }
    }

    pub fn value(self) -> f32 {
        match self {
            Mode::Auto => 0.0,
            Mode::Midi => 1.0,
            Mode::Manual => 2.0,
        }
    }
}

/// Every parameter's value, indexed by [`Id`], and the Scala tuning the `scala` scale uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    values: [f32; COUNT],
    pub tuning: ScaleTuning,
}

impl Default for Params {
    /// The table's defaults.
    fn default() -> Self {
        let mut values = [0.0; COUNT];
        for (value, row) in values.iter_mut().zip(TABLE.iter()) {
            *value = row.default;
        }
        Params { values, tuning: ScaleTuning::default() }
    }
}

impl Params {
    pub fn get(&self, id: Id) -> f32 {
        self.values[id.index()]
    }

    /// Stores `value` as is; range checks and derived changes belong to the writer
    /// (`control::apply`).
    pub fn set(&mut self, id: Id, value: f32) {
        self.values[id.index()] = value;
    }

    /// A copy with one value changed.
    pub fn with(mut self, id: Id, value: f32) -> Params {
        self.set(id, value);
        self
    }

    pub fn mode(&self) -> Mode {
        Mode::from_value(self.get(MODE))
    }

    pub fn bypass(&self) -> bool {
        self.get(BYPASS) >= 0.5
    }

    /// Allowed pitch classes, bit 0 = C … bit 11 = B.
    pub fn scale_mask(&self) -> u16 {
        self.get(NOTES) as u16 & 0x0fff
    }

    /// The pitches auto mode may land on, as the model's `scale_notes`, `scale_period` and
    /// `note_hysteresis` take them: fills `notes` with the allowed pitch classes (semitones above
    /// C at `tuning_hz`, repeated to fill every slot) and returns the period in semitones (0
    /// when no note is allowed) and the hysteresis (a quarter of the smallest step, at most a
    /// quarter semitone). The `scala` scale with a tuning loaded gives the tuning's degrees from
    /// its anchor (or the key); every other scale its 12-tone notes.
    pub fn allowed_pitches(&self, notes: &mut [f32]) -> (f32, f32) {
        let hysteresis = |step: f32| (HYSTERESIS_SHARE * step).min(HYSTERESIS_MAX_ST);
        let t = &self.tuning;
        let len = (t.len as usize).min(SCALE_SLOTS);
        if self.get(SCALE) as usize == SCALA && len > 0 && t.period > 0.0 {
            let anchor = if t.anchor_hz > 0.0 { hz_note(t.anchor_hz, self.get(TUNING_HZ)) } else { self.get(KEY) };
            for (slot, note) in notes.iter_mut().enumerate() {
                *note = anchor + t.degrees[slot % len];
            }
            return (t.period, hysteresis(t.step));
        }
        let mask = self.scale_mask();
        if mask == 0 {
            notes.fill(0.0);
            return (0.0, HYSTERESIS_MAX_ST);
        }
        let mut classes = (0..12u8).filter(|class| mask & (1 << class) != 0).cycle();
        for note in notes.iter_mut() {
            *note = f32::from(classes.next().unwrap_or(0));
        }
        // Two neighbouring 12-tone classes are at least a semitone apart: the most hysteresis.
        (12.0, HYSTERESIS_MAX_ST)
    }
}

/// [`Params`] in atomics; see the module docs for the protocol.
#[derive(Debug)]
pub struct SharedParams {
    sequence: AtomicU32,
    values: [AtomicU32; COUNT],
    tuning: [AtomicU32; TUNING_WORDS],
}

impl SharedParams {
    pub fn new(initial: Params) -> SharedParams {
        let shared = SharedParams {
            sequence: AtomicU32::new(0),
            values: std::array::from_fn(|_| AtomicU32::new(0)),
            tuning: std::array::from_fn(|_| AtomicU32::new(0)),
        };
        shared.store(&initial);
        shared
    }

    /// Publishes a whole parameter set. Writers must not overlap: `control::Controls` serialises
    /// them; the RT thread never writes.
    pub fn store(&self, p: &Params) {
        self.sequence.fetch_add(1, Ordering::AcqRel);
        for (atomic, value) in self.values.iter().zip(p.values.iter()) {
            atomic.store(value.to_bits(), Ordering::Release);
        }
        let t = &p.tuning;
        let head = [t.period, t.anchor_hz, t.len as f32, t.step];
        for (atomic, value) in self.tuning.iter().zip(head.iter().chain(t.degrees.iter())) {
            atomic.store(value.to_bits(), Ordering::Release);
        }
        self.sequence.fetch_add(1, Ordering::AcqRel);
    }

    /// A consistent snapshot, or `None` if a write overlapped the read. Never waits.
    pub fn try_load(&self) -> Option<Params> {
        let before = self.sequence.load(Ordering::Acquire);
        if before % 2 == 1 {
            return None;
        }
        let load = |atomic: &AtomicU32| f32::from_bits(atomic.load(Ordering::Acquire));
        let mut values = [0.0; COUNT];
        for (value, atomic) in values.iter_mut().zip(self.values.iter()) {
            *value = load(atomic);
        }
        let mut degrees = [0.0; SCALE_SLOTS];
        for (degree, atomic) in degrees.iter_mut().zip(self.tuning[4..].iter()) {
            *degree = load(atomic);
        }
        let tuning = ScaleTuning {
            period: load(&self.tuning[0]),
            anchor_hz: load(&self.tuning[1]),
            len: load(&self.tuning[2]) as u32,
            step: load(&self.tuning[3]),
            degrees,
        };
        // The value loads above must not drift past the second sequence read.
        fence(Ordering::Acquire);
        (self.sequence.load(Ordering::Relaxed) == before).then_some(Params { values, tuning })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parameters::{STRENGTH, TARGET_HZ, ids};

    #[test]
    fn a_stored_set_loads_back_whole() {
        let shared = SharedParams::new(Params::default());
        let mut p = Params::default().with(STRENGTH, 0.25).with(MODE, Mode::Manual.value()).with(TARGET_HZ, 220.0);
        p.tuning.period = 19.02;
        p.tuning.len = 2;
        p.tuning.degrees[1] = 7.0;
        shared.store(&p);
        assert_eq!(shared.try_load(), Some(p));
        assert_eq!(p.mode(), Mode::Manual);
    }

    #[test]
    fn allowed_pitches_come_from_the_notes_or_the_scala_tuning() {
        let mut notes = [0.0; SCALE_SLOTS];
        let c_major = Params::default().with(NOTES, f32::from(0b1010_1011_0101u16));
        assert_eq!(c_major.allowed_pitches(&mut notes), (12.0, 0.25));
        assert_eq!(notes[..8], [0.0, 2.0, 4.0, 5.0, 7.0, 9.0, 11.0, 0.0]);
        assert_eq!(Params::default().with(NOTES, 0.0).allowed_pitches(&mut notes).0, 0.0);
        let mut tuning = ScaleTuning { period: 12.0, anchor_hz: 0.0, len: 3, degrees: [0.0; SCALE_SLOTS], step: 0.5 };
        tuning.degrees[..3].copy_from_slice(&[0.0, 3.75, 7.0]);
        let mut p = Params { tuning, ..Params::default() }.with(KEY, 2.0);
        // A loaded tuning counts only while the scale is `scala`.
        assert_eq!(p.allowed_pitches(&mut notes), (12.0, 0.25));
        assert_eq!(notes[1], 1.0);
        p.set(SCALE, SCALA as f32);
        assert_eq!(p.allowed_pitches(&mut notes), (12.0, 0.125));
        assert_eq!(notes[..4], [2.0, 5.75, 9.0, 2.0]);
        p.tuning.anchor_hz = 440.0;
        p.allowed_pitches(&mut notes);
        assert_eq!(notes[..2], [69.0, 72.75]);
    }

    #[test]
    fn a_reader_never_sees_half_a_write() {
        use std::sync::Arc;
        let uniform = |v: f32| ids().fold(Params::default(), |p, id| p.with(id, v));
        let shared = Arc::new(SharedParams::new(uniform(0.0)));
        let writer = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                for i in 0..20_000 {
                    shared.store(&uniform((i % 100) as f32));
                }
            })
        };
        let mut seen = 0;
        while !writer.is_finished() || seen == 0 {
            if let Some(p) = shared.try_load() {
                assert!(ids().all(|id| p.get(id) == p.get(STRENGTH)));
                seen += 1;
            }
        }
        writer.join().unwrap();
    }
}
