//! The parameter table: one row per parameter the engine reads, and everything the rest of the
//! daemon derives from it (settings keys, OSC addresses, presets, model inputs, docs). Pure
//! data, read by every thread; the RT thread only uses the ids and defaults.
//!
//! Adding a parameter is one row in [`parameters!`] below, plus its use in the model (name a
//! `model_input`) or the engine (read `params.get(ID)`). Settings, range checks, OSC set / query
//! / feedback / dump, presets, the README tables and the Open Stage Control session follow.
//!
//! ```
//! use autotuned::parameters::{by_address, STRENGTH, TABLE};
//! assert_eq!(by_address("/strength"), Some(STRENGTH));
//! assert_eq!(TABLE[STRENGTH.index()].setting, Some("tuning.strength"));
//! ```

use crate::scales::{NOTE_NAMES, SCALE_NAMES, parse_key, parse_scale};

/// A parameter's place in the table and in every parameter block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(usize);

impl Id {
    pub const fn index(self) -> usize {
        self.0
    }

    pub fn row(self) -> &'static Row {
        &TABLE[self.0]
    }
}

/// The names of an enumerated parameter; its value is the index of the name.
#[derive(Debug)]
pub struct Choices {
    pub names: &'static [&'static str],
    /// Reads a name, accepting the spellings users type (flats, "minor", any case).
    pub parse: fn(&str) -> Option<usize>,
}

/// What values a parameter takes.
#[derive(Debug)]
pub enum Kind {
    Float {
        min: f32,
        max: f32,
    },
    Int {
        min: i32,
        max: i32,
    },
    /// Off (0) or on (1).
    Toggle,
    Choice(&'static Choices),
    /// Twelve flags, bit 0 = C … bit 11 = B.
    Mask,
}

/// One parameter.
#[derive(Debug)]
pub struct Row {
    /// The key in presets and the name in docs.
    pub name: &'static str,
    /// The OSC address below the root (and below `/voice/K` once there are voices).
    pub address: &'static str,
    pub kind: Kind,
    pub default: f32,
    /// Shown after values in docs and on control surfaces; empty for none.
    pub unit: &'static str,
    /// `section.key` in the settings; `None` for parameters only OSC sets.
    pub setting: Option<&'static str>,
    /// Whether presets may set it.
    pub preset: bool,
    /// The `[1, 1]` (or `[1, 12]` for a mask) model input fed with the value, if any.
    pub model_input: Option<&'static str>,
    pub doc: &'static str,
}

macro_rules! parameters {
    ($($id:ident = $row:expr;)*) => {
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        enum Index { $($id,)* Count }
        $(pub const $id: Id = Id(Index::$id as usize);)*
        /// How many parameters there are.
        pub const COUNT: usize = Index::Count as usize;
        /// Every parameter, indexed by [`Id`].
        pub static TABLE: [Row; COUNT] = [$($row,)*];
    };
}

static MODES: Choices = Choices { names: &["auto", "midi", "manual"], parse: parse_mode };
static KEYS: Choices = Choices { names: &NOTE_NAMES, parse: parse_key_index };
static SCALES: Choices = Choices { names: &SCALE_NAMES, parse: parse_scale };

fn parse_mode(name: &str) -> Option<usize> {
    MODES.names.iter().position(|n| n.eq_ignore_ascii_case(name.trim()))
}

fn parse_key_index(name: &str) -> Option<usize> {
    parse_key(name).map(usize::from)
}

parameters! {
    STRENGTH = Row {
        name: "strength", address: "/strength", kind: Kind::Float { min: 0.0, max: 1.0 }, default: 1.0,
        unit: "", setting: Some("tuning.strength"), preset: true, model_input: None,
        doc: "0 = no correction … 1 = hard tune",
    };
    RETUNE_MS = Row {
        name: "retune_ms", address: "/retune/ms", kind: Kind::Float { min: 0.0, max: 1000.0 }, default: 0.0,
        unit: "ms", setting: Some("tuning.retune_ms"), preset: true, model_input: Some("retune_ms"),
        doc: "glide to a new target (0 = instant, the hard-tune effect)",
    };
    MODE = Row {
        name: "mode", address: "/mode", kind: Kind::Choice(&MODES), default: 0.0,
        unit: "", setting: Some("tuning.mode"), preset: true, model_input: None,
        doc: "auto: nearest allowed note; midi: the note held on midi_in; manual: target_hz",
    };
    TARGET_HZ = Row {
        name: "target_hz", address: "/target/hz", kind: Kind::Float { min: 20.0, max: 2000.0 }, default: 440.0,
        unit: "Hz", setting: Some("tuning.target_hz"), preset: true, model_input: None,
        doc: "manual-mode target; setting it over OSC switches to manual (also /target/note)",
    };
    TUNING_HZ = Row {
        name: "tuning_hz", address: "/tuning", kind: Kind::Float { min: 400.0, max: 480.0 }, default: 440.0,
        unit: "Hz", setting: Some("tuning.tuning_hz"), preset: true, model_input: Some("tuning_hz"),
        doc: "concert pitch A4",
    };
    KEY = Row {
        name: "key", address: "/key", kind: Kind::Choice(&KEYS), default: 0.0,
        unit: "", setting: Some("tuning.key"), preset: true, model_input: None,
        doc: "key of auto mode (sharps or flats; also 0..11)",
    };
    SCALE = Row {
        name: "scale", address: "/scale", kind: Kind::Choice(&SCALES), default: 0.0,
        unit: "", setting: Some("tuning.scale"), preset: true, model_input: None,
        doc: "scale of auto mode; sets the allowed notes; midi = the notes held on midi_in (while none is, the notes before); custom = the notes set with /notes; scala = the tuning loaded with /scala or [tuning] scala",
    };
    NOTES = Row {
        name: "notes", address: "/notes", kind: Kind::Mask, default: 4095.0,
        unit: "", setting: None, preset: false, model_input: Some("scale_mask"),
        doc: "allowed pitch classes: 12 flags C..B or one int mask (also /notes/N f 0 or 1)",
    };
    TRANSPOSE = Row {
        name: "transpose", address: "/transpose", kind: Kind::Float { min: -24.0, max: 24.0 }, default: 0.0,
        unit: "st", setting: Some("tuning.transpose"), preset: true, model_input: Some("transpose"),
        doc: "semitones added to every target (fractions allowed)",
    };
    BYPASS = Row {
        name: "bypass", address: "/bypass", kind: Kind::Toggle, default: 0.0,
        unit: "", setting: Some("tuning.bypass"), preset: false, model_input: None,
        doc: "dry audio, delayed by the model's latency so it stays aligned",
    };
    FORMANT_PRESERVE = Row {
        name: "formant_preserve", address: "/formant/preserve", kind: Kind::Float { min: 0.0, max: 1.0 },
        default: 1.0, unit: "", setting: Some("tuning.formant_preserve"), preset: true,
        model_input: Some("formant_preserve"),
        doc: "1 = formants stay where they were sung, 0 = they move with the pitch (models with this input)",
    };
    FORMANT_SHIFT = Row {
        name: "formant_shift", address: "/formant/shift", kind: Kind::Float { min: -12.0, max: 12.0 },
        default: 0.0, unit: "st", setting: Some("tuning.formant_shift"), preset: true,
        model_input: Some("formant_shift"),
        doc: "moves the formants by this much on top of formant_preserve (the throat; models with this input)",
    };
    FLEX = Row {
        name: "flex", address: "/flex", kind: Kind::Float { min: 0.0, max: 1.0 }, default: 0.0,
        unit: "", setting: Some("tuning.flex"), preset: true, model_input: None,
        doc: "flex-tune: 0 = off; else correct only within ±50·(1 − flex) cents of the target, fading to none over the next 10 cents",
    };
    HUMANIZE = Row {
        name: "humanize", address: "/humanize", kind: Kind::Float { min: 0.0, max: 1.0 }, default: 0.0,
        unit: "", setting: Some("tuning.humanize"), preset: true, model_input: None,
        doc: "on notes held past 120 ms the retune time grows towards humanize × 400 ms, so sustained notes keep their slow movement while short ones snap",
    };
    VIBRATO_NATURAL = Row {
        name: "vibrato_natural", address: "/vibrato/natural", kind: Kind::Float { min: 0.0, max: 2.0 }, default: 1.0,
        unit: "", setting: Some("tuning.vibrato_natural"), preset: true, model_input: None,
        doc: "the sung vibrato (3–9 Hz) is kept at this times its depth, even at retune 0 (0 = flattened); the note is chosen from the vibrato's centre",
    };
    VIBRATO_RATE_HZ = Row {
        name: "vibrato_rate", address: "/vibrato/rate", kind: Kind::Float { min: 0.1, max: 10.0 }, default: 5.5,
        unit: "Hz", setting: Some("tuning.vibrato_rate"), preset: true, model_input: None,
        doc: "rate of the created vibrato",
    };
    VIBRATO_DEPTH = Row {
        name: "vibrato_depth", address: "/vibrato/depth", kind: Kind::Float { min: 0.0, max: 100.0 }, default: 0.0,
        unit: "c", setting: Some("tuning.vibrato_depth"), preset: true, model_input: None,
        doc: "created vibrato, ± this many cents around the target (0 = off)",
    };
    VIBRATO_ONSET_MS = Row {
        name: "vibrato_onset", address: "/vibrato/onset", kind: Kind::Float { min: 0.0, max: 1500.0 }, default: 0.0,
        unit: "ms", setting: Some("tuning.vibrato_onset"), preset: true, model_input: None,
        doc: "how long after each note starts the created vibrato begins",
    };
    BEND_RANGE = Row {
        name: "bend_range", address: "/midi/bend_range", kind: Kind::Float { min: 0.0, max: 24.0 }, default: 2.0,
        unit: "st", setting: Some("midi.bend_range"), preset: false, model_input: None,
        doc: "how far a full pitch bend on midi_in moves the target (MIDI mode)",
    };
    OUT_CHANNEL = Row {
        name: "out_channel", address: "/midi/out/channel", kind: Kind::Int { min: 1, max: 16 }, default: 1.0,
        unit: "", setting: Some("midi.out_channel"), preset: false, model_input: None,
        doc: "channel of the sung notes sent on midi_out",
    };
    OUT_THRESHOLD = Row {
        name: "out_threshold", address: "/midi/out/threshold", kind: Kind::Float { min: 0.0, max: 1.0 },
        default: 0.6, unit: "", setting: Some("midi.out_threshold"), preset: false, model_input: None,
        doc: "voicing confidence a sung note needs before it is sent on midi_out",
    };
    OUT_MIN_NOTE_MS = Row {
        name: "out_min_note_ms", address: "/midi/out/min_ms", kind: Kind::Float { min: 0.0, max: 2000.0 },
        default: 60.0, unit: "ms", setting: Some("midi.out_min_note_ms"), preset: false, model_input: None,
        doc: "how long a note must hold before its note-on is sent, so scoops are not notes",
    };
}

/// Every id, in table order.
pub fn ids() -> impl Iterator<Item = Id> {
    (0..COUNT).map(Id)
}

/// The parameter at an OSC address (below the root).
pub fn by_address(address: &str) -> Option<Id> {
    ids().find(|id| id.row().address == address)
}

/// The parameter at a settings key (`section.key`).
pub fn by_setting(key: &str) -> Option<Id> {
    ids().find(|id| id.row().setting == Some(key))
}

/// The parameter a preset names by `name`.
pub fn by_preset_key(name: &str) -> Option<Id> {
    ids().find(|id| id.row().preset && id.row().name == name)
}

/// The parameter fed to the model input `name`.
pub fn by_model_input(name: &str) -> Option<Id> {
    ids().find(|id| id.row().model_input == Some(name))
}

/// The settings sections the table's rows live in.
pub fn sections() -> Vec<&'static str> {
    let mut out: Vec<&str> = TABLE.iter().filter_map(|r| r.setting?.split_once('.').map(|(s, _)| s)).collect();
    out.dedup();
    out
}

impl Row {
    /// Checks `value` against the range; whole-numbered kinds round to the nearest whole value.
    pub fn check(&self, value: f64) -> Result<f32, String> {
        if !value.is_finite() {
            return Err(format!("{value} is not a finite number"));
        }
        let within = |lo: f64, hi: f64, shown: String| {
            if (lo..=hi).contains(&value) { Ok(value) } else { Err(format!("{value} is outside {shown}")) }
        };
        let checked = match &self.kind {
            Kind::Float { min, max } => within(f64::from(*min), f64::from(*max), format!("{min}..={max}"))?,
            Kind::Int { min, max } => within(f64::from(*min), f64::from(*max), format!("{min}..={max}"))?.round(),
            Kind::Toggle => f64::from(u8::from(value >= 0.5)),
            Kind::Choice(c) => within(0.0, (c.names.len() - 1) as f64, format!("0..={}", c.names.len() - 1))?.floor(),
            Kind::Mask => {
                if value.fract() != 0.0 {
                    return Err(format!("{value} is not a whole mask"));
                }
                within(0.0, 4095.0, "0..=4095".into())?
            }
        };
        Ok(checked as f32)
    }

    /// Reads a value as written in the settings, the environment or `--set`.
    pub fn parse(&self, text: &str) -> Result<f32, String> {
        let text = text.trim();
        match &self.kind {
            Kind::Toggle => match text.to_ascii_lowercase().as_str() {
                "true" | "on" | "yes" | "1" => Ok(1.0),
                "false" | "off" | "no" | "0" => Ok(0.0),
                _ => Err("must be true or false".into()),
            },
            Kind::Choice(c) => {
                (c.parse)(text).map(|i| i as f32).ok_or_else(|| format!("must be one of: {}", c.names.join(", ")))
            }
            _ => {
                let value: f64 = text.parse().map_err(|_| format!("must be a number ({})", self.range_text()))?;
                self.check(value).map_err(|_| format!("must be in {}", self.range_text()))
            }
        }
    }

    /// The range as docs show it.
    pub fn range_text(&self) -> String {
        let unit = if self.unit.is_empty() { String::new() } else { format!(" {}", self.unit) };
        match &self.kind {
            Kind::Float { min, max } => format!("{min}..={max}{unit}"),
            Kind::Int { min, max } => format!("{min}..={max}{unit}"),
            Kind::Toggle => "false / true".into(),
            Kind::Choice(c) => c.names.join(", "),
            Kind::Mask => "12 flags C..B".into(),
        }
    }

    /// A value as docs and settings files write it.
    pub fn value_text(&self, value: f32) -> String {
        match &self.kind {
            Kind::Toggle => (value >= 0.5).to_string(),
            Kind::Choice(c) => c.names.get(value as usize).copied().unwrap_or("?").to_owned(),
            Kind::Mask if value == 4095.0 => "all".into(),
            _ => format!("{value}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_reachable_by_each_of_its_names() {
        for id in ids() {
            let row = id.row();
            assert_eq!(by_address(row.address), Some(id), "{}", row.name);
            if let Some(key) = row.setting {
                assert_eq!(by_setting(key), Some(id));
            }
            if let Some(input) = row.model_input {
                assert_eq!(by_model_input(input), Some(id));
            }
            assert_eq!(row.check(f64::from(row.default)), Ok(row.default), "{}'s default is in range", row.name);
        }
    }

    #[test]
    fn values_parse_by_kind() {
        assert_eq!(STRENGTH.row().parse("0.25"), Ok(0.25));
        assert!(STRENGTH.row().parse("1.5").unwrap_err().contains("0..=1"));
        assert_eq!(KEY.row().parse("Bb"), Ok(10.0));
        assert_eq!(SCALE.row().parse("minor"), Ok(2.0));
        assert_eq!(MODE.row().parse("MANUAL"), Ok(2.0));
        assert_eq!(BYPASS.row().parse("on"), Ok(1.0));
        assert_eq!(OUT_CHANNEL.row().parse("16"), Ok(16.0));
        assert!(OUT_CHANNEL.row().parse("17").is_err());
        assert!(NOTES.row().check(4095.5).is_err());
    }
}
