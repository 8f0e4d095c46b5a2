//! Scala tunings: `.scl` scales and `.kbm` keyboard mappings read into the [`ScaleTuning`] auto
//! mode snaps to. Runs on the supervisor (settings, SIGHUP) and the OSC thread
//! (`/autotune/scala`), never on the RT thread.
//!
//! A `.scl` file is a description line, a note count, then one pitch per line: cents when it has
//! a period (`701.955`), else a ratio (`3/2`, or `2`); `!` starts a comment line, and the last
//! pitch is the period. Without a `.kbm`, degree 0 sits on the key's note in 12-TET from
//! `tuning_hz`; a `.kbm` places it (its middle note, reference note and frequency) and may leave
//! degrees unmapped (`x`), which auto mode then never lands on.
//!
//! ```
//! use autotuned::scala::Scala;
//! let just = Scala::parse("just.scl", "! a just major triad\nJust triad\n3\n5/4\n3/2\n2/1\n").unwrap();
//! assert_eq!(just.notes(), 3);
//! assert!((just.period_cents() - 1200.0).abs() < 1e-9);
//! ```

use std::path::{Path, PathBuf};

use crate::rt::params::{SCALE_SLOTS, ScaleTuning};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScalaError {
    /// The name is not a file inside the Scala directory.
    #[error("{file}: {reason}")]
    Refused { file: String, reason: String },
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
    #[error("{file}, line {line}: {reason}")]
    Line { file: String, line: usize, reason: String },
}

/// A parsed `.scl` scale: the cents of degrees 1..=n above degree 0, the last one the period.
#[derive(Clone, Debug, PartialEq)]
pub struct Scala {
    pub description: String,
    pitches: Vec<f64>,
}

/// A parsed `.kbm` keyboard mapping: which key degree 0 is on, which key is tuned to which
/// frequency, and which degree each key of a repeating pattern plays.
#[derive(Clone, Debug, PartialEq)]
pub struct Keyboard {
    middle_note: i64,
    reference_note: i64,
    reference_hz: f64,
    octave_degree: usize,
    /// One entry per key of the pattern: the degree it plays, `None` for an unmapped key.
    mapping: Vec<Option<usize>>,
}

/// The lines that carry data, numbered from 1 as an editor shows them.
fn data_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| (i + 1, l)).filter(|(_, l)| !l.trim_start().starts_with('!'))
}

fn line_error(file: &str, line: usize, reason: impl Into<String>) -> ScalaError {
    ScalaError::Line { file: file.to_owned(), line, reason: reason.into() }
}

fn file_error(file: &str, reason: impl Into<String>) -> ScalaError {
    ScalaError::File { file: file.to_owned(), reason: reason.into() }
}

/// One pitch of a `.scl` line in cents: `701.955` (cents), `3/2` or `2` (a ratio).
fn pitch_cents(token: &str) -> Option<f64> {
    if token.contains('.') {
        return token.parse::<f64>().ok().filter(|c| c.is_finite());
    }
    let (num, den) = token.split_once('/').unwrap_or((token, "1"));
    let (num, den) = (num.parse::<u64>().ok()?, den.parse::<u64>().ok()?);
    (num > 0 && den > 0).then(|| 1200.0 * (num as f64 / den as f64).log2())
}

impl Scala {
    /// Reads a `.scl` file's text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Scala, ScalaError> {
        let mut lines = data_lines(text);
        let (_, description) = lines.next().ok_or_else(|| file_error(file, "empty: no description line"))?;
        let (count_line, count) =
            lines.next().ok_or_else(|| file_error(file, "no note count after the description"))?;
        let count: usize = count
            .split_whitespace()
            .next()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| line_error(file, count_line, format!("{:?} is not a note count", count.trim())))?;
        if !(1..=SCALE_SLOTS).contains(&count) {
            return Err(line_error(file, count_line, format!("{count} notes; autotuned takes 1..={SCALE_SLOTS}")));
        }
        let mut pitches = Vec::with_capacity(count);
        for (line, text) in lines.filter(|(_, l)| !l.trim().is_empty()).take(count) {
            let token = text.split_whitespace().next().unwrap_or_default();
            let cents = pitch_cents(token).ok_or_else(|| {
                line_error(file, line, format!("{token:?} is neither cents (701.955) nor a ratio (3/2)"))
            })?;
            pitches.push(cents);
        }
        if pitches.len() != count {
            return Err(file_error(file, format!("says {count} notes but lists {}", pitches.len())));
        }
        if pitches[count - 1] <= 0.0 {
            return Err(file_error(file, "the last pitch (the period) must be above the first degree"));
        }
        Ok(Scala { description: description.trim().to_owned(), pitches })
    }

    /// Notes per period.
    pub fn notes(&self) -> usize {
        self.pitches.len()
    }

    pub fn period_cents(&self) -> f64 {
        self.pitches[self.pitches.len() - 1]
    }

    /// Cents of any degree above degree 0 (past the period, a period higher per round).
    fn degree_cents(&self, degree: i64) -> f64 {
        let n = self.notes() as i64;
        let (round, step) = (degree.div_euclid(n), degree.rem_euclid(n));
        let within = if step == 0 { 0.0 } else { self.pitches[step as usize - 1] };
        round as f64 * self.period_cents() + within
    }

    /// The tuning auto mode uses: every degree (or only those `keyboard` maps), placed on the
    /// key's note or where `keyboard` puts degree 0.
    pub fn tuning(&self, keyboard: Option<&Keyboard>) -> Result<ScaleTuning, String> {
        let n = self.notes();
        let mut used = vec![true; n];
        let mut period = self.period_cents();
        let mut anchor_hz = 0.0;
        if let Some(k) = keyboard {
            if !k.mapping.is_empty() {
                used = vec![false; n];
                for degree in k.mapping.iter().flatten() {
                    used[degree % n] = true;
                }
                if k.octave_degree > 0 {
                    period = self.degree_cents(k.octave_degree as i64);
                }
            }
            let reference = k.degree_of(k.reference_note).ok_or("the reference note is an unmapped key")?;
            anchor_hz = k.reference_hz / (self.degree_cents(reference) / 1200.0).exp2();
        }
        if period <= 0.0 {
            return Err("the period must be above the first degree".into());
        }
        let mut tuning =
            ScaleTuning { period: (period / 100.0) as f32, anchor_hz: anchor_hz as f32, ..Default::default() };
        for degree in (0..n).filter(|d| used[*d]) {
            tuning.degrees[tuning.len as usize] = (self.degree_cents(degree as i64).rem_euclid(period) / 100.0) as f32;
            tuning.len += 1;
        }
        if tuning.len == 0 {
            return Err("the keyboard mapping maps no degree".into());
        }
        let mut sorted = tuning.degrees[..tuning.len as usize].to_vec();
        sorted.sort_by(f32::total_cmp);
        let wrap = sorted[0] + tuning.period - sorted[sorted.len() - 1];
        tuning.step = sorted.windows(2).map(|w| w[1] - w[0]).fold(wrap, f32::min);
        Ok(tuning)
    }
}

impl Keyboard {
    /// Reads a `.kbm` file's text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Keyboard, ScalaError> {
        let lines: Vec<(usize, &str)> = data_lines(text).filter(|(_, l)| !l.trim().is_empty()).collect();
        let field = |index: usize, what: &str| -> Result<(usize, &str), ScalaError> {
            lines
                .get(index)
                .map(|(line, text)| (*line, text.split_whitespace().next().unwrap_or_default()))
                .ok_or_else(|| file_error(file, format!("ends before the {what}")))
        };
        let integer = |index: usize, what: &str| -> Result<i64, ScalaError> {
            let (line, token) = field(index, what)?;
            token.parse().map_err(|_| line_error(file, line, format!("{token:?} is not a whole number ({what})")))
        };
        let map_size = integer(0, "map size")?;
        let (middle_note, reference_note) = (integer(3, "middle note")?, integer(4, "reference note")?);
        let (line, token) = field(5, "reference frequency")?;
        let reference_hz: f64 = token
            .parse()
            .ok()
            .filter(|hz: &f64| hz.is_finite() && *hz > 0.0)
            .ok_or_else(|| line_error(file, line, format!("{token:?} is not a frequency in Hz")))?;
        let octave_degree = integer(6, "formal octave degree")?;
        if !(0..=128).contains(&map_size) || octave_degree < 0 {
            return Err(file_error(file, "map size must be 0..=128 and the octave degree 0 or more"));
        }
        let mut mapping = Vec::new();
        for index in 0..map_size as usize {
            match field(7 + index, "mapping")? {
                (_, "x" | "X") => mapping.push(None),
                (line, token) => mapping.push(Some(
                    token
                        .parse()
                        .map_err(|_| line_error(file, line, format!("{token:?} is neither a scale degree nor x")))?,
                )),
            }
        }
        Ok(Keyboard { middle_note, reference_note, reference_hz, octave_degree: octave_degree as usize, mapping })
    }

    /// The scale degree (from degree 0 on the middle note) key `note` plays; `None` if unmapped.
    fn degree_of(&self, note: i64) -> Option<i64> {
        let offset = note - self.middle_note;
        if self.mapping.is_empty() {
            return Some(offset);
        }
        let size = self.mapping.len() as i64;
        let (round, key) = (offset.div_euclid(size), offset.rem_euclid(size));
        let octave = if self.octave_degree > 0 { self.octave_degree as i64 } else { size };
        self.mapping[key as usize].map(|degree| round * octave + degree as i64)
    }
}

/// `dir/name` if `name` is a plain file name that resolves (after symlinks) inside `dir`.
fn inside(dir: &Path, name: &str) -> Result<PathBuf, ScalaError> {
    crate::app::file_in_dir(dir, name, "Scala directory")
        .map_err(|reason| ScalaError::Refused { file: name.to_owned(), reason })
}

/// Loads `scl` (and the keyboard mapping `kbm`, if any) from `dir` only, as the tuning auto mode
/// uses.
pub fn load(dir: &Path, scl: &str, kbm: Option<&str>) -> Result<ScaleTuning, ScalaError> {
    let read = |name: &str| -> Result<String, ScalaError> {
        let path = inside(dir, name)?;
        std::fs::read_to_string(&path).map_err(|e| file_error(&path.display().to_string(), e.to_string()))
    };
    let scala = Scala::parse(scl, &read(scl)?)?;
    let keyboard = kbm.map(|name| read(name).and_then(|text| Keyboard::parse(name, &text))).transpose()?;
    scala.tuning(keyboard.as_ref()).map_err(|reason| file_error(kbm.unwrap_or(scl), reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edo(n: usize) -> String {
        let steps: String = (1..=n).map(|k| format!("{:.5}\n", 1200.0 * k as f64 / n as f64)).collect();
        format!("! {n}-edo.scl\n{n} equal divisions of the octave\n {n}\n!\n{steps}")
    }

    #[test]
    fn an_equal_temperament_gives_every_step_from_the_key() {
        let tuning = Scala::parse("19-edo.scl", &edo(19)).unwrap().tuning(None).unwrap();
        assert_eq!((tuning.len, tuning.period, tuning.anchor_hz), (19, 12.0, 0.0));
        assert!((tuning.degrees[5] - 5.0 * 12.0 / 19.0).abs() < 1e-5);
        assert_eq!(tuning.degrees[0], 0.0);
        assert!((tuning.step - 12.0 / 19.0).abs() < 1e-5);
    }

    #[test]
    fn ratios_and_cents_read_alike() {
        let text = "Just\n4\n9/8\n5/4 major third\n701.955\n2\n";
        let tuning = Scala::parse("just.scl", text).unwrap().tuning(None).unwrap();
        let expect = [0.0, 2.0391, 3.8631, 7.0196];
        for (got, want) in tuning.degrees.iter().zip(expect) {
            assert!((got - want).abs() < 1e-3, "{got} vs {want}");
        }
    }

    #[test]
    fn a_bad_line_is_named() {
        let err = Scala::parse("bad.scl", "Bad\n3\n9/8\nfive/4\n2/1\n").unwrap_err();
        assert_eq!(err.to_string(), "bad.scl, line 4: \"five/4\" is neither cents (701.955) nor a ratio (3/2)");
        assert!(Scala::parse("short.scl", "Short\n3\n9/8\n2/1\n").unwrap_err().to_string().contains("lists 2"));
        assert!(Scala::parse("many.scl", "Many\n65\n").unwrap_err().to_string().contains("line 2"));
        assert!(Scala::parse("zero.scl", "Zero\n1\n0/1\n").is_err());
    }

    #[test]
    fn a_keyboard_mapping_places_degree_0_and_leaves_out_unmapped_degrees() {
        // Degree 0 on key 60, key 64 (degree 4, a 5/3) tuned to 440 Hz, and the pattern of five
        // keys plays only degrees 0, 2 and 4.
        let scale = Scala::parse("just.scl", "Just\n5\n9/8\n5/4\n3/2\n5/3\n2\n").unwrap();
        let kbm = "! triad.kbm\n5\n0\n127\n60\n64\n440.0\n5\n0\nx\n2\nx\n4\n";
        let tuning = scale.tuning(Some(&Keyboard::parse("triad.kbm", kbm).unwrap())).unwrap();
        assert_eq!(tuning.len, 3);
        assert!((tuning.anchor_hz - 440.0 * 3.0 / 5.0).abs() < 1e-3, "{}", tuning.anchor_hz);
        assert!((tuning.degrees[1] - 3.8631).abs() < 1e-3 && (tuning.degrees[2] - 8.8436).abs() < 1e-3);
        let err = Keyboard::parse("bad.kbm", "5\n0\n127\n60\n69\nloud\n").unwrap_err();
        assert_eq!(err.to_string(), "bad.kbm, line 6: \"loud\" is not a frequency in Hz");
    }
}
