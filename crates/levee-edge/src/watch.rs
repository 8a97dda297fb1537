//! The edge's side of automatic attack detection and mitigation
//! (`[auto_mitigation]`): each request is counted and one in every
//! `stride` (set each second for about [`SAMPLES_PER_SECOND`]) sampled
//! into a bounded channel that one detector thread drains and ticks once
//! a second. The thread publishes
//! its report (`GET /admin/shield/auto`) and, in enforce mode, the rules in
//! force as a firewall the pipeline evaluates after the operator's.
//!
//! Owns the channel ([`SAMPLE_BUFFER`] samples, about 1 MiB), the counts,
//! the published report, the automatic rules and the saved baseline
//! (`data_dir/auto-baseline.json`, every [`SAVE_EVERY_TICKS`] seconds). Must never make a
//! request wait: a full buffer drops the sample (counted), never the
//! request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use levee_config::{AutoAction, AutoMitigation, AutoMode};
use levee_meter::metrics::Decision;
use levee_meter::{AlertSink, Budgets, BurnGauge};
use levee_shield::auto::{
    self, Agent, Detector, KeyUse, Method, Outcome, Sample, SavedBaseline, Settings,
};
use levee_shield::firewall::{Firewall, PathShape, Shape};
use serde_json::{json, Value};

use crate::RequestInfo;

/// Samples a second aimed at: above this rate one request in every
/// `ceil(last second's rate / SAMPLES_PER_SECOND)` is sampled, spread
/// over the whole second (a flood timed to the end of each second is
/// sampled like the rest), and the detector scales the composition up to
/// the count. Enough for a share's estimate to within about 1.4 points.
pub const SAMPLES_PER_SECOND: u64 = 5_000;
/// Samples waiting for the detector thread: sixteen times what arrives
/// between two drains at the sampling rate (a flood's first second, before
/// the stride follows it, may fill it: those samples are dropped and
/// counted), and small enough (a sample is about 260 bytes) to stay in
/// cache.
pub const SAMPLE_BUFFER: usize = 4_096;

/// Counts and samples requests for the detector thread.
#[derive(Debug)]
pub struct Watch {
    samples: SyncSender<Sample>,
    /// Requests this second, sampled or not.
    seen: Arc<AtomicU64>,
    /// One request in this many is sampled (at least 1).
    stride: Arc<AtomicU64>,
    /// Samples the full buffer refused, since start.
    dropped: Arc<AtomicU64>,
    report: Arc<Mutex<Value>>,
    /// The rules in force, evaluated after the operator's firewall.
    rules: Arc<ArcSwapOption<Firewall>>,
    /// Routes and client networks the rules never refuse.
    exempt_routes: Vec<String>,
    exempt_sources: Vec<ipnet::IpNet>,
}

impl Watch {
    /// Starts the detector thread, with the baseline saved in `data_dir`
    /// if it is recent; `None` when `[auto_mitigation]` is off.
    /// `alerts` delivers `config.webhook`'s POSTs; `budgets`, when metering
    /// is on, are read once a second for a fast burn.
    pub fn start(
        config: &AutoMitigation,
        data_dir: &Path,
        alerts: AlertSink,
        budgets: Option<Arc<Budgets>>,
    ) -> std::io::Result<Option<Arc<Watch>>> {
        if config.mode == AutoMode::Off {
            return Ok(None);
        }
        let settings = Settings {
            enforce: config.mode == AutoMode::Enforce,
            action: match config.action {
                AutoAction::Throttle => auto::Action::Throttle,
                AutoAction::Block => auto::Action::Block,
            },
            factor: config.sensitivity.factor(),
            learn_ticks: u32::try_from(config.learn_for.as_secs()).unwrap_or(u32::MAX),
            quiet_ticks: u32::try_from(config.quiet_for.as_secs()).unwrap_or(u32::MAX),
            ..Settings::default()
        };
        let (tx, rx) = sync_channel(SAMPLE_BUFFER);
        let seen = Arc::new(AtomicU64::new(0));
        let stride = Arc::new(AtomicU64::new(1));
        let report = Arc::new(Mutex::new(Value::Null));
        let dropped = Arc::new(AtomicU64::new(0));
        let counts = Counts {
            seen: Arc::clone(&seen),
            stride: Arc::clone(&stride),
            dropped: Arc::clone(&dropped),
        };
        let rules = Arc::new(ArcSwapOption::empty());
        let published = Published {
            report: Arc::clone(&report),
            rules: Arc::clone(&rules),
            mode: mode_name(config.mode),
            in_force: Vec::new(),
            hook: config.webhook.clone().map(|url| (url, alerts)),
            told: HashMap::new(),
            last_event: 0,
        };
        let mut detector = Detector::new(settings);
        let saved = data_dir.join(BASELINE_FILE);
        if let Some(baseline) = load_baseline(&saved) {
            detector.restore(&baseline);
        }
        *levee_common::sync::lock(&report) = report_of(&detector, mode_name(config.mode), 0);
        std::thread::Builder::new()
            .name("levee-detector".into())
            .spawn(move || run(detector, rx, counts, published, saved, budgets))?;
        Ok(Some(Arc::new(Watch {
            samples: tx,
            seen,
            stride,
            dropped,
            report,
            rules,
            exempt_routes: config.exempt_routes.clone(),
            exempt_sources: config.exempt_sources.clone(),
        })))
    }

    /// Counts one request; whether it is one of this second's samples
    /// (the hot path: one atomic add and one load).
    pub fn count(&self) -> bool {
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        n.is_multiple_of(self.stride.load(Ordering::Relaxed).max(1))
    }

    /// Hands a sampled request, with what the edge decided and answered,
    /// to the detector thread, or drops it when the buffer is full. Never
    /// blocks, and never wakes the thread: it drains the buffer on its own
    /// schedule.
    pub fn sample(
        &self,
        asked: Asked,
        cx: &RequestInfo,
        status: http::StatusCode,
        outcome: Outcome,
    ) {
        let key = match (&cx.key_id, cx.decision) {
            (Some(_), _) => KeyUse::Valid,
            (None, Decision::Forbidden) => KeyUse::Refused,
            (None, _) => KeyUse::None,
        };
        let sample = Sample {
            client: cx.client_ip,
            agent: asked.agent,
            shape: asked.shape,
            path: asked.path,
            method: asked.method,
            status: status.as_u16(),
            key,
            outcome,
        };
        if self.samples.try_send(sample).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The automatic rules in force, if any (a cheap guard, not a clone).
    pub fn rules(&self) -> arc_swap::Guard<Option<Arc<Firewall>>> {
        self.rules.load()
    }

    /// Whether the automatic rules must leave this request alone.
    pub fn exempt(&self, route: &str, client: IpAddr) -> bool {
        self.exempt_routes.iter().any(|r| r == route)
            || self.exempt_sources.iter().any(|net| net.contains(&client))
    }

    /// The detector's last report: its state and its events.
    pub fn report(&self) -> Value {
        levee_common::sync::lock(&self.report).clone()
    }
}

/// What a sampled request looked like and asked for, taken before the
/// stages consume it.
#[derive(Debug)]
pub struct Asked {
    agent: Agent,
    shape: Shape,
    path: PathShape,
    method: Method,
}

impl Asked {
    pub fn of<B>(req: &http::Request<B>) -> Self {
        let headers = req.headers();
        Self {
            agent: Agent::of(headers.get(http::header::USER_AGENT).map(|v| v.as_bytes())),
            shape: Shape::of(headers),
            path: PathShape::of(req.uri().path(), req.uri().query().unwrap_or_default()),
            method: Method::of(req.method().as_str()),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The counters the edge and the detector thread share.
struct Counts {
    seen: Arc<AtomicU64>,
    stride: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
}

/// What the detector thread publishes.
struct Published {
    report: Arc<Mutex<Value>>,
    rules: Arc<ArcSwapOption<Firewall>>,
    mode: &'static str,
    /// The rules in force, as rendered.
    in_force: Vec<String>,
    /// Where events are POSTed, and what each event's POST last said (at
    /// most MAX_EVENTS entries).
    hook: Option<(String, AlertSink)>,
    told: HashMap<u64, (auto::State, auto::Mitigation)>,
    /// The newest event counted in the metrics.
    last_event: u64,
}

impl Published {
    /// Puts the detector's state out: the rules in force (compiled and
    /// swapped in when they changed), the webhook's POSTs, the metrics
    /// and the report.
    fn publish(&mut self, detector: &Detector, dropped: u64) {
        let enforced = detector.enforced_rules();
        if enforced != self.in_force {
            match auto::compile(&enforced) {
                Ok(firewall) => {
                    self.rules.store(firewall.map(Arc::new));
                    tracing::warn!(rules = enforced.len(), "automatic mitigation rules changed");
                    self.in_force = enforced.iter().map(|r| r.to_string()).collect();
                }
                Err(e) => {
                    tracing::error!(error = %e, "an automatic rule did not compile; not applied")
                }
            }
        }
        if let Some((url, alerts)) = &self.hook {
            tell(detector, url, alerts, &mut self.told);
        }
        let newest = detector.events().last().map_or(0, |e| e.id);
        levee_meter::metrics::auto_mitigation(
            newest.saturating_sub(self.last_event),
            self.in_force.len(),
            detector.status().reference_rps,
            dropped,
        );
        self.last_event = newest;
        *levee_common::sync::lock(&self.report) = report_of(detector, self.mode, dropped);
    }
}

fn mode_name(mode: AutoMode) -> &'static str {
    match mode {
        AutoMode::Off => "off",
        AutoMode::Count => "count",
        AutoMode::Enforce => "enforce",
    }
}

/// Where the baseline is saved, in the data directory.
pub const BASELINE_FILE: &str = "auto-baseline.json";
/// How often it is saved (and once when learning is done): a crash loses
/// at most this much learning.
pub const SAVE_EVERY_TICKS: u32 = 60;
/// A saved baseline older than this is ignored (traffic has moved on).
const MAX_BASELINE_AGE_SECS: u64 = 7 * 86_400;
/// Largest baseline file read: 2,048 values for each of the nine
/// attributes (a path with a header shape, the longest, is under 200
/// bytes of JSON), with room.
const MAX_BASELINE_BYTES: u64 = 8 << 20;

/// The saved baseline, if it is there, readable and recent; anything else
/// is logged and ignored (the detector learns again).
fn load_baseline(path: &Path) -> Option<SavedBaseline> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    if let Err(e) = file.take(MAX_BASELINE_BYTES).read_to_string(&mut text) {
        tracing::warn!(path = %path.display(), error = %e, "ignoring the saved attack-detection baseline");
        return None;
    }
    match serde_json::from_str::<SavedBaseline>(&text) {
        Ok(b) if unix_now().saturating_sub(b.saved) <= MAX_BASELINE_AGE_SECS => Some(b),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring the saved attack-detection baseline");
            None
        }
    }
}

/// Writes the baseline beside its final name, then renames it, so a crash
/// leaves the old file or the new one, never half of one.
fn save_baseline(path: &Path, baseline: &SavedBaseline) {
    let tmp = path.with_extension("json.tmp");
    let written = serde_json::to_vec(baseline)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "could not save the attack-detection baseline");
    }
}

/// How often the detector thread empties the buffer: at most
/// about `SAMPLES_PER_SECOND / 20` samples wait (more in a flood's first
/// second, before the stride follows it), well inside the buffer.
const DRAIN_EVERY: Duration = Duration::from_millis(50);

/// The detector thread: drains samples, ticks each second, publishes the
/// report; ends when the edge (the sender) is gone.
fn run(
    mut detector: Detector,
    samples: Receiver<Sample>,
    counts: Counts,
    mut out: Published,
    saved: PathBuf,
    budgets: Option<Arc<Budgets>>,
) {
    let mut burn = BurnGauge::default();
    let mut ticks: u32 = 0;
    let mut was_learned = !detector.status().learning;
    let mut next = Instant::now() + Duration::from_secs(1);
    loop {
        std::thread::sleep(DRAIN_EVERY.min(next.saturating_duration_since(Instant::now())));
        loop {
            match samples.try_recv() {
                Ok(sample) => detector.observe(&sample),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        if Instant::now() < next {
            // Between ticks, a returning signature is put back at once.
            if detector.rearm_early(unix_now(), counts.seen.load(Ordering::Relaxed)) {
                out.publish(&detector, counts.dropped.load(Ordering::Relaxed));
            }
            continue;
        }
        next += Duration::from_secs(1);
        // A thread that fell behind (a suspended machine) does not replay
        // the seconds it missed.
        if next < Instant::now() {
            next = Instant::now() + Duration::from_secs(1);
        }
        let now = unix_now();
        if let Some(budgets) = &budgets {
            let at = i64::try_from(now).unwrap_or(i64::MAX);
            detector.set_burning(burn.observe(at, &budgets.status(at)));
        }
        let seen = counts.seen.swap(0, Ordering::Relaxed);
        counts
            .stride
            .store(seen.div_ceil(SAMPLES_PER_SECOND).max(1), Ordering::Relaxed);
        detector.tick(now, seen);
        ticks = ticks.wrapping_add(1);
        // Saved the moment learning is done, then every minute.
        let learned = !detector.status().learning;
        if learned && (!was_learned || ticks.is_multiple_of(SAVE_EVERY_TICKS)) {
            save_baseline(&saved, &detector.saved_baseline(now));
        }
        was_learned = learned;
        out.publish(&detector, counts.dropped.load(Ordering::Relaxed));
    }
}

/// POSTs each event that opened, changed mitigation or ended since the
/// last tick to `url` (`{"source": "levee.auto_mitigation", "event": …}`,
/// the event as the admin API shows it).
fn tell(
    detector: &Detector,
    url: &str,
    alerts: &AlertSink,
    told: &mut HashMap<u64, (auto::State, auto::Mitigation)>,
) {
    for event in detector.events() {
        let now = (event.state, event.mitigation);
        if told.get(&event.id) == Some(&now) {
            continue;
        }
        told.insert(event.id, now);
        let body = json!({"source": "levee.auto_mitigation", "event": event});
        if let Ok(bytes) = serde_json::to_vec(&body) {
            alerts.send_json(
                url,
                format!("auto-mitigation event {}", event.id),
                bytes.into(),
            );
        }
    }
    // Events the detector no longer keeps are forgotten here too.
    told.retain(|id, _| detector.events().any(|e| e.id == *id));
}

/// What `GET /admin/shield/auto` shows.
fn report_of(detector: &Detector, mode: &str, dropped: u64) -> Value {
    let status = detector.status();
    let events: Vec<&levee_shield::auto::Event> = detector.events().collect();
    json!({
        "mode": mode,
        "learning": status.learning,
        "budget_burning": status.budget_burning,
        "learned_seconds": status.learned_seconds,
        "reference_rps": status.reference_rps,
        "current_rps": status.current_rps,
        "samples_dropped": dropped,
        "events": events,
    })
}
