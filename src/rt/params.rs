//! The parameter set and its lock-free crossing: control threads write, the RT thread reads once
//! per block.
//!
//! The fields are atomics under a sequence counter (a seqlock without the spinning reader): a
//! writer makes the counter odd, stores every field, and makes it even again. The RT thread's
//! [`SharedParams::try_load`] never waits: if a write is under way or happened during its read,
//! it keeps the previous block's values and picks the change up one block later. So a whole OSC
//! bundle lands in one block, never half of it.

use std::sync::atomic::{fence, AtomicBool, AtomicU32, Ordering};

/// Where the target pitch comes from.
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
    /// In OSC order: 0 = auto, 1 = midi, 2 = manual.
    pub const ALL: [Mode; 3] = [Mode::Auto, Mode::Midi, Mode::Manual];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Midi => "midi",
            Mode::Manual => "manual",
        }
    }

    pub fn parse(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name().eq_ignore_ascii_case(name.trim()))
    }

    pub fn index(self) -> u32 {
        Mode::ALL.iter().position(|m| *m == self).unwrap_or(0) as u32
    }
}

/// Every parameter the engine reads per block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// 0 = no change … 1 = hard tune.
    pub strength: f32,
    pub mode: Mode,
    /// Manual-mode target, Hz.
    pub target_hz: f32,
    /// Glide time to a new target, ms.
    pub retune_ms: f32,
    /// A4 reference, Hz.
    pub tuning_hz: f32,
    /// Allowed pitch classes, bit 0 = C … bit 11 = B.
    pub scale_mask: u16,
    /// Semitones added to every target.
    pub transpose: f32,
    /// Semitones a full MIDI pitch bend moves the target.
    pub bend_range: f32,
    pub bypass: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            strength: 1.0,
            mode: Mode::Auto,
            target_hz: 440.0,
            retune_ms: 0.0,
            tuning_hz: 440.0,
            scale_mask: 0x0fff,
            transpose: 0.0,
            bend_range: 2.0,
            bypass: false,
        }
    }
}

/// [`Params`] in atomics; see the module docs for the protocol.
#[derive(Debug)]
pub struct SharedParams {
    sequence: AtomicU32,
    strength: AtomicU32,
    mode: AtomicU32,
    target_hz: AtomicU32,
    retune_ms: AtomicU32,
    tuning_hz: AtomicU32,
    scale_mask: AtomicU32,
    transpose: AtomicU32,
    bend_range: AtomicU32,
    bypass: AtomicBool,
}

impl SharedParams {
    pub fn new(initial: Params) -> SharedParams {
        let shared = SharedParams {
            sequence: AtomicU32::new(0),
            strength: AtomicU32::new(0),
            mode: AtomicU32::new(0),
            target_hz: AtomicU32::new(0),
            retune_ms: AtomicU32::new(0),
            tuning_hz: AtomicU32::new(0),
            scale_mask: AtomicU32::new(0),
            transpose: AtomicU32::new(0),
            bend_range: AtomicU32::new(0),
            bypass: AtomicBool::new(false),
        };
        shared.store(&initial);
        shared
    }

    /// Publishes a whole parameter set. Writers must not overlap: `control::Controls` serialises
    /// them; the RT thread never writes.
    pub fn store(&self, p: &Params) {
        self.sequence.fetch_add(1, Ordering::AcqRel);
        self.strength.store(p.strength.to_bits(), Ordering::Release);
        self.mode.store(p.mode.index(), Ordering::Release);
        self.target_hz.store(p.target_hz.to_bits(), Ordering::Release);
        self.retune_ms.store(p.retune_ms.to_bits(), Ordering::Release);
        self.tuning_hz.store(p.tuning_hz.to_bits(), Ordering::Release);
        self.scale_mask.store(u32::from(p.scale_mask), Ordering::Release);
        self.transpose.store(p.transpose.to_bits(), Ordering::Release);
        self.bend_range.store(p.bend_range.to_bits(), Ordering::Release);
        self.bypass.store(p.bypass, Ordering::Release);
        self.sequence.fetch_add(1, Ordering::AcqRel);
    }

    /// A consistent snapshot, or `None` if a write overlapped the read. Never waits.
    pub fn try_load(&self) -> Option<Params> {
        let before = self.sequence.load(Ordering::Acquire);
        if before % 2 == 1 {
            return None;
        }
        let p = Params {
            strength: f32::from_bits(self.strength.load(Ordering::Acquire)),
            mode: match self.mode.load(Ordering::Acquire) {
                1 => Mode::Midi,
                2 => Mode::Manual,
                _ => Mode::Auto,
            },
            target_hz: f32::from_bits(self.target_hz.load(Ordering::Acquire)),
            retune_ms: f32::from_bits(self.retune_ms.load(Ordering::Acquire)),
            tuning_hz: f32::from_bits(self.tuning_hz.load(Ordering::Acquire)),
            scale_mask: self.scale_mask.load(Ordering::Acquire) as u16,
            transpose: f32::from_bits(self.transpose.load(Ordering::Acquire)),
            bend_range: f32::from_bits(self.bend_range.load(Ordering::Acquire)),
            bypass: self.bypass.load(Ordering::Acquire),
        };
        // The field loads above must not drift past the second sequence read.
        fence(Ordering::Acquire);
        (self.sequence.load(Ordering::Relaxed) == before).then_some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_set_loads_back_whole() {
        let shared = SharedParams::new(Params::default());
        let p = Params {
            strength: 0.25,
            mode: Mode::Manual,
            target_hz: 220.0,
            scale_mask: 0b1010_1011_0101,
            ..Params::default()
        };
        shared.store(&p);
        assert_eq!(shared.try_load(), Some(p));
    }

    #[test]
    fn a_reader_never_sees_half_a_write() {
        use std::sync::Arc;
        let uniform = |v: f32| Params { strength: v, target_hz: v, retune_ms: v, tuning_hz: v, ..Params::default() };
        let shared = Arc::new(SharedParams::new(uniform(0.0)));
        let writer = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                for i in 0..20_000 {
                    let v = (i % 100) as f32;
                    shared.store(&Params {
                        strength: v,
                        target_hz: v,
                        retune_ms: v,
                        tuning_hz: v,
                        ..Params::default()
                    });
                }
            })
        };
        let mut seen = 0;
        while !writer.is_finished() || seen == 0 {
            if let Some(p) = shared.try_load() {
                assert!(p.strength == p.target_hz && p.target_hz == p.retune_ms && p.retune_ms == p.tuning_hz);
                seen += 1;
            }
        }
        writer.join().unwrap();
    }

    #[test]
    fn modes_parse_by_name() {
        assert_eq!(Mode::parse("AUTO"), Some(Mode::Auto));
        assert_eq!(Mode::parse("manual"), Some(Mode::Manual));
        assert_eq!(Mode::parse("Midi").map(Mode::index), Some(1));
        assert_eq!(Mode::parse("sideways"), None);
    }
}
