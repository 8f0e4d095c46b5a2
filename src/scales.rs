//! Keys and scales: names, pitch-class patterns and the 12-bit masks the model's `scale_mask`
//! takes. Pure data, used by the OSC and supervisor threads.

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

/// The name a key is reported by.
pub fn key_name(key: u8) -> &'static str {
    ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"][usize::from(key % 12)]
}

/// "C".."B" (sharps or flats, any case) to 0..11.
pub fn parse_key(name: &str) -> Option<u8> {
    let name = name.trim();
    KEY_NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, k)| *k)
}

/// A named scale, or a custom set of pitch classes (set with `/autotune/notes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    Named(usize),
    Custom,
}

/// Every named scale: (name, semitones above the key). Index = the scale's number over OSC.
pub const SCALES: [(&str, &[u8]); 15] = [
    ("chromatic", &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
    ("major", &[0, 2, 4, 5, 7, 9, 11]),
    ("natural_minor", &[0, 2, 3, 5, 7, 8, 10]),
    ("harmonic_minor", &[0, 2, 3, 5, 7, 8, 11]),
    ("ionian", &[0, 2, 4, 5, 7, 9, 11]),
    ("dorian", &[0, 2, 3, 5, 7, 9, 10]),
    ("phrygian", &[0, 1, 3, 5, 7, 8, 10]),
    ("lydian", &[0, 2, 4, 6, 7, 9, 11]),
    ("mixolydian", &[0, 2, 4, 5, 7, 9, 10]),
    ("aeolian", &[0, 2, 3, 5, 7, 8, 10]),
    ("locrian", &[0, 1, 3, 5, 6, 8, 10]),
    ("major_pentatonic", &[0, 2, 4, 7, 9]),
    ("minor_pentatonic", &[0, 3, 5, 7, 10]),
    ("blues", &[0, 3, 5, 6, 7, 10]),
    ("whole_tone", &[0, 2, 4, 6, 8, 10]),
];

impl Scale {
    pub fn name(self) -> &'static str {
        match self {
            Scale::Named(i) => SCALES[i].0,
            Scale::Custom => "custom",
        }
    }

    /// A scale by name ("minor" is the natural minor), or by its number.
    pub fn parse(name: &str) -> Option<Scale> {
        let name = name.trim().to_ascii_lowercase().replace([' ', '-'], "_");
        let name = if name == "minor" { "natural_minor".to_owned() } else { name };
        SCALES.iter().position(|(n, _)| *n == name).map(Scale::Named)
    }

    /// The allowed pitch classes with `key` as the tonic (bit 0 = C); `None` for a custom set.
    pub fn mask(self, key: u8) -> Option<u16> {
        let Scale::Named(i) = self else { return None };
        Some(SCALES[i].1.iter().fold(0u16, |m, step| m | 1 << ((key + step) % 12)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_major_and_a_minor_share_the_white_keys() {
        let white = 0b1010_1011_0101;
        assert_eq!(Scale::parse("major").unwrap().mask(0), Some(white));
        assert_eq!(Scale::parse("Minor").unwrap().mask(parse_key("a").unwrap()), Some(white));
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
        for (i, (name, _)) in SCALES.iter().enumerate() {
            assert_eq!(Scale::parse(name), Some(Scale::Named(i)));
            for key in 0..12 {
                assert!(Scale::Named(i).mask(key).unwrap() & (1 << key) != 0);
            }
        }
        assert_eq!(Scale::parse("whole tone"), Some(Scale::Named(14)));
        assert_eq!(Scale::Custom.mask(0), None);
    }
}
