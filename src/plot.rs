//! The picture of what a correction did: the input's pitch, the target and the output's pitch
//! over time on a labelled note grid, as a PNG. Used by `autotuned process --plot` on the
//! calling thread; the font is compiled in, so no system fonts are needed.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::scales::{hz_note, key_name};

/// One pitch track: Hz per time step, 0 where unvoiced.
pub struct Track<'a> {
    pub label: &'static str,
    pub hz: &'a [f32],
    pub color: RGBColor,
    /// Line width in pixels; a wide line drawn first stays visible under a line on top of it.
    pub width: u32,
}

/// The colours of the input, target and output tracks (also what tests look for).
pub const INPUT: RGBColor = RGBColor(120, 120, 120);
pub const TARGET: RGBColor = RGBColor(230, 120, 20);
pub const OUTPUT: RGBColor = RGBColor(20, 110, 220);

pub const WIDTH: u32 = 1200;
pub const HEIGHT: u32 = 600;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("nothing voiced to plot")]
    Empty,
    #[error("drawing {path}: {reason}")]
    Draw { path: String, reason: String },
}

/// "A3", "C#4" for a MIDI note.
fn note_label(note: i32) -> String {
    format!("{}{}", key_name(note.rem_euclid(12) as u8), note.div_euclid(12) - 1)
}

/// Draws `tracks` (sampled every `step_seconds`, in order, later on top) into a PNG at `path`.
pub fn pitch_png(
    path: &Path,
    title: &str,
    step_seconds: f32,
    tuning_hz: f32,
    tracks: &[Track],
) -> Result<(), PlotError> {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        // The font is valid TTF data compiled into the binary; a failure would only leave labels out.
        let _ = register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
    let notes = |hz: &[f32]| hz.iter().filter(|h| **h > 0.0).map(|h| hz_note(*h, tuning_hz)).collect::<Vec<f32>>();
    let all: Vec<f32> = tracks.iter().flat_map(|t| notes(t.hz)).filter(|n| n.is_finite()).collect();
    if all.is_empty() {
        return Err(PlotError::Empty);
    }
    let low = all.iter().copied().fold(f32::INFINITY, f32::min).floor() - 1.0;
    let high = all.iter().copied().fold(f32::NEG_INFINITY, f32::max).ceil() + 1.0;
    let seconds = tracks.iter().map(|t| t.hz.len()).max().unwrap_or(0) as f32 * step_seconds;
    let draw_error =
        |e: &dyn std::fmt::Display| PlotError::Draw { path: path.display().to_string(), reason: e.to_string() };

    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_error(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f32..seconds.max(step_seconds), low..high)
        .map_err(|e| draw_error(&e))?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("note")
        .y_labels(((high - low) as usize + 1).min(40))
        .y_label_formatter(&|n| if n.fract() == 0.0 { note_label(*n as i32) } else { String::new() })
        .light_line_style(WHITE)
        .draw()
        .map_err(|e| draw_error(&e))?;
    for track in tracks {
        // One line per voiced run, so unvoiced gaps stay gaps.
        let mut runs: Vec<Vec<(f32, f32)>> = vec![Vec::new()];
        for (i, hz) in track.hz.iter().enumerate() {
            if *hz > 0.0 {
                if let Some(run) = runs.last_mut() {
                    run.push((i as f32 * step_seconds, hz_note(*hz, tuning_hz)));
                }
            } else if runs.last().is_some_and(|r| !r.is_empty()) {
                runs.push(Vec::new());
            }
        }
        let style = ShapeStyle::from(&track.color).stroke_width(track.width);
        let mut first = true;
        for run in runs.into_iter().filter(|r| !r.is_empty()) {
            let series = chart.draw_series(LineSeries::new(run, style)).map_err(|e| draw_error(&e))?;
            if std::mem::take(&mut first) {
                let color = track.color;
                series.label(track.label).legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
            }
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| draw_error(&e))?;
    root.present().map_err(|e| draw_error(&e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn notes_are_labelled_with_octaves() {
        assert_eq!(super::note_label(57), "A3");
        assert_eq!(super::note_label(61), "C#4");
    }
}
