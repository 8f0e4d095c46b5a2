//! Audio-graph back ends. Only JACK (which PipeWire also serves through `pw-jack`) for now.

pub mod jack;
