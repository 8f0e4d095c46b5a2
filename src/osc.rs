//! The OSC control surface, on its own thread: a UDP server for the `/autotune` address space
//! (root configurable), with queries, replies, error reports and a guard against packets that
//! would make the decoder recurse too deep.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rosc::{OscMessage, OscPacket, OscType};

use crate::control::{Controls, Status};
use crate::rt::{Meters, Mode, Params};
use crate::settings::{OscSettings, RETUNE_MS, STRENGTH, TARGET_HZ, TUNING_HZ};

/// Deepest bundle nesting accepted; rosc recurses once per level with no limit of its own.
pub const MAX_BUNDLE_DEPTH: usize = 8;
/// Deepest `[` array nesting accepted in a type tag (dropping nested arrays recurses too).
pub const MAX_ARRAY_DEPTH: usize = 8;
/// Largest datagram read; a longer one is truncated by the socket and rejected as malformed.
const MAX_DATAGRAM: usize = 65_536;

/// `/autotune/error` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    UnknownAddress = 1,
    BadArguments = 2,
    OutOfRange = 3,
    Malformed = 4,
    TooDeep = 5,
}

/// What the OSC thread asks of the supervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Load this file from the models directory (or the configured one) and swap it in.
    ReloadModel(Option<String>),
}

/// Why a packet was not decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketFault {
    pub code: ErrorCode,
    pub message: String,
}

fn fault(code: ErrorCode, message: impl Into<String>) -> PacketFault {
    PacketFault { code, message: message.into() }
}

/// Walks a datagram's bundle structure and type tags without decoding it, refusing nesting
/// beyond the limits, so the recursive decoder only ever sees bounded input.
pub fn check_nesting(bytes: &[u8]) -> Result<(), PacketFault> {
    check_packet(bytes, 1)
}

fn check_packet(bytes: &[u8], depth: usize) -> Result<(), PacketFault> {
    if bytes.starts_with(b"#bundle\0") {
        if depth > MAX_BUNDLE_DEPTH {
            return Err(fault(ErrorCode::TooDeep, format!("bundles nested deeper than {MAX_BUNDLE_DEPTH}")));
        }
        let mut rest = bytes.get(16..).ok_or_else(|| fault(ErrorCode::Malformed, "bundle shorter than its header"))?;
        while !rest.is_empty() {
            let size = rest.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
            let element = size
                .and_then(|size| rest.get(4..4 + size))
                .ok_or_else(|| fault(ErrorCode::Malformed, "bundle element longer than the bundle"))?;
            check_packet(element, depth + 1)?;
            rest = &rest[4 + element.len()..];
        }
        return Ok(());
    }
    // A message: address, then the type tag string; only `[` nesting matters here.
    let address_end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let tags_start = (address_end + 4) & !3;
    let tags = bytes.get(tags_start..).unwrap_or_default();
    let tags = &tags[..tags.iter().position(|b| *b == 0).unwrap_or(tags.len())];
    let mut open = 0usize;
    for tag in tags {
        match tag {
            b'[' => {
                open += 1;
                if open > MAX_ARRAY_DEPTH {
                    return Err(fault(ErrorCode::TooDeep, format!("arrays nested deeper than {MAX_ARRAY_DEPTH}")));
                }
            }
            b']' => open = open.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// A token bucket for error replies.
struct RateLimit {
    per_second: f64,
    tokens: f64,
    last: Instant,
    suppressed: u64,
}

impl RateLimit {
    fn new(per_second: u32) -> RateLimit {
        RateLimit {
            per_second: f64::from(per_second),
            tokens: f64::from(per_second),
            last: Instant::now(),
            suppressed: 0,
        }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.per_second).min(self.per_second);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

/// The address space and its state; `handle` turns one datagram into replies.
pub struct OscService {
    root: String,
    reply_port: u16,
    controls: Arc<Controls>,
    status: Arc<Status>,
    meters: Arc<Meters>,
    requests: Sender<Request>,
    errors: RateLimit,
}

/// A value read from lenient OSC arguments.
fn number(arg: &OscType) -> Option<f64> {
    match arg {
        OscType::Float(v) => Some(f64::from(*v)),
        OscType::Double(v) => Some(*v),
        OscType::Int(v) => Some(f64::from(*v)),
        OscType::Long(v) => Some(*v as f64),
        OscType::Bool(v) => Some(if *v { 1.0 } else { 0.0 }),
        OscType::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// One message's effect: a reply, a parameter change, or an error.
enum Outcome {
    Reply(OscMessage),
    Changed,
    Error(ErrorCode, String),
}

impl OscService {
    pub fn new(
        settings: &OscSettings,
        controls: Arc<Controls>,
        status: Arc<Status>,
        meters: Arc<Meters>,
        requests: Sender<Request>,
    ) -> OscService {
        OscService {
            root: settings.root.clone(),
            reply_port: settings.reply_port,
            controls,
            status,
            meters,
            requests,
            errors: RateLimit::new(settings.errors_per_second),
        }
    }

    /// Error replies withheld by the rate limit so far.
    pub fn suppressed_errors(&self) -> u64 {
        self.errors.suppressed
    }

    /// Decodes and applies one datagram; returns the packets to send back to `from`. A bundle's
    /// changes are published together.
    pub fn handle(&mut self, bytes: &[u8], from: SocketAddr) -> Vec<(SocketAddr, OscPacket)> {
        let to = if self.reply_port == 0 { from } else { SocketAddr::new(from.ip(), self.reply_port) };
        let mut out = Vec::new();
        let packet = match check_nesting(bytes).and_then(|()| {
            rosc::decoder::decode_udp(bytes)
                .map(|(_, p)| p)
                .map_err(|e| fault(ErrorCode::Malformed, format!("cannot decode: {e}")))
        }) {
            Ok(p) => p,
            Err(f) => {
                self.error(&mut out, to, "", f.code, &f.message);
                return out;
            }
        };
        let mut messages = Vec::new();
        flatten(packet, &mut messages);
        let outcomes: Vec<(String, Outcome)> = self
            .controls
            .update(|params| messages.into_iter().map(|m| (m.addr.clone(), self.apply(params, m))).collect());
        for (addr, outcome) in outcomes {
            match outcome {
                Outcome::Reply(m) => out.push((to, OscPacket::Message(m))),
                Outcome::Changed => {}
                Outcome::Error(code, msg) => self.error(&mut out, to, &addr, code, &msg),
            }
        }
        out
    }

    fn error(
        &mut self,
        out: &mut Vec<(SocketAddr, OscPacket)>,
        to: SocketAddr,
        path: &str,
        code: ErrorCode,
        msg: &str,
    ) {
        log::debug!("OSC from {to}: {path}: {msg}");
        if self.errors.allow() {
            let args =
                vec![OscType::String(path.to_owned()), OscType::Int(code as i32), OscType::String(msg.to_owned())];
            out.push((to, OscPacket::Message(OscMessage { addr: format!("{}/error", self.root), args })));
        }
    }

    fn reply(&self, addr: &str, args: Vec<OscType>) -> Outcome {
        Outcome::Reply(OscMessage { addr: addr.to_owned(), args })
    }

    /// Applies one message to `p` (the working copy published after the whole packet).
    fn apply(&self, p: &mut Params, m: OscMessage) -> Outcome {
        let Some(path) = m.addr.strip_prefix(&self.root).filter(|rest| rest.starts_with('/')) else {
            return Outcome::Error(ErrorCode::UnknownAddress, format!("unknown address (the root is {})", self.root));
        };
        let query = m.args.is_empty();
        let float = |v: f32| vec![OscType::Float(v)];
        match path {
            "/strength" => self.set_number(p, &m, STRENGTH, |p| p.strength, |p, v| p.strength = v),
            "/retune/ms" => self.set_number(p, &m, RETUNE_MS, |p| p.retune_ms, |p, v| p.retune_ms = v),
            "/tuning" => self.set_number(p, &m, TUNING_HZ, |p| p.tuning_hz, |p, v| p.tuning_hz = v),
            "/target/hz" => self.set_number(
                p,
                &m,
                TARGET_HZ,
                |p| p.target_hz,
                |p, v| {
                    p.target_hz = v;
                    p.mode = Mode::Manual;
                },
            ),
            "/target/note" if query => self.reply(&m.addr, float(note_of(p.target_hz, p.tuning_hz))),
            "/target/note" => match single_number(&m) {
                Err(e) => e,
                Ok(note) => {
                    let hz = p.tuning_hz * 2f32.powf((note as f32 - 69.0) / 12.0);
                    if (TARGET_HZ.0..=TARGET_HZ.1).contains(&hz) {
                        p.target_hz = hz;
                        p.mode = Mode::Manual;
                        Outcome::Changed
                    } else {
                        Outcome::Error(
                            ErrorCode::OutOfRange,
                            format!("note {note} is {hz:.1} Hz, outside {}..{} Hz", TARGET_HZ.0, TARGET_HZ.1),
                        )
                    }
                }
            },
            "/mode" if query => self.reply(&m.addr, vec![OscType::String(p.mode.name().into())]),
            "/mode" => {
                let mode = match m.args.as_slice() {
                    [OscType::String(s)] => Mode::parse(s),
                    [arg] => number(arg).and_then(|v| match v as i64 {
                        0 => Some(Mode::Auto),
                        1 => Some(Mode::Manual),
                        _ => None,
                    }),
                    _ => None,
                };
                match mode {
                    Some(mode) => {
                        p.mode = mode;
                        Outcome::Changed
                    }
                    None => Outcome::Error(ErrorCode::BadArguments, "expects one of: auto, manual (or 0, 1)".into()),
                }
            }
            "/bypass" if query => self.reply(&m.addr, float(if p.bypass { 1.0 } else { 0.0 })),
            "/bypass" => match single_number(&m) {
                Ok(v) => {
                    p.bypass = v >= 0.5;
                    Outcome::Changed
                }
                Err(e) => e,
            },
            "/ping" => self.reply(&format!("{}/pong", self.root), m.args),
            "/status" => self.reply(&format!("{}/status.reply", self.root), self.status_args()),
            "/model/reload" => {
                let name = match m.args.as_slice() {
                    [] => None,
                    [OscType::String(s)] => Some(s.clone()),
                    _ => {
                        return Outcome::Error(
                            ErrorCode::BadArguments,
                            "expects no argument or a model file name".into(),
                        )
                    }
                };
                match self.requests.send(Request::ReloadModel(name)) {
                    Ok(()) => Outcome::Changed,
                    Err(_) => Outcome::Error(ErrorCode::BadArguments, "the supervisor is shutting down".into()),
                }
            }
            _ => Outcome::Error(ErrorCode::UnknownAddress, "unknown address".into()),
        }
    }

    fn set_number(
        &self,
        p: &mut Params,
        m: &OscMessage,
        (lo, hi): (f32, f32),
        get: impl Fn(&Params) -> f32,
        set: impl Fn(&mut Params, f32),
    ) -> Outcome {
        if m.args.is_empty() {
            return self.reply(&m.addr, vec![OscType::Float(get(p))]);
        }
        match single_number(m) {
            Err(e) => e,
            Ok(v) if (f64::from(lo)..=f64::from(hi)).contains(&v) => {
                set(p, v as f32);
                Outcome::Changed
            }
            Ok(v) => Outcome::Error(ErrorCode::OutOfRange, format!("{v} is outside {lo}..={hi}")),
        }
    }

    fn status_args(&self) -> Vec<OscType> {
        let s = &self.status;
        let text = s.text();
        vec![
            OscType::String(env!("CARGO_PKG_VERSION").into()),
            OscType::Int(s.sample_rate.load(Relaxed) as i32),
            OscType::Int(s.period.load(Relaxed) as i32),
            OscType::Int(s.xruns.load(Relaxed) as i32),
            OscType::Float(s.load_percent()),
            OscType::Int(s.latency.load(Relaxed) as i32),
            OscType::String(text.model),
            OscType::String(text.state),
            OscType::Int(self.meters.faults() as i32),
        ]
    }
}

fn single_number(m: &OscMessage) -> Result<f64, Outcome> {
    match m.args.as_slice() {
        [arg] => number(arg)
            .filter(|v| v.is_finite())
            .ok_or_else(|| Outcome::Error(ErrorCode::BadArguments, format!("expects a finite number, got {arg:?}"))),
        args => {
            Err(Outcome::Error(ErrorCode::BadArguments, format!("expects one number, got {} arguments", args.len())))
        }
    }
}

fn note_of(hz: f32, tuning: f32) -> f32 {
    69.0 + 12.0 * (hz / tuning).log2()
}

fn flatten(packet: OscPacket, out: &mut Vec<OscMessage>) {
    match packet {
        OscPacket::Message(m) => out.push(m),
        OscPacket::Bundle(b) => b.content.into_iter().for_each(|p| flatten(p, out)),
    }
}

/// Binds the socket and serves until `stop` is raised. Returns the bound address (port 0 in the
/// settings picks a free one).
pub fn spawn(bind: &str, mut service: OscService, stop: Arc<AtomicBool>) -> io::Result<(JoinHandle<()>, SocketAddr)> {
    let socket = UdpSocket::bind(bind)?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let local = socket.local_addr()?;
    let handle = std::thread::Builder::new().name("osc".into()).spawn(move || {
        let mut buffer = vec![0u8; MAX_DATAGRAM];
        while !stop.load(Relaxed) {
            let (len, from) = match socket.recv_from(&mut buffer) {
                Ok(r) => r,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
                Err(e) => {
                    log::warn!("OSC receive failed: {e}");
                    continue;
                }
            };
            for (to, packet) in service.handle(&buffer[..len], from) {
                match rosc::encoder::encode(&packet) {
                    Ok(bytes) => {
                        if let Err(e) = socket.send_to(&bytes, to) {
                            log::debug!("OSC reply to {to} failed: {e}");
                        }
                    }
                    Err(e) => log::warn!("OSC reply could not be encoded: {e}"),
                }
            }
        }
    })?;
    Ok((handle, local))
}
