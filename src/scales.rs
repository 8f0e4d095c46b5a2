//! Keys and scales: names, pitch-class patterns and the 12-bit masks of the allowed notes. Pure
//! data, used by the OSC and supervisor threads.

/// Note names accepted for a key; flats map to the same class as their sharp.
const KEY_NAMES: [(&str, u8); 17] = [
    ("C", 0),
    ("C#", 1),
    ("Db", 1),
    ("D", 2),
    ("D#", 3),
    ("Eb", 3),
    ("E", 4),
    ("F", 5),
    ("F#", 6),
    ("Gb", 6),
    ("G", 7),
    ("G#", 8),
    ("Ab", 8),
    ("A", 9),
    ("A#", 10),
    ("Bb", 10),
    ("B", 11),
];

/// The names pitch classes are reported by, C = 0.
pub const NOTE_NAMES: [&str; 12] = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];

/// The name a key is reported by.
pub fn key_name(key: u8) -> &'static str {
    NOTE_NAMES[usize::from(key % 12)]
}

/// "C".."B" (sharps or flats, any case) to 0..11.
pub fn parse_key(name: &str) -> Option<u8> {
    let name = name.trim();
    KEY_NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, k)| *k)
}

/// Every scale's name, in OSC order (the scale parameter's value is the index); the last three
/// are the notes held on the MIDI input, the custom set of pitch classes made with
/// `/autotune/notes`, and the loaded Scala tuning.
pub const SCALE_NAMES: [&str; 18] = [
    "chromatic",
    "major",
    "natural_minor",
    "harmonic_minor",
    "ionian",
    "dorian",
    "phrygian",
    "lydian",
    "mixolydian",
    "aeolian",
    "locrian",
    "major_pentatonic",
    "minor_pentatonic",
    "blues",
    "whole_tone",
    "midi",
    "custom",
    "scala",
];

/// The scale index of the loaded Scala tuning (`[tuning] scala`, `/autotune/scala`); without
/// one, the notes set before are allowed.
pub const SCALA: usize = SCALE_NAMES.len() - 1;
/// The scale index of the custom set.
pub const CUSTOM: usize = SCALE_NAMES.len() - 2;
/// The scale index of "the pitch classes held on `midi_in`": while none is held, the notes the
/// scale had before (or set with `/autotune/notes`) are allowed.
pub const KEYBOARD: usize = SCALE_NAMES.len() - 3;

/// Semitones above the key of each named scale, indexed like [`SCALE_NAMES`].
const SCALE_STEPS: [&[u8]; KEYBOARD] = [
    &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    &[0, 2, 4, 5, 7, 9, 11],
    &[0, 2, 3, 5, 7, 8, 10],
    &[0, 2, 3, 5, 7, 8, 11],
    &[0, 2, 4, 5, 7, 9, 11],
    &[0, 2, 3, 5, 7, 9, 10],
    &[0, 1, 3, 5, 7, 8, 10],
    &[0, 2, 4, 6, 7, 9, 11],
    &[0, 2, 4, 5, 7, 9, 10],
    &[0, 2, 3, 5, 7, 8, 10],
    &[0, 1, 3, 5, 6, 8, 10],
    &[0, 2, 4, 7, 9],
    &[0, 3, 5, 7, 10],
    &[0, 3, 5, 6, 7, 10],
    &[0, 2, 4, 6, 8, 10],
];

/// A scale by name ("minor" is the natural minor; spaces and dashes count as underscores).
pub fn parse_scale(name: &str) -> Option<usize> {
    let name = name.trim().to_ascii_lowercase().replace([' ', '-'], "_");
    let name = if name == "minor" { "natural_minor" } else { &name };
    SCALE_NAMES.iter().position(|n| *n == name)
}

/// The allowed pitch classes of scale `scale` with `key` as the tonic (bit 0 = C); `None` for
/// the keyboard, the custom set and Scala, which keep whatever notes were set.
pub fn scale_mask(scale: usize, key: u8) -> Option<u16> {
    let steps = SCALE_STEPS.get(scale)?;
    Some(steps.iter().fold(0u16, |m, step| m | 1 << ((key + step) % 12)))
}

/// The frequency of MIDI note `note` (fractional) with A4 = `tuning_hz`.
pub fn note_hz(note: f32, tuning_hz: f32) -> f32 {
    tuning_hz * ((note - 69.0) / 12.0).exp2()
}

/// The MIDI note (fractional) of `hz` with A4 = `tuning_hz`.
pub fn hz_note(hz: f32, tuning_hz: f32) -> f32 {
    69.0 + 12.0 * (hz / tuning_hz).log2()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_major_and_a_minor_share_the_white_keys() {
        let white = 0b1010_1011_0101;
        assert_eq!(scale_mask(parse_scale("major").unwrap(), 0), Some(white));
        assert_eq!(scale_mask(parse_scale("Minor").unwrap(), parse_key("a").unwrap()), Some(white));
    }

    #[test]
    fn keys_parse_with_sharps_and_flats() {
        assert_eq!(parse_key("F#"), Some(6));
        assert_eq!(parse_key("gb"), Some(6));
        assert_eq!(parse_key("H"), None);
        assert_eq!(key_name(10), "A#");
    }

    #[test]
    fn every_named_scale_contains_its_tonic() {
        for (i, name) in SCALE_NAMES.iter().enumerate().take(KEYBOARD) {
            assert_eq!(parse_scale(name), Some(i));
            for key in 0..12 {
                assert!(scale_mask(i, key).unwrap() & (1 << key) != 0);
            }
        }
        assert_eq!(parse_scale("whole tone"), Some(14));
        assert_eq!(scale_mask(CUSTOM, 0), None);
        assert_eq!(scale_mask(KEYBOARD, 0), None);
        assert_eq!(scale_mask(SCALA, 0), None);
        assert_eq!(parse_scale("midi"), Some(KEYBOARD));
    }

    #[test]
    fn notes_and_hertz_invert_each_other() {
        assert_eq!(note_hz(69.0, 440.0), 440.0);
        assert!((note_hz(60.0, 440.0) - 261.6256).abs() < 1e-3);
        assert!((hz_note(note_hz(57.3, 432.0), 432.0) - 57.3).abs() < 1e-4);
    }
}
