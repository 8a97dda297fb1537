//! The edge's side of automatic attack detection and mitigation
//! (`[auto_mitigation]`): each request is counted and, up to
//! [`MAX_SAMPLES_PER_SECOND`], sampled into a bounded channel that one
//! detector thread drains and ticks once a second. The thread publishes
//! its report (`GET /admin/shield/auto`) and, in enforce mode, the rules in
//! force as a firewall the pipeline evaluates after the operator's.
//!
//! Owns the channel ([`SAMPLE_BUFFER`] samples, about 4 MiB), the counts,
//! the published report and the automatic rules. Must never make a
//! request wait: a full buffer drops the sample (counted), never the
//! request.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use levee_config::{AutoMitigation, AutoMode};
pub use levee_shield::auto::Agent;
use levee_shield::auto::{self, Detector, Sample, Settings};
use levee_shield::firewall::Firewall;
use serde_json::{json, Value};

/// Samples a second at most; beyond it requests are only counted (the
/// detector scales the composition up to the count).
pub const MAX_SAMPLES_PER_SECOND: u64 = 20_000;
/// Samples waiting for the detector thread.
pub const SAMPLE_BUFFER: usize = 32_768;

/// Counts and samples requests for the detector thread.
#[derive(Debug)]
pub struct Watch {
    samples: SyncSender<Sample>,
    /// Requests this second, sampled or not; the first
    /// [`MAX_SAMPLES_PER_SECOND`] of them are sampled.
    seen: Arc<AtomicU64>,
    /// Samples the full buffer refused, since start.
    dropped: Arc<AtomicU64>,
    report: Arc<Mutex<Value>>,
    /// The rules in force, evaluated after the operator's firewall.
    rules: Arc<ArcSwapOption<Firewall>>,
}

impl Watch {
    /// Starts the detector thread; `None` when `[auto_mitigation]` is off.
    pub fn start(config: &AutoMitigation) -> std::io::Result<Option<Arc<Watch>>> {
        if config.mode == AutoMode::Off {
            return Ok(None);
        }
        let settings = Settings {
            enforce: config.mode == AutoMode::Enforce,
            factor: config.sensitivity.factor(),
            learn_ticks: u32::try_from(config.learn_for.as_secs()).unwrap_or(u32::MAX),
            quiet_ticks: u32::try_from(config.quiet_for.as_secs()).unwrap_or(u32::MAX),
            ..Settings::default()
        };
        let (tx, rx) = sync_channel(SAMPLE_BUFFER);
        let seen = Arc::new(AtomicU64::new(0));
        let report = Arc::new(Mutex::new(
            json!({ "mode": mode_name(config.mode), "learning": true, "events": [] }),
        ));
        let dropped = Arc::new(AtomicU64::new(0));
        let counts = Counts {
            seen: Arc::clone(&seen),
            dropped: Arc::clone(&dropped),
        };
        let rules = Arc::new(ArcSwapOption::empty());
        let published = Published {
            report: Arc::clone(&report),
            rules: Arc::clone(&rules),
            mode: mode_name(config.mode),
        };
        std::thread::Builder::new()
            .name("levee-detector".into())
            .spawn(move || run(Detector::new(settings), rx, counts, published))?;
        Ok(Some(Arc::new(Watch {
            samples: tx,
            seen,
            dropped,
            report,
            rules,
        })))
    }

    /// Counts one request; whether it is one of this second's samples
    /// (the hot path: one atomic add).
    pub fn count(&self) -> bool {
        self.seen.fetch_add(1, Ordering::Relaxed) < MAX_SAMPLES_PER_SECOND
    }

    /// Hands a sampled request to the detector thread, or drops it when
    /// the buffer is full. Never blocks, and never wakes the thread: it
    /// drains the buffer on its own schedule.
    pub fn sample(&self, client: IpAddr, agent: Agent) {
        if self.samples.try_send(Sample { client, agent }).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The automatic rules in force, if any (a cheap guard, not a clone).
    pub fn rules(&self) -> arc_swap::Guard<Option<Arc<Firewall>>> {
        self.rules.load()
    }

    /// The detector's last report: its state and its events.
    pub fn report(&self) -> Value {
        levee_common::sync::lock(&self.report).clone()
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
    dropped: Arc<AtomicU64>,
}

/// What the detector thread publishes.
struct Published {
    report: Arc<Mutex<Value>>,
    rules: Arc<ArcSwapOption<Firewall>>,
    mode: &'static str,
}

fn mode_name(mode: AutoMode) -> &'static str {
    match mode {
        AutoMode::Off => "off",
        AutoMode::Count => "count",
        AutoMode::Enforce => "enforce",
    }
}

/// How often the detector thread empties the buffer: at most
/// `MAX_SAMPLES_PER_SECOND / 20` samples wait, well inside the buffer.
const DRAIN_EVERY: Duration = Duration::from_millis(50);

/// The detector thread: drains samples, ticks each second, publishes the
/// report; ends when the edge (the sender) is gone.
fn run(mut detector: Detector, samples: Receiver<Sample>, counts: Counts, out: Published) {
    let mut next = Instant::now() + Duration::from_secs(1);
    let mut in_force: Vec<String> = Vec::new();
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
            continue;
        }
        next += Duration::from_secs(1);
        // A thread that fell behind (a suspended machine) does not replay
        // the seconds it missed.
        if next < Instant::now() {
            next = Instant::now() + Duration::from_secs(1);
        }
        detector.tick(unix_now(), counts.seen.swap(0, Ordering::Relaxed));
        let enforced = detector.enforced_rules();
        if enforced != in_force {
            match auto::compile(&enforced) {
                Ok(firewall) => {
                    out.rules.store(firewall.map(Arc::new));
                    tracing::warn!(rules = enforced.len(), "automatic mitigation rules changed");
                    in_force = enforced.iter().map(|r| r.to_string()).collect();
                }
                Err(e) => {
                    tracing::error!(error = %e, "an automatic rule did not compile; not applied")
                }
            }
        }
        let status = detector.status();
        let events: Vec<&levee_shield::auto::Event> = detector.events().collect();
        *levee_common::sync::lock(&out.report) = json!({
            "mode": out.mode,
            "learning": status.learning,
            "learned_seconds": status.learned_seconds,
            "reference_rps": status.reference_rps,
            "current_rps": status.current_rps,
            "samples_dropped": counts.dropped.load(Ordering::Relaxed),
            "events": events,
        });
    }
}
