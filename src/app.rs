//! The supervisor, on the main thread: starts ONNX Runtime, checks the configured model, starts
//! the OSC server and tells systemd it is ready; then connects to JACK (and reconnects when the
//! server comes back), handles signals, reloads, RT events, retired models, latency changes and
//! the systemd watchdog in every state until told to stop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rtrb::{Consumer, Producer, RingBuffer};
use sd_notify::NotifyState;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::audio::jack::{self as node, JackNode, NodeParts};
use crate::control::{Controls, Status, apply, tune};
use crate::model::{Contract, ModelError, Runtime, models_in};
use crate::osc::{self, Answer, OscService, Request};
use crate::parameters::SCALE;
use crate::rt::{Command, Inference, Meters, Processor, ProcessorRings, RtEvent};
use crate::settings::Settings;

const TICK: Duration = Duration::from_millis(50);
const COMMAND_SLOTS: usize = 4;
const EVENT_SLOTS: usize = 256;
/// Reconnection attempts start this far apart and back off to `MAX_RETRY`.
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(1);

/// Where the settings came from, to read them again on SIGHUP.
pub struct SettingsSource {
    pub file: Option<PathBuf>,
    pub overrides: Vec<String>,
}

/// The supervisor's ends of the rings to the current processor.
struct Rings {
    commands: Producer<Command>,
    retired: Consumer<Box<Inference>>,
    events: Consumer<RtEvent>,
}

/// Why `serve` returned.
enum Ended {
    Stop,
    ServerGone,
}

struct Supervisor<'a> {
    source: SettingsSource,
    settings: Settings,
    runtime: Runtime,
    controls: Arc<Controls>,
    status: Arc<Status>,
    meters: Arc<Meters>,
    requests: Receiver<Request>,
    answers: Sender<Answer>,
    watchdog: Watchdog,
    terminate: &'a AtomicBool,
    reload: &'a AtomicBool,
    rings: Option<Rings>,
    server_rate: u32,
    period: u32,
    /// Whether a model is (or is about to be) running on the RT thread.
    has_model: bool,
    /// That model's latency, samples.
    model_latency: u32,
    /// `[jack] link` as read at start (0-based voices), like the ports it refers to.
    links: Vec<Vec<usize>>,
}

/// Pings systemd's watchdog every `WATCHDOG_USEC / 2`, whatever the supervisor is doing.
struct Watchdog {
    interval: Option<Duration>,
    last: Instant,
}

impl Watchdog {
    fn from_environment() -> Watchdog {
        Watchdog { interval: sd_notify::watchdog_enabled().map(|d| d / 2), last: Instant::now() }
    }

    fn pet(&mut self) {
        if let Some(interval) = self.interval {
            if self.last.elapsed() >= interval {
                notify(&[NotifyState::Watchdog]);
                self.last = Instant::now();
            }
        }
    }
}

/// Keeps every page the process touches resident, so the JACK thread never waits on a page
/// fault for code or data it uses rarely (proactive reclaim such as DAMON pages those out after a
/// minute). `MCL_ONFAULT` locks pages as they are first touched instead of faulting in every
/// mapping, so thread stacks and unused library code stay out of memory. Locking future mappings
/// under a finite `RLIMIT_MEMLOCK` would make later allocations fail once the limit is reached, so
/// without an unlimited limit (the systemd units set one) or root the daemon only says so.
fn lock_memory() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit through a valid pointer; geteuid cannot fail.
    let allowed = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) == 0 }
        && (limit.rlim_cur == libc::RLIM_INFINITY || unsafe { libc::geteuid() } == 0);
    if !allowed {
        log::warn!(
            "memory not locked (RLIMIT_MEMLOCK is {} KiB): the JACK thread may stall on page faults; \
             use the systemd unit (LimitMEMLOCK=infinity) or `ulimit -l unlimited`",
            limit.rlim_cur / 1024
        );
        return;
    }
    // SAFETY: mlockall takes flags only and has no memory-safety preconditions.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) } != 0 {
        log::warn!("memory not locked: {}", std::io::Error::last_os_error());
    }
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
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        log::warn!(
            "running as root: not needed for real-time audio (use the user unit or the audio group's rtprio limits)"
        );
    }

    lock_memory();

    let runtime = crate::model::start_runtime(settings.onnxruntime()).context("starting ONNX Runtime")?;
    log::info!("ONNX Runtime: {}", runtime.library.display());
    // The configured model must exist and meet the contract; which rate it serves is only
    // known once a server answers (another model in the directory may serve that rate).
    let configured = settings.model_path();
    let voices = settings.jack.voices;
    let links = settings.link_groups().map_err(anyhow::Error::msg)?;
    let (_, contract) =
        runtime.load_voices(&configured, None, voices).context("the configured model (model.dir / model.file)")?;
    if !links.is_empty() && contract.slots.voice_mix.is_none() {
        anyhow::bail!("{}: [jack] link needs a model with a voice_mix input", configured.display());
    }
    log::info!("model {}: {} {}, {} Hz", configured.display(), contract.name, contract.version, contract.sample_rate);
    let status = Arc::new(Status::default());
    let meters = Arc::new(Meters::new(voices));
    if !settings.scala.file.is_empty() {
        let t = &settings.params.tuning;
        log::info!("Scala tuning {}: {} notes in a period of {} semitones", settings.scala.file, t.len, t.period);
    }
    let controls = Arc::new(Controls::new(settings.voice_params()));

    let (request_tx, requests) = mpsc::channel();
    let (answers, answer_rx) = mpsc::channel();
    let osc_stop = Arc::new(AtomicBool::new(false));
    let service = OscService::new(
        &settings,
        Arc::clone(&controls),
        Arc::clone(&status),
        Arc::clone(&meters),
        request_tx,
        answer_rx,
    );
    let (osc_thread, osc_addr) = osc::spawn(&settings.osc.bind, service, Arc::clone(&osc_stop))
        .with_context(|| format!("binding OSC to {}", settings.osc.bind))?;
    log::info!("OSC on udp://{osc_addr}{}", settings.osc.root);
    status.set_state("waiting_for_server");
    notify(&[NotifyState::Ready, NotifyState::Status("waiting for the JACK server")]);

    let mut supervisor = Supervisor {
        source,
        settings,
        runtime,
        controls,
        status,
        meters,
        requests,
        answers,
        watchdog: Watchdog::from_environment(),
        terminate: &terminate,
        reload: &reload,
        rings: None,
        server_rate: 0,
        period: 0,
        has_model: false,
        model_latency: 0,
        links,
    };
    supervisor.run();

    notify(&[NotifyState::Stopping]);
    osc_stop.store(true, Relaxed);
    if osc_thread.join().is_err() {
        log::error!("the OSC thread panicked");
    }
    Ok(())
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        log::debug!("sd_notify: {e}");
    }
}

impl Supervisor<'_> {
    /// Connects, serves, and reconnects with backoff whenever the server goes away.
    fn run(&mut self) {
        let mut retry = FIRST_RETRY;
        let mut last_error = String::new();
        while !self.terminate.load(Relaxed) {
            match self.connect() {
                Ok(jack) => {
                    retry = FIRST_RETRY;
                    last_error.clear();
                    let ended = self.serve(&jack);
                    if let Err(e) = jack.close() {
                        log::debug!("closing the JACK client: {e}");
                    }
                    self.drain();
                    self.rings = None;
                    if matches!(ended, Ended::Stop) {
                        break;
                    }
                    log::error!("the JACK server went away; waiting for it to come back");
                }
                Err(e) => {
                    let error = format!("{e:#}");
                    if error != last_error {
                        log::warn!("{error}; retrying");
                        last_error = error;
                    }
                    self.status.set_state(format!("waiting_for_server: {last_error}"));
                    self.wait(retry);
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
            self.status.set_state("waiting_for_server");
            notify(&[NotifyState::Status("waiting for the JACK server")]);
        }
        log::info!("stopping");
    }

    /// Sleeps in ticks, still answering reload requests and signals.
    fn wait(&mut self, how_long: Duration) {
        let until = Instant::now() + how_long;
        while Instant::now() < until && !self.terminate.load(Relaxed) {
            std::thread::sleep(TICK);
            self.watchdog.pet();
            while let Ok(Request::ReloadModel { from, .. }) = self.requests.try_recv() {
                log::warn!("model reload refused: no JACK server to run it on");
                self.answer(from, Err("no JACK server is running; the model loads when one answers".into()));
            }
            if self.reload.swap(false, Relaxed) {
                self.reload_settings();
            }
        }
    }

    /// Opens the client, loads the model for the server's rate, activates, connects.
    fn connect(&mut self) -> Result<JackNode> {
        let client = node::open(&self.settings.jack).context("opening the JACK client")?;
        self.server_rate = client.sample_rate;
        self.period = client.period;
        self.status.sample_rate.store(client.sample_rate, Relaxed);
        self.status.period.store(client.period, Relaxed);
        log::info!("JACK server: {} Hz, {} frames per period", client.sample_rate, client.period);

        let model = match self.load_for_rate(None) {
            Ok((inference, fell_back)) => {
                if let Some(reason) = fell_back {
                    log::warn!("{reason}");
                }
                Some(Box::new(inference))
            }
            Err(reason) => {
                log::error!("{reason}");
                self.status.set_model(format!("none ({reason})"));
                None
            }
        };
        self.has_model = model.is_some();
        let model_rate = model.is_some().then_some(client.sample_rate);
        let (commands, command_rx) = RingBuffer::new(COMMAND_SLOTS);
        let (retired_tx, retired) = RingBuffer::new(COMMAND_SLOTS);
        let (events_tx, events) = RingBuffer::new(EVENT_SLOTS);
        let processor = Processor::new(
            model,
            ProcessorRings { commands: command_rx, retired: retired_tx, events: events_tx },
            self.controls.shared(),
            Arc::clone(&self.meters),
        );
        self.rings = Some(Rings { commands, retired, events });
        let parts = NodeParts {
            processor,
            model_rate,
            midi_channels: self.settings.midi_channels,
            status: Arc::clone(&self.status),
            meters: Arc::clone(&self.meters),
        };
        let (jack, failed) = client.activate(&self.settings.jack, parts).context("starting the JACK node")?;
        for f in failed {
            log::warn!("JACK connection failed: {f}");
        }
        self.update_state();
        let summary = self.status.summary(&self.meters);
        log::info!("serving: {summary}");
        notify(&[NotifyState::Status(&summary)]);
        Ok(jack)
    }

    fn serve(&mut self, jack: &JackNode) -> Ended {
        let mut last_summary = String::new();
        let mut reported_latency = self.meters.latency();
        while !self.terminate.load(Relaxed) {
            std::thread::sleep(TICK);
            self.watchdog.pet();
            self.drain();
            if self.reload.swap(false, Relaxed) {
                self.reload_settings();
                if let Err(reason) = self.reload_model(None) {
                    log::error!("{reason}");
                }
            }
            while let Ok(Request::ReloadModel { name, from }) = self.requests.try_recv() {
                let outcome = self.reload_model(name.as_deref());
                if let Err(reason) = &outcome {
                    log::error!("{reason}");
                }
                self.answer(from, outcome);
            }
            if jack.events.shut_down.load(Relaxed) {
                return Ended::ServerGone;
            }
            if jack.events.ports_changed.swap(false, Relaxed) {
                for f in jack.connect(&self.settings.jack) {
                    log::debug!("JACK connection not made yet: {f}");
                }
            }
            let period = jack.events.period.load(Relaxed);
            if period != 0 && period != self.period {
                self.period = period;
                self.status.period.store(period, Relaxed);
                self.update_state();
            }
            let latency = self.meters.latency();
            if latency != reported_latency {
                reported_latency = latency;
                self.update_state();
                jack.recompute_latencies();
            }
            self.status.load.store(jack.cpu_load().to_bits(), Relaxed);
            let summary = self.status.summary(&self.meters);
            if summary != last_summary {
                notify(&[NotifyState::Status(&summary)]);
                last_summary = summary;
            }
        }
        Ended::Stop
    }

    /// Logs RT events and drops models the RT thread has retired.
    fn drain(&mut self) {
        let Some(rings) = self.rings.as_mut() else { return };
        let mut unloaded = false;
        while let Ok(event) = rings.events.pop() {
            match event {
                RtEvent::Fault { kind, block } => {
                    log::warn!("model fault at block {block}: {kind:?}; that block played dry")
                }
                RtEvent::ModelUnloaded { after_faults } => {
                    log::error!(
                        "model unloaded after {after_faults} consecutive faults; audio passes through until a reload"
                    );
                    unloaded = true;
                }
                RtEvent::ModelSwapped { block } => log::info!("model swapped in at block {block}"),
            }
        }
        while let Ok(old) = rings.retired.pop() {
            drop(old);
        }
        if unloaded {
            self.status.set_model("none (unloaded after faults)");
            self.has_model = false;
            self.model_latency = 0;
            self.set_state();
        }
    }

    fn answer(&self, to: std::net::SocketAddr, outcome: Result<String, String>) {
        // The OSC thread is gone only while stopping, when nobody waits for the answer.
        let _ = self.answers.send(Answer { to, path: "/model/reload", outcome });
    }

    /// The configured model if it fits the server's rate, else the first model in the models
    /// directory made for that rate (with the reason it fell back); `name` loads exactly that
    /// file from the models directory, or fails with the reason.
    fn load_for_rate(&mut self, name: Option<&str>) -> Result<(Inference, Option<String>), String> {
        self.watchdog.pet();
        let path = match name {
            None => self.settings.model_path(),
            Some(name) => model_in_dir(&self.settings.model.dir, name).map_err(|e| format!("model refused: {e}"))?,
        };
        let voices = self.controls.voices();
        let links = !self.links.is_empty();
        let first = match self.runtime.load_voices(&path, Some(self.server_rate), voices) {
            Ok((_, contract)) if links && contract.slots.voice_mix.is_none() => {
                return Err(format!(
                    "model refused: {}: [jack] link needs a model with a voice_mix input",
                    path.display()
                ));
            }
            Ok(loaded) => return Ok((self.take(&path, loaded), None)),
            Err(e) => e,
        };
        if name.is_none() && matches!(first, ModelError::Metadata { key: "sample_rate", .. }) {
            for other in models_in(&self.settings.model.dir) {
                self.watchdog.pet();
                if other == path {
                    continue;
                }
                let loaded = self.runtime.load_voices(&other, Some(self.server_rate), voices).ok();
                if let Some(loaded) = loaded.filter(|(_, contract)| !links || contract.slots.voice_mix.is_some()) {
                    let reason = format!("{first}; using {} instead", other.display());
                    return Ok((self.take(&other, loaded), Some(reason)));
                }
            }
        }
        Err(first.to_string())
    }

    fn take(&mut self, path: &Path, (mut inference, contract): (Inference, Contract)) -> Inference {
        inference.link(&self.links);
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
        inference
    }

    fn update_state(&self) {
        self.set_state();
        if self.has_model {
            self.status.latency.store(self.meters.latency(), Relaxed);
        }
    }

    fn set_state(&self) {
        let model_rate = self.has_model.then_some(self.server_rate);
        let state = match node::passthrough_reason(self.period, self.server_rate, model_rate) {
            Some(reason) => reason,
            None if !self.has_model => format!("passthrough: no usable model for {} Hz", self.server_rate),
            None => "running".to_owned(),
        };
        let running = state == "running";
        if !running {
            log::warn!("{state}");
            self.status.latency.store(0, Relaxed);
        }
        self.status.set_state(state);
    }

    fn reload_settings(&mut self) {
        log::info!("SIGHUP: reloading settings and model");
        notify(&[NotifyState::Reloading]);
        self.watchdog.pet();
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
                if settings.scala != self.settings.scala {
                    self.retune(&settings);
                }
                self.settings = settings;
            }
            Err(e) => log::error!("{e}; keeping the previous settings"),
        }
        notify(&[NotifyState::Ready]);
    }

    /// Tunes every voice to the reloaded `[tuning] scala`, or back to its 12-tone notes when the
    /// setting is gone.
    fn retune(&self, settings: &Settings) {
        let scala = (!settings.scala.file.is_empty()).then_some(settings.params.tuning);
        self.controls.update(|voices| {
            for p in voices {
                match scala {
                    Some(tuning) => tune(p, tuning),
                    None => {
                        p.tuning = Default::default();
                        apply(p, SCALE, settings.params.get(SCALE));
                    }
                }
            }
        });
        log::info!("Scala tuning: {}", if scala.is_some() { &settings.scala.file } else { "none" });
    }

    /// Builds the model off the RT thread and sends it over; the old one keeps running if
    /// anything fails. Returns what now runs, or why the request failed (also when another
    /// model was loaded in its place).
    fn reload_model(&mut self, name: Option<&str>) -> Result<String, String> {
        notify(&[NotifyState::Reloading]);
        let (previous_model, previous_latency) = (self.status.text().model, self.model_latency);
        let restore = |s: &mut Self| {
            s.status.set_model(previous_model.clone());
            s.model_latency = previous_latency;
        };
        let outcome = match self.load_for_rate(name) {
            Err(reason) => {
                restore(self);
                Err(format!("{reason}; the current model keeps running"))
            }
            Ok((inference, fell_back)) => {
                match self.rings.as_mut().map(|r| r.commands.push(Command::Swap(Box::new(inference)))) {
                    Some(Ok(())) => {
                        self.has_model = true;
                        self.update_state();
                        fell_back.map_or_else(|| Ok(self.status.text().model), Err)
                    }
                    _ => {
                        restore(self);
                        Err("model reload dropped: the RT thread has not taken the previous commands yet".into())
                    }
                }
            }
        };
        notify(&[NotifyState::Ready]);
        outcome
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// `dir/name` if `name` is a plain file name that resolves (after symlinks) inside `dir`.
pub fn model_in_dir(dir: &Path, name: &str) -> Result<PathBuf, String> {
    file_in_dir(dir, name, "models directory")
}

/// `dir/name` if `name` is a plain file name that resolves (after symlinks) inside `dir`, which
/// errors call `what`.
pub fn file_in_dir(dir: &Path, name: &str, what: &str) -> Result<PathBuf, String> {
    if name.is_empty() || Path::new(name).components().count() != 1 || name == ".." || name == "." {
        return Err(format!("{name:?} is not a file name in the {what}"));
    }
    let root = dir.canonicalize().map_err(|e| format!("{what} {}: {e}", dir.display()))?;
    let path = dir.join(name).canonicalize().map_err(|e| format!("{}: {e}", dir.join(name).display()))?;
    if !path.starts_with(&root) {
        return Err(format!("{name:?} leads outside the {what} {}", root.display()));
    }
    Ok(path)
}
