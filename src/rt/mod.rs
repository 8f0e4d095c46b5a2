//! The code that runs on the JACK thread, and nothing else: it knows nothing of JACK, OSC or
//! config. No allocation, no locks, no logging, no syscalls, no panics once a block is running.

pub mod denormals;
pub mod engine;
pub mod events;
pub mod expression;
pub mod inference;
pub mod meters;
pub mod midi;
pub mod params;
pub mod processor;
pub mod reblock;

pub use engine::Engine;
pub use events::{Command, FaultKind, RtEvent};
pub use inference::{BlockReport, Controls, Inference, InferenceError, Slots};
pub use meters::{Meters, VoiceMeters};
pub use midi::{Held, MidiChannels, MidiInput, NoteTracker};
pub use params::{Mode, Params, SharedParams};
pub use processor::{Processor, ProcessorRings};
pub use reblock::Reblocker;
