//! What the RT thread reports once per block, in relaxed atomics read by the OSC and supervisor
//! threads.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

/// Written by the RT thread only; any thread may read.
#[derive(Debug, Default)]
pub struct Meters {
    detected_hz: AtomicU32,
    confidence: AtomicU32,
    target_hz: AtomicU32,
    blocks: AtomicU64,
    faults: AtomicU64,
    model_loaded: AtomicBool,
}

impl Meters {
    pub fn publish_block(&self, detected_hz: f32, confidence: f32, target_hz: f32) {
        self.detected_hz.store(detected_hz.to_bits(), Relaxed);
        self.confidence.store(confidence.to_bits(), Relaxed);
        self.target_hz.store(target_hz.to_bits(), Relaxed);
        self.blocks.fetch_add(1, Relaxed);
    }

    pub fn count_fault(&self) {
        self.faults.fetch_add(1, Relaxed);
    }

    pub fn set_model_loaded(&self, loaded: bool) {
        self.model_loaded.store(loaded, Relaxed);
    }

    pub fn detected_hz(&self) -> f32 {
        f32::from_bits(self.detected_hz.load(Relaxed))
    }

    pub fn confidence(&self) -> f32 {
        f32::from_bits(self.confidence.load(Relaxed))
    }

    /// The target the model steers to, Hz; 0 when there is none.
    pub fn target_hz(&self) -> f32 {
        f32::from_bits(self.target_hz.load(Relaxed))
    }

    pub fn blocks(&self) -> u64 {
        self.blocks.load(Relaxed)
    }

    pub fn faults(&self) -> u64 {
        self.faults.load(Relaxed)
    }

    pub fn model_loaded(&self) -> bool {
        self.model_loaded.load(Relaxed)
    }
}
