//! The `autotuned` binary: command line, logger and settings, then hands over to `app` (the
//! daemon), `offline` (file processing) or `model` (contract check). Main thread.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use autotuned::app::{self, SettingsSource};
use autotuned::parameters::{FORMANT_PRESERVE, FORMANT_SHIFT, MODE, RETUNE_MS, STRENGTH, TARGET_HZ, TUNING_HZ};
use autotuned::rt::Mode;
use autotuned::scales::note_hz;
use autotuned::settings::Settings;

#[derive(Parser)]
#[command(
    version,
    about = "Real-time pitch correction for JACK and PipeWire, running an ONNX model in the audio callback"
)]
struct Cli {
    /// TOML settings file (see config/autotuned.toml).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Override one setting, e.g. --set osc.bind=127.0.0.1:9001 (repeatable; wins over the file
    /// and AUTOTUNED_* variables).
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    overrides: Vec<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Correct a WAV file with the same engine, offline (each channel a voice).
    Process(ProcessArgs),
    /// Print the contract a model offers, or why autotuned refuses it.
    CheckModel { path: PathBuf },
    /// Regenerate the README's parameter table and the Open Stage Control session from the
    /// parameter table (run in the checkout; `--check` only reports whether they are current).
    #[command(hide = true)]
    Docs {
        #[arg(long)]
        check: bool,
    },
}

#[derive(Args)]
struct ProcessArgs {
    input: PathBuf,
    output: PathBuf,
    /// Tune to this frequency.
    #[arg(long, conflicts_with_all = ["note", "auto"])]
    target_hz: Option<f32>,
    /// Tune to this MIDI note (fractional = cents).
    #[arg(long, conflicts_with = "auto")]
    note: Option<f32>,
    /// Tune each note to the nearest semitone (the default).
    #[arg(long)]
    auto: bool,
    /// 0..1 (default: the configured tuning.strength).
    #[arg(long)]
    strength: Option<f32>,
    /// Glide time, ms (default: the configured tuning.retune_ms).
    #[arg(long)]
    retune_ms: Option<f32>,
    /// 0..1: 1 keeps the formants where they were sung (default: tuning.formant_preserve; a
    /// model with that input).
    #[arg(long)]
    formant_preserve: Option<f32>,
    /// Semitones the formants move, -12..12 (default: tuning.formant_shift; a model with that input).
    #[arg(long, allow_hyphen_values = true)]
    formant_shift: Option<f32>,
    /// Model file (default: the configured one).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Channels (from 1) analysed together and corrected alike, e.g. `--link 1,2`; repeat for
    /// more groups.
    #[arg(long, value_name = "CHANNELS")]
    link: Vec<String>,
    /// Also draw the input pitch, the target and the output pitch over time into this PNG.
    #[arg(long, value_name = "PNG")]
    plot: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref(), &cli.overrides) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("autotuned: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&settings);
    for warning in &settings.warnings {
        log::warn!("{warning}");
    }
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => app::run(settings, SettingsSource { file: cli.config, overrides: cli.overrides }),
        Command::Process(args) => process(&settings, args),
        Command::CheckModel { path } => check_model(&settings, &path),
        Command::Docs { check } => docs(&settings, check),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(settings: &Settings) {
    let level = autotuned::settings::log_level(&settings.log.level).unwrap_or(log::LevelFilter::Info);
    if systemd_journal_logger::connected_to_journal() {
        if let Ok(journal) = systemd_journal_logger::JournalLog::new() {
            if journal.install().is_ok() {
                log::set_max_level(std::env::var("RUST_LOG").ok().and_then(|v| v.parse().ok()).unwrap_or(level));
                return;
            }
        }
    }
    env_logger::Builder::new().filter_level(level).parse_default_env().init();
}

fn process(settings: &Settings, args: ProcessArgs) -> Result<()> {
    let runtime = autotuned::model::start_runtime(settings.onnxruntime())?;
    let mut params = settings.params.with(MODE, Mode::Auto.value());
    let chosen = [
        (STRENGTH, args.strength),
        (RETUNE_MS, args.retune_ms),
        (FORMANT_PRESERVE, args.formant_preserve),
        (FORMANT_SHIFT, args.formant_shift),
    ];
    for (id, value) in chosen {
        if let Some(value) = value {
            let checked = id
                .row()
                .check(f64::from(value))
                .map_err(|e| anyhow::anyhow!("--{}: {e}", id.row().name.replace('_', "-")))?;
            params.set(id, checked);
        }
    }
    let target = args.target_hz.or(args.note.map(|note| note_hz(note, params.get(TUNING_HZ))));
    if let Some(hz) = target {
        params = params.with(MODE, Mode::Manual.value()).with(TARGET_HZ, hz);
    }
    let model = args.model.unwrap_or_else(|| settings.model_path());
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let plot = args.plot.as_deref();
    let mut links = Vec::new();
    for group in &args.link {
        let channels: Option<Vec<usize>> =
            group.split(',').map(|c| c.trim().parse::<usize>().ok().filter(|c| *c >= 1).map(|c| c - 1)).collect();
        match channels {
            Some(channels) if channels.len() >= 2 => links.push(channels),
            _ => anyhow::bail!("--link {group:?}: expects two or more channel numbers from 1, e.g. 1,2"),
        }
    }
    let job = autotuned::offline::Job { params, links: &links, progress, plot };
    let faults = autotuned::offline::process_file(&runtime, &model, &args.input, &args.output, &job)
        .with_context(|| format!("processing {}", args.input.display()))?;
    if faults > 0 {
        log::warn!("{faults} blocks fell back to dry audio after model faults");
    }
    Ok(())
}

fn check_model(settings: &Settings, path: &std::path::Path) -> Result<()> {
    let runtime = autotuned::model::start_runtime(settings.onnxruntime())?;
    let (_, contract) = runtime.load(path, None)?;
    println!("{contract}");
    Ok(())
}

const README: &str = "README.md";
const SESSION: &str = "config/open-stage-control/autotuned.json";

fn docs(settings: &Settings, check: bool) -> Result<()> {
    let root = &settings.osc.root;
    let readme = std::fs::read_to_string(README).with_context(|| format!("reading {README} (run in the checkout)"))?;
    let new_readme = autotuned::docs::with_parameter_table(&readme, root)
        .with_context(|| format!("{README} lacks the lines {} and {}", autotuned::docs::BEGIN, autotuned::docs::END))?;
    let new_session = autotuned::docs::session_json(root);
    let session = std::fs::read_to_string(SESSION).unwrap_or_default();
    let stale: Vec<&str> = [(README, readme != new_readme), (SESSION, session != new_session)]
        .into_iter()
        .filter(|(_, s)| *s)
        .map(|(p, _)| p)
        .collect();
    if check {
        anyhow::ensure!(stale.is_empty(), "out of date (run `make docs`): {}", stale.join(", "));
        return Ok(());
    }
    std::fs::write(README, new_readme).with_context(|| format!("writing {README}"))?;
    std::fs::write(SESSION, new_session).with_context(|| format!("writing {SESSION}"))?;
    println!("wrote {README} and {SESSION}");
    Ok(())
}
