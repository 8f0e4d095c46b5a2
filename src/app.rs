//! The supervisor, on the main thread: starts ONNX Runtime, the model, the JACK node and the OSC
//! server; then handles signals, reloads, RT events, retired models and systemd notifications
//! until told to stop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rtrb::{Consumer, Producer, RingBuffer};
use sd_notify::NotifyState;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::audio::jack::{self as node, JackNode};
use crate::control::{Controls, Status};
use crate::model::{Contract, Runtime};
use crate::osc::{self, OscService, Request};
use crate::rt::{Command, Inference, Meters, Processor, ProcessorRings, RtEvent};
use crate::settings::Settings;

const TICK: Duration = Duration::from_millis(50);
const COMMAND_SLOTS: usize = 4;
const EVENT_SLOTS: usize = 256;

/// Where the settings came from, to read them again on SIGHUP.
pub struct SettingsSource {
    pub file: Option<PathBuf>,
    pub overrides: Vec<String>,
}

struct Supervisor {
    source: SettingsSource,
    settings: Settings,
    runtime: Runtime,
    server_rate: u32,
    period: u32,
    /// Whether a model is (or is about to be) running on the RT thread.
    has_model: bool,
    /// That model's latency, samples.
    model_latency: u32,
    status: Arc<Status>,
    meters: Arc<Meters>,
    commands: Producer<Command>,
    retired: Consumer<Box<Inference>>,
    events: Consumer<RtEvent>,
}

/// Runs the daemon until SIGTERM/SIGINT. A second signal while stopping exits at once.
pub fn run(settings: Settings, source: SettingsSource) -> Result<()> {
    let terminate = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGINT] {
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&terminate))?;
        signal_hook::flag::register(signal, Arc::clone(&terminate))?;
    }
    signal_hook::flag::register(SIGHUP, Arc::clone(&reload))?;

    let runtime = crate::model::start_runtime(settings.onnxruntime()).context("starting ONNX Runtime")?;
    log::info!("ONNX Runtime: {}", runtime.library.display());
    let client = node::open(&settings.jack).context("opening the JACK client")?;
    log::info!("JACK server: {} Hz, {} frames per period", client.sample_rate, client.period);

    let status = Arc::new(Status::default());
    status.sample_rate.store(client.sample_rate, Relaxed);
    status.period.store(client.period, Relaxed);
    let meters = Arc::new(Meters::default());
    let controls = Arc::new(Controls::new(settings.initial_state()));
    let (commands, command_rx) = RingBuffer::new(COMMAND_SLOTS);
    let (retired_tx, retired) = RingBuffer::new(COMMAND_SLOTS);
    let (events_tx, events) = RingBuffer::new(EVENT_SLOTS);

    let mut supervisor = Supervisor {
        source,
        settings: settings.clone(),
        runtime,
        server_rate: client.sample_rate,
        period: client.period,
        has_model: false,
        model_latency: 0,
        status: Arc::clone(&status),
        meters: Arc::clone(&meters),
        commands,
        retired,
        events,
    };
    let model = supervisor.load_model(&settings.model_path()).map(Box::new);
    supervisor.has_model = model.is_some();
    let model_rate = model.is_some().then_some(client.sample_rate);
    let processor = Processor::new(
        model,
        ProcessorRings { commands: command_rx, retired: retired_tx, events: events_tx },
        controls.shared(),
        Arc::clone(&meters),
    );
    let (jack, failed) = client
        .activate(&settings.jack, &settings.midi, processor, model_rate, Arc::clone(&status))
        .context("starting the JACK node")?;
    for f in failed {
        log::warn!("JACK connection failed: {f}");
    }
    supervisor.update_state();

    let (request_tx, requests) = mpsc::channel();
    let osc_stop = Arc::new(AtomicBool::new(false));
    let service =
        OscService::new(&settings, Arc::clone(&controls), Arc::clone(&status), Arc::clone(&meters), request_tx);
    let (osc_thread, osc_addr) = osc::spawn(&settings.osc.bind, service, Arc::clone(&osc_stop))
        .with_context(|| format!("binding OSC to {}", settings.osc.bind))?;
    log::info!("OSC on udp://{osc_addr}{}", settings.osc.root);

    let summary = status.summary(&meters);
    log::info!("ready: {summary}");
    notify(&[NotifyState::Ready, NotifyState::Status(&summary)]);

    let result = supervisor.serve(&jack, &requests, &terminate, &reload);

    notify(&[NotifyState::Stopping]);
    osc_stop.store(true, Relaxed);
    if let Err(e) = jack.close() {
        log::warn!("closing the JACK client: {e}");
    }
    if osc_thread.join().is_err() {
        log::error!("the OSC thread panicked");
    }
    supervisor.drain();
    result
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        log::debug!("sd_notify: {e}");
    }
}

impl Supervisor {
    fn serve(
        &mut self,
        jack: &JackNode,
        requests: &Receiver<Request>,
        terminate: &AtomicBool,
        reload: &AtomicBool,
    ) -> Result<()> {
        let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
        let mut last_watchdog = Instant::now();
        let mut last_summary = String::new();
        while !terminate.load(Relaxed) {
            std::thread::sleep(TICK);
            self.drain();
            if reload.swap(false, Relaxed) {
                self.reload_settings_and_model();
            }
            while let Ok(Request::ReloadModel(name)) = requests.try_recv() {
                self.reload_model(name.as_deref());
            }
            if jack.events.shut_down.load(Relaxed) {
                anyhow::bail!("the JACK server shut down; exiting so the service manager can restart us");
            }
            let period = jack.events.buffer_size.swap(0, Relaxed);
            if period != 0 && period != self.period {
                self.period = period;
                self.status.period.store(period, Relaxed);
                self.update_state();
            }
            self.status.load.store(jack.cpu_load().to_bits(), Relaxed);
            let summary = self.status.summary(&self.meters);
            if summary != last_summary {
                notify(&[NotifyState::Status(&summary)]);
                last_summary = summary;
            }
            if let Some(interval) = watchdog {
                if last_watchdog.elapsed() >= interval {
                    notify(&[NotifyState::Watchdog]);
                    last_watchdog = Instant::now();
                }
            }
        }
        log::info!("stopping");
        Ok(())
    }

    /// Logs RT events and drops models the RT thread has retired.
    fn drain(&mut self) {
        while let Ok(event) = self.events.pop() {
            match event {
                RtEvent::Fault { kind, block } => {
                    log::warn!("model fault at block {block}: {kind:?}; that block played dry")
                }
                RtEvent::ModelUnloaded { after_faults } => {
                    log::error!(
                        "model unloaded after {after_faults} consecutive faults; audio passes through until a reload"
                    );
                    self.status.set_model("none (unloaded after faults)");
                    self.has_model = false;
                    self.update_state();
                }
                RtEvent::ModelSwapped { block } => log::info!("model swapped in at block {block}"),
            }
        }
        while let Ok(old) = self.retired.pop() {
            drop(old);
        }
    }

    /// Loads and validates a model for the server's rate; on failure logs why and returns None.
    fn load_model(&mut self, path: &Path) -> Option<Inference> {
        match self.runtime.load(path, Some(self.server_rate)) {
            Ok((inference, contract)) => {
                self.note_model(path, &contract);
                Some(inference)
            }
            Err(e) => {
                log::error!("{e}");
                self.status.set_model(format!("none ({e})"));
                None
            }
        }
    }

    fn note_model(&mut self, path: &Path, contract: &Contract) {
        let (_, lacks) = contract.features();
        log::info!(
            "model {} {} from {}: {} Hz, latency {} samples{}",
            contract.name,
            contract.version,
            path.display(),
            contract.sample_rate,
            contract.latency_samples,
            if lacks.is_empty() { String::new() } else { format!("; unavailable: {}", lacks.join(", ")) }
        );
        self.status.set_model(format!("{} {} ({})", contract.name, contract.version, file_name(path)));
        self.model_latency = contract.latency_samples as u32;
    }

    fn update_state(&self) {
        let model_rate = self.has_model.then_some(self.server_rate);
        let state = match node::passthrough_reason(self.period, self.server_rate, model_rate) {
            Some(reason) => reason,
            None if !self.has_model => "passthrough: no model loaded".to_owned(),
            None => "running".to_owned(),
        };
        let running = state == "running";
        if !running {
            log::warn!("{state}");
        }
        self.status.latency.store(if running { self.model_latency } else { 0 }, Relaxed);
        self.status.set_state(state);
    }

    fn reload_settings_and_model(&mut self) {
        log::info!("SIGHUP: reloading settings and model");
        notify(&[NotifyState::Reloading]);
        match Settings::load(self.source.file.as_deref(), &self.source.overrides) {
            Ok(settings) => {
                if settings.jack != self.settings.jack || settings.osc != self.settings.osc {
                    log::warn!("[jack] and [osc] changes take effect at the next restart");
                }
                if let Some(level) = crate::settings::log_level(&settings.log.level) {
                    if std::env::var_os("RUST_LOG").is_none() {
                        log::set_max_level(level);
                    }
                }
                self.settings = settings;
            }
            Err(e) => log::error!("{e}; keeping the previous settings"),
        }
        self.reload_model(None);
        notify(&[NotifyState::Ready]);
    }

    /// Builds the model off the RT thread and sends it over; the old one keeps running if
    /// anything fails. `name` must be a file directly inside the models directory.
    fn reload_model(&mut self, name: Option<&str>) {
        let path = match name {
            None => self.settings.model_path(),
            Some(name) => match model_in_dir(&self.settings.model.dir, name) {
                Ok(path) => path,
                Err(e) => {
                    log::error!("model reload refused: {e}");
                    return;
                }
            },
        };
        match self.runtime.load(&path, Some(self.server_rate)) {
            Ok((inference, contract)) => match self.commands.push(Command::Swap(Box::new(inference))) {
                Ok(()) => {
                    self.note_model(&path, &contract);
                    self.has_model = true;
                    self.update_state();
                }
                Err(_) => log::error!("model reload dropped: the RT thread has not taken the previous commands yet"),
            },
            Err(e) => log::error!("model reload failed, the current model keeps running: {e}"),
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// `dir/name` if `name` is a plain file name that resolves (after symlinks) inside `dir`.
pub fn model_in_dir(dir: &Path, name: &str) -> Result<PathBuf, String> {
    if name.is_empty() || Path::new(name).components().count() != 1 || name == ".." || name == "." {
        return Err(format!("{name:?} is not a file name in the models directory"));
    }
    let root = dir.canonicalize().map_err(|e| format!("models directory {}: {e}", dir.display()))?;
    let path = dir.join(name).canonicalize().map_err(|e| format!("{}: {e}", dir.join(name).display()))?;
    if !path.starts_with(&root) {
        return Err(format!("{name:?} leads outside the models directory {}", root.display()));
    }
    Ok(path)
}
