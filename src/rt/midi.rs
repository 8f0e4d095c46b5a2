//! MIDI on the RT thread, from and to raw bytes (no JACK here): which note is held on the
//! input, and which corrected note to report on the output.

/// Which MIDI input channels drive which voice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MidiChannels {
    /// Every voice hears every channel and sends on its `out_channel`.
    Omni,
    /// Channel K drives voice K, and voice K sends its notes on channel K.
    PerVoice,
}

/// Most notes the input remembers as held at once; older ones drop out first.
const MAX_HELD: usize = 16;

/// The notes held on the MIDI input, most recent last, plus pitch bend. Listens on all channels.
#[derive(Clone, Debug)]
pub struct MidiInput {
    held: [u8; MAX_HELD],
    count: usize,
    /// -1..1, 0 = centre.
    bend: f32,
}

impl Default for MidiInput {
    fn default() -> Self {
        MidiInput { held: [0; MAX_HELD], count: 0, bend: 0.0 }
    }
}

impl MidiInput {
    /// Takes one MIDI message; anything but note on/off, pitch bend and all-notes-off is ignored.
    pub fn feed(&mut self, message: &[u8]) {
        let [status, data @ ..] = message else { return };
        match (status & 0xf0, data) {
            (0x90, [note, velocity, ..]) if *velocity > 0 => self.press(*note & 0x7f),
            (0x80 | 0x90, [note, ..]) => self.release(*note & 0x7f),
            (0xe0, [low, high, ..]) => {
                let value = (i32::from(*high & 0x7f) << 7) | i32::from(*low & 0x7f);
                self.bend = (value - 8192) as f32 / 8192.0;
            }
            (0xb0, [123, ..]) => self.count = 0,
            _ => {}
        }
    }

    /// The pitch classes of every held note (bit 0 = C), 0 when none is held.
    pub fn held_classes(&self) -> u16 {
        self.held[..self.count].iter().fold(0, |mask, note| mask | 1 << (note % 12))
    }

    /// The most recent held note bent by `bend_range` semitones at full bend, as a fractional
    /// MIDI note; `None` when no note is held.
    pub fn target_note(&self, bend_range: f32) -> Option<f32> {
        let note = *self.held[..self.count].last()?;
        Some(f32::from(note) + self.bend * bend_range)
    }

    fn press(&mut self, note: u8) {
        self.release(note);
        if self.count == MAX_HELD {
            self.held.copy_within(1.., 0);
            self.count -= 1;
        }
        self.held[self.count] = note;
        self.count += 1;
    }

    fn release(&mut self, note: u8) {
        if let Some(i) = self.held[..self.count].iter().position(|n| *n == note) {
            self.held.copy_within(i + 1..self.count, i);
            self.count -= 1;
        }
    }
}

/// What a voice's MIDI input holds, as the processor takes it each block.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Held {
    /// The most recent note, bent (fractional MIDI note), for MIDI mode.
    pub note: Option<f32>,
    /// The pitch classes of every held note (bit 0 = C), for the `midi` scale; 0 = none held.
    pub classes: u16,
}

/// A 3-byte note message.
pub type NoteMessage = [u8; 3];

/// Turns the per-block corrected note into note-on/off messages: a note starts once it has been
/// voiced and stable for `min_blocks` blocks, and ends when another starts or voicing stops.
#[derive(Clone, Debug)]
pub struct NoteTracker {
    channel: u8,
    min_blocks: u32,
    threshold: f32,
    candidate: Option<u8>,
    stable_blocks: u32,
    /// The note playing and the channel its note-on went to.
    sounding: Option<(u8, u8)>,
}

impl NoteTracker {
    /// `channel` 1..16; `threshold` is the voicing confidence a note needs.
    pub fn new(channel: u8, min_blocks: u32, threshold: f32) -> NoteTracker {
        let mut tracker =
            NoteTracker { channel: 0, min_blocks: 1, threshold, candidate: None, stable_blocks: 0, sounding: None };
        tracker.configure(channel, min_blocks, threshold);
        tracker
    }

    /// Changes the settings between blocks; a sounding note still ends on its own channel.
    pub fn configure(&mut self, channel: u8, min_blocks: u32, threshold: f32) {
        self.channel = channel.clamp(1, 16) - 1;
        self.min_blocks = min_blocks.max(1);
        self.threshold = threshold;
    }

    /// Feeds one block: the corrected note (MIDI, fractional) and the voicing confidence.
    /// Returns the messages to send, note-off first.
    pub fn update(&mut self, note: f32, confidence: f32) -> [Option<NoteMessage>; 2] {
        let heard = (confidence >= self.threshold && (0.0..=127.0).contains(&note)).then(|| note.round() as u8);
        if heard == self.candidate {
            self.stable_blocks = self.stable_blocks.saturating_add(1);
        } else {
            self.candidate = heard;
            self.stable_blocks = 1;
        }
        let mut out = [None, None];
        let off = |(note, channel): (u8, u8)| [0x80 | channel, note, 0];
        match (self.sounding, heard) {
            (Some(playing), None) => {
                out[0] = Some(off(playing));
                self.sounding = None;
            }
            (sounding, Some(next))
                if sounding.map(|(note, _)| note) != Some(next) && self.stable_blocks >= self.min_blocks =>
            {
                out[0] = sounding.map(off);
                out[1] = Some([0x90 | self.channel, next, 100]);
                self.sounding = Some((next, self.channel));
            }
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_recent_held_note_wins_and_release_falls_back() {
        let mut m = MidiInput::default();
        assert_eq!(m.target_note(2.0), None);
        m.feed(&[0x90, 60, 100]);
        m.feed(&[0x91, 64, 90]);
        assert_eq!(m.target_note(2.0), Some(64.0));
        m.feed(&[0x90, 64, 0]);
        assert_eq!(m.target_note(2.0), Some(60.0));
        m.feed(&[0xe0, 0x7f, 0x7f]);
        assert!((m.target_note(2.0).unwrap() - 62.0).abs() < 0.01);
        m.feed(&[0x80, 60, 0]);
        assert_eq!(m.target_note(2.0), None);
    }

    #[test]
    fn more_held_notes_than_slots_drop_the_oldest() {
        let mut m = MidiInput::default();
        for note in 40..40 + MAX_HELD as u8 + 4 {
            m.feed(&[0x90, note, 1]);
        }
        m.feed(&[0x80, 40 + MAX_HELD as u8 + 3, 0]);
        assert_eq!(m.target_note(0.0), Some(f32::from(40 + MAX_HELD as u8 + 2)));
        m.feed(&[0xb0, 123, 0]);
        assert_eq!(m.target_note(0.0), None);
    }

    #[test]
    fn a_note_needs_stable_blocks_and_ends_when_voicing_stops() {
        let mut t = NoteTracker::new(1, 3, 0.5);
        assert_eq!(t.update(60.2, 0.9), [None, None]);
        assert_eq!(t.update(59.8, 0.9), [None, None]);
        assert_eq!(t.update(60.0, 0.9), [None, Some([0x90, 60, 100])]);
        assert_eq!(t.update(62.0, 0.9), [None, None]);
        assert_eq!(t.update(62.0, 0.9), [None, None]);
        assert_eq!(t.update(62.0, 0.9), [Some([0x80, 60, 0]), Some([0x90, 62, 100])]);
        assert_eq!(t.update(62.0, 0.1), [Some([0x80, 62, 0]), None]);
        assert_eq!(t.update(62.0, 0.1), [None, None]);
    }

    #[test]
    fn a_note_ends_on_the_channel_it_started_on() {
        let mut t = NoteTracker::new(1, 1, 0.5);
        assert_eq!(t.update(60.0, 0.9), [None, Some([0x90, 60, 100])]);
        t.configure(3, 1, 0.5);
        assert_eq!(t.update(62.0, 0.9), [Some([0x80, 60, 0]), Some([0x92, 62, 100])]);
    }
}
