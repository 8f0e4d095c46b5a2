//! Messages that cross into and out of the RT thread: commands in, `Copy` events out.

use super::inference::Inference;

/// What the supervisor asks of the RT thread, through a bounded ring.
pub enum Command {
    /// Run this model from the next block on; the old one goes back on the retire ring.
    Swap(Box<Inference>),
    /// Stop running any model and pass audio through (the old one is retired).
    Unload,
}

/// Why a block fell back to dry audio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// ONNX Runtime's `Run` returned an error with this `OrtErrorCode`.
    RunFailed(i32),
    /// The model produced NaN or infinity.
    NonFinite,
}

/// What happened on the RT thread, logged later by the supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtEvent {
    Fault {
        kind: FaultKind,
        block: u64,
    },
    /// Too many consecutive faults: the model was retired and audio passes through.
    ModelUnloaded {
        after_faults: u32,
    },
    ModelSwapped {
        block: u64,
    },
}
