//! autotuned: a real-time pitch-correction node for JACK that runs an ONNX model in the audio
//! callback. The binary (`main.rs`) is a thin shell over these modules; see each module's first
//! line for what it holds and which thread runs it.

pub mod app;
pub mod audio;
pub mod control;
pub mod docs;
pub mod model;
pub mod offline;
pub mod osc;
pub mod parameters;
pub mod plot;
pub mod rt;
pub mod scala;
pub mod scales;
pub mod settings;

/// The only block size the engine serves: every model sees exactly this many frames per call.
pub const BLOCK: usize = 512;
