//! The parameter block and its lock-free crossing: control threads write, the RT thread reads
//! once per block.
//!
//! One `f32` per row of [`crate::parameters::TABLE`], in atomics under a sequence counter (a
//! seqlock without the spinning reader): a writer makes the counter odd, stores every value, and
//! makes it even again. The RT thread's [`SharedParams::try_load`] never waits: if a write is
//! under way or happened during its read, it keeps the previous block's values and picks the
//! change up one block later. So a whole OSC bundle lands in one block, never half of it.

use std::sync::atomic::{AtomicU32, Ordering, fence};

use crate::parameters::{BYPASS, COUNT, Id, MODE, NOTES, TABLE};

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

/// Every parameter's value, indexed by [`Id`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params([f32; COUNT]);

impl Default for Params {
    /// The table's defaults.
    fn default() -> Self {
        let mut values = [0.0; COUNT];
        for (value, row) in values.iter_mut().zip(TABLE.iter()) {
            *value = row.default;
        }
        Params(values)
    }
}

impl Params {
    pub fn get(&self, id: Id) -> f32 {
        self.0[id.index()]
    }

    /// Stores `value` as is; range checks and derived changes belong to the writer
    /// (`control::apply`).
    pub fn set(&mut self, id: Id, value: f32) {
        self.0[id.index()] = value;
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
}

/// [`Params`] in atomics; see the module docs for the protocol.
#[derive(Debug)]
pub struct SharedParams {
    sequence: AtomicU32,
    values: [AtomicU32; COUNT],
}

impl SharedParams {
    pub fn new(initial: Params) -> SharedParams {
        let shared = SharedParams { sequence: AtomicU32::new(0), values: std::array::from_fn(|_| AtomicU32::new(0)) };
        shared.store(&initial);
        shared
    }

    /// Publishes a whole parameter set. Writers must not overlap: `control::Controls` serialises
    /// them; the RT thread never writes.
    pub fn store(&self, p: &Params) {
        self.sequence.fetch_add(1, Ordering::AcqRel);
        for (atomic, value) in self.values.iter().zip(p.0.iter()) {
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
        let mut values = [0.0; COUNT];
        for (value, atomic) in values.iter_mut().zip(self.values.iter()) {
            *value = f32::from_bits(atomic.load(Ordering::Acquire));
        }
        // The value loads above must not drift past the second sequence read.
        fence(Ordering::Acquire);
        (self.sequence.load(Ordering::Relaxed) == before).then_some(Params(values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parameters::{STRENGTH, TARGET_HZ, ids};

    #[test]
    fn a_stored_set_loads_back_whole() {
        let shared = SharedParams::new(Params::default());
        let p = Params::default().with(STRENGTH, 0.25).with(MODE, Mode::Manual.value()).with(TARGET_HZ, 220.0);
        shared.store(&p);
        assert_eq!(shared.try_load(), Some(p));
        assert_eq!(p.mode(), Mode::Manual);
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
