//! The `autotuned` binary: command line, logger and settings, then hands over to `app` (the
//! daemon), `offline` (file processing) or `model` (contract check). Main thread.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use autotuned::app::{self, SettingsSource};
use autotuned::rt::{Mode, Params};
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
    /// Correct a mono WAV file with the same engine, offline.
    Process(ProcessArgs),
    /// Print the contract a model offers, or why autotuned refuses it.
    CheckModel { path: PathBuf },
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
    #[arg(long, default_value_t = 1.0)]
    strength: f32,
    #[arg(long, default_value_t = 0.0)]
    retune_ms: f32,
    /// Model file (default: the configured one).
    #[arg(long)]
    model: Option<PathBuf>,
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
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => app::run(settings, SettingsSource { file: cli.config, overrides: cli.overrides }),
        Command::Process(args) => process(&settings, args),
        Command::CheckModel { path } => check_model(&settings, &path),
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
    let mut params = Params { strength: args.strength, retune_ms: args.retune_ms, ..settings.initial_state().params };
    params.mode = Mode::Auto;
    if let Some(hz) = args.target_hz {
        params = Params { mode: Mode::Manual, target_hz: hz, ..params };
    }
    if let Some(note) = args.note {
        params = Params { mode: Mode::Manual, target_hz: params.tuning_hz * 2f32.powf((note - 69.0) / 12.0), ..params };
    }
    let model = args.model.unwrap_or_else(|| settings.model_path());
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let faults = autotuned::offline::process_file(&runtime, &model, &args.input, &args.output, params, progress)
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
