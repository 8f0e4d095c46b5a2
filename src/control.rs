//! The writer side of the parameters and the daemon's status, shared by the OSC thread and the
//! supervisor (never the RT thread).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::parameters::{Id, KEY, NOTES, SCALE};
use crate::rt::params::ScaleTuning;
use crate::rt::{Meters, Params, SharedParams};
use crate::scales::{CUSTOM, SCALA, scale_mask};

/// Sets a checked value and what follows from it: a key or a named scale sets the allowed
/// notes, and a changed set of notes makes the scale custom.
pub fn apply(p: &mut Params, id: Id, value: f32) {
    p.set(id, value);
    if id == KEY || id == SCALE {
        if let Some(mask) = scale_mask(p.get(SCALE) as usize, p.get(KEY) as u8) {
            p.set(NOTES, f32::from(mask));
        }
    } else if id == NOTES {
        p.set(SCALE, CUSTOM as f32);
    }
}

/// Tunes auto mode to a Scala tuning: the scale becomes `scala`.
pub fn tune(p: &mut Params, tuning: ScaleTuning) {
    p.tuning = tuning;
    apply(p, SCALE, SCALA as f32);
}

/// Serialises writers of every voice's [`SharedParams`] and keeps the master copies.
#[derive(Debug)]
pub struct Controls {
    shared: Box<[Arc<SharedParams>]>,
    masters: Mutex<Vec<Params>>,
}

impl Controls {
    /// One voice per entry of `initial` (at least one).
    pub fn new(initial: Vec<Params>) -> Controls {
        let initial = if initial.is_empty() { vec![Params::default()] } else { initial };
        let shared = initial.iter().map(|p| Arc::new(SharedParams::new(*p))).collect();
        Controls { shared, masters: Mutex::new(initial) }
    }

    pub fn voices(&self) -> usize {
        self.shared.len()
    }

    /// The RT side's handles, one per voice.
    pub fn shared(&self) -> Vec<Arc<SharedParams>> {
        self.shared.to_vec()
    }

    /// Voice 1's values: what the unprefixed addresses show.
    pub fn get(&self) -> Params {
        self.lock()[0]
    }

    /// Every voice's values, voice 1 first.
    pub fn all(&self) -> Vec<Params> {
        self.lock().clone()
    }

    /// Applies `change` to the current values of every voice and publishes each voice that
    /// changed in one store, so every change made inside lands in the same block.
    pub fn update<R>(&self, change: impl FnOnce(&mut [Params]) -> R) -> R {
        let mut masters = self.lock();
        let before = masters.clone();
        let result = change(&mut masters);
        for ((shared, now), was) in self.shared.iter().zip(masters.iter()).zip(&before) {
            if now != was {
                shared.store(now);
            }
        }
        result
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Params>> {
        // A panic while holding the lock leaves whole sets behind; they are still usable.
        self.masters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the daemon is doing, for `/autotune/status`, logs and sd_notify.
#[derive(Debug, Default)]
pub struct Status {
    pub sample_rate: AtomicU32,
    pub period: AtomicU32,
    pub xruns: AtomicU64,
    pub latency: AtomicU32,
    /// JACK's DSP load, percent, as f32 bits.
    pub load: AtomicU32,
    text: Mutex<StatusText>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusText {
    /// The model running, as "name version (file)".
    pub model: String,
    /// `running`, or why audio passes through.
    pub state: String,
}

impl Status {
    pub fn text(&self) -> StatusText {
        self.text.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn set_model(&self, model: impl Into<String>) {
        self.text.lock().unwrap_or_else(PoisonError::into_inner).model = model.into();
    }

    pub fn set_state(&self, state: impl Into<String>) {
        self.text.lock().unwrap_or_else(PoisonError::into_inner).state = state.into();
    }

    pub fn load_percent(&self) -> f32 {
        f32::from_bits(self.load.load(Relaxed))
    }

    /// One line for logs and sd_notify STATUS=.
    pub fn summary(&self, meters: &Meters) -> String {
        let text = self.text();
        format!(
            "{}; model {}; {} Hz / {} frames; latency {} samples; xruns {}; model faults {}",
            text.state,
            text.model,
            self.sample_rate.load(Relaxed),
            self.period.load(Relaxed),
            self.latency.load(Relaxed),
            self.xruns.load(Relaxed),
            meters.faults()
        )
    }
}
