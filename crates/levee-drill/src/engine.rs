//! Running a plan: one open-loop generator per class (legitimate, attack),
//! each spawning attempts at its rate up to its connection cap, a progress
//! bar (a plain line when stderr is not a terminal) and an admin reading
//! every second, and the admin readings around the run. It owns the
//! run's time and count bounds; it must never outlive `duration` plus one
//! drain period, nor send more than `max_requests`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::admin;
use crate::client::{attempt, Shape};
use crate::error::DrillError;
use crate::plan::DrillPlan;
use crate::report::{DrillReport, LeveeImpact, Settings, SCHEMA_VERSION};
use crate::scenario;
use crate::stats::ClassStats;

/// Scheduling tick: requests due are released every 10 ms.
const TICK: Duration = Duration::from_millis(10);
/// After the run ends, in-flight attempts get this long past their timeout.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Pause before the "after" admin reading, so counters settle.
const SETTLE: Duration = Duration::from_millis(300);
/// Bound on the once-a-second admin reading: a slow admin API must not
/// stretch the run.
const SAMPLE_TIMEOUT: Duration = Duration::from_millis(500);

/// The most the once-a-second admin readings saw.
#[derive(Debug, Default, Clone, Copy)]
struct Peaks {
    instances: u64,
    memory: Option<u64>,
}

impl Peaks {
    fn see(&mut self, r: &admin::Reading) {
        self.instances = self.instances.max(r.live_instances);
        self.memory = self.memory.max(r.resident_bytes);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Legit,
    Attack,
}

/// One class's generator settings.
#[derive(Debug, Clone)]
struct Generator {
    class: Class,
    rate: u32,
    sources: u32,
    concurrency: u32,
    budget: u64,
}

type Shared = Arc<Mutex<ClassStats>>;

fn with<T>(s: &Shared, f: impl FnOnce(&mut ClassStats) -> T) -> T {
    let mut g = levee_common::sync::lock(s);
    f(&mut g)
}

async fn drive(plan: Arc<DrillPlan>, g: Generator, stats: Shared, start: Instant) {
    let end = start + plan.duration;
    let surge_target = plan.surge_target();
    let permits = Arc::new(Semaphore::new(g.concurrency as usize));
    let mut set = JoinSet::new();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // At most one release per tick for the whole duration.
    let max_ticks = plan.duration.as_millis() / TICK.as_millis() + 2;
    // Per tick at most 2 ticks' worth (a late tick catches up, not more).
    let per_tick = (u64::from(g.rate) * TICK.as_millis() as u64 / 1000 + 1) * 2;
    for _ in 0..max_ticks {
        tick.tick().await;
        let now = Instant::now();
        if now >= end || sent >= g.budget {
            break;
        }
        let elapsed = (now - start).as_secs_f64();
        let seconds = match g.class {
            Class::Legit => elapsed,
            Class::Attack => plan.surge_seconds(elapsed),
        };
        let due = (seconds * f64::from(g.rate)) as u64;
        let due = due.min(g.budget).min(sent + per_tick);
        while sent < due {
            let n = sent;
            sent += 1;
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                with(&stats, ClassStats::skip);
                continue;
            };
            let shape: Shape = match g.class {
                Class::Legit => scenario::legit(&plan.target, n),
                Class::Attack => scenario::attack(plan.scenario, n, &surge_target),
            };
            let src = match g.class {
                Class::Legit => scenario::legit_source(n, g.sources),
                Class::Attack => {
                    scenario::surge_source(plan.scenario, n, g.sources, plan.legit_sources)
                }
            };
            let (stats, to, timeout) = (Arc::clone(&stats), plan.target.addr, plan.timeout);
            set.spawn(async move {
                let began = Instant::now();
                let outcome = attempt(Some(src), to, &shape, timeout, end).await;
                let us = began.elapsed().as_micros() as u64;
                let second = (began - start).as_secs();
                with(&stats, |s| s.record(second, outcome, us));
                drop(permit);
            });
        }
        while set.try_join_next().is_some() {}
    }
    // Drain: every attempt is bounded by its timeout (slow ones by `end`).
    let drain_until = end.max(Instant::now()) + plan.timeout + DRAIN_GRACE;
    let drained = tokio::time::timeout_at(drain_until, async {
        while set.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        set.abort_all();
    }
}

fn progress_bar(plan: &DrillPlan) -> ProgressBar {
    // Draws only on a terminal; `quiet` hides it there too.
    let bar = ProgressBar::new(plan.duration.as_secs().max(1));
    if plan.quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template("{elapsed:>4} [{bar:24}] {pos}/{len}s {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn progress_line(elapsed: Duration, total: Duration, legit: &Shared, attack: &Shared) -> String {
    let (lr, lo, lp) = with(legit, |s| (s.requests(), s.success(), s.p99_ms()));
    let (ar, ao, ap) = with(attack, |s| (s.requests(), s.success(), s.p99_ms()));
    let pct = |ok: u64, n: u64| {
        if n == 0 {
            0.0
        } else {
            ok as f64 * 100.0 / n as f64
        }
    };
    format!(
        "[{:>3}/{}s] legit {lr} done, {:.2}% 2xx, p99 {lp:.1}ms | attack {ar} done, {:.2}% 2xx, p99 {ap:.1}ms",
        elapsed.as_secs(),
        total.as_secs(),
        pct(lo, lr),
        pct(ao, ar),
    )
}

/// Runs `plan` and reports what each class saw and, with an admin API, what
/// the attack cost.
pub async fn run(plan: DrillPlan) -> Result<DrillReport, DrillError> {
    plan.validate()?;
    let plan = Arc::new(plan);
    let secs = plan.duration.as_secs().max(1);
    let before = match &plan.admin {
        Some(api) => Some(admin::read(api).await?),
        None => None,
    };
    let mut peaks = Peaks::default();
    if let Some(r) = &before {
        peaks.see(r);
    }
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let legit: Shared = Arc::new(Mutex::new(ClassStats::new(secs)));
    let attack: Shared = Arc::new(Mutex::new(ClassStats::new(secs)));
    let start = Instant::now();
    // The legitimate class gets its share of the request cap first: it is small.
    let legit_budget = (u64::from(plan.legit_rate) * secs).min(plan.max_requests / 2);
    let mut tasks = JoinSet::new();
    if plan.legit_rate > 0 {
        tasks.spawn(drive(
            Arc::clone(&plan),
            Generator {
                class: Class::Legit,
                rate: plan.legit_rate,
                sources: plan.legit_sources,
                concurrency: plan.legit_concurrency,
                budget: legit_budget,
            },
            Arc::clone(&legit),
            start,
        ));
    }
    if plan.rate > 0 {
        tasks.spawn(drive(
            Arc::clone(&plan),
            Generator {
                class: Class::Attack,
                rate: plan.rate,
                sources: plan.sources,
                concurrency: plan.concurrency,
                budget: plan.max_requests - legit_budget,
            },
            Arc::clone(&attack),
            start,
        ));
    }
    // Progress and an admin reading once a second; the generators bound
    // themselves, this loop is bounded too (duration + timeout + grace, in
    // seconds, plus slack).
    let bar = progress_bar(&plan);
    let max_beats = secs + plan.timeout.as_secs() + DRAIN_GRACE.as_secs() + 5;
    for _ in 0..max_beats {
        let done = tokio::time::timeout(Duration::from_secs(1), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if done.is_ok() {
            break;
        }
        if let Some(api) = &plan.admin {
            if let Ok(Ok(r)) = tokio::time::timeout(SAMPLE_TIMEOUT, admin::read(api)).await {
                peaks.see(&r);
            }
        }
        let line = progress_line(start.elapsed(), plan.duration, &legit, &attack);
        if bar.is_hidden() && !plan.quiet {
            eprintln!("{line}");
        }
        bar.set_position(start.elapsed().as_secs().min(secs));
        bar.set_message(line);
    }
    bar.finish_and_clear();
    tasks.abort_all();
    let elapsed_s = start.elapsed().as_secs_f64();
    let legit_report = with(&legit, |s| s.report(plan.legit_sources));
    let attack_report = with(&attack, |s| s.report(plan.sources));
    let mut notes = Vec::new();
    if legit_report.skipped + attack_report.skipped > 0 {
        notes.push(format!(
            "the generator skipped {} legitimate and {} attack requests at its connection caps: the offered load was lower than planned",
            legit_report.skipped, attack_report.skipped
        ));
    }
    let levee = match (&plan.admin, before) {
        (Some(api), Some(before)) => {
            tokio::time::sleep(SETTLE).await;
            match admin::read(api).await {
                Ok(after) => {
                    peaks.see(&after);
                    let caused = after.invocations.saturating_sub(before.invocations);
                    Some(LeveeImpact {
                        invocations_before: before.invocations,
                        invocations_after: after.invocations,
                        invocations_caused: caused,
                        invocations_caused_by_attack: caused.saturating_sub(legit_report.success),
                        spend_usd_before: before.spend_usd,
                        spend_usd_after: after.spend_usd,
                        spend_usd_caused: before
                            .spend_usd
                            .zip(after.spend_usd)
                            .map(|(b, a)| (a - b).max(0.0)),
                        instances_peak: peaks.instances,
                        memory_peak_bytes: peaks.memory,
                        auto_events: admin::auto_marks(api, started_unix_ms).await,
                    })
                }
                Err(e) => {
                    notes.push(format!("reading the admin API after the run failed: {e}"));
                    None
                }
            }
        }
        _ => None,
    };
    let enforced = levee
        .iter()
        .flat_map(|l| &l.auto_events)
        .filter(|e| e.enforced_s.is_some())
        .count();
    if plan.scenario.is_benign() && enforced > 0 {
        notes.push(format!(
            "{} is not an attack, yet {enforced} automatic rule(s) came into force against it",
            plan.scenario.name()
        ));
    }
    Ok(DrillReport {
        schema_version: SCHEMA_VERSION,
        scenario: plan.scenario.name().to_string(),
        target: plan.target.url.clone(),
        started_unix_ms,
        elapsed_s,
        settings: Settings {
            duration_s: plan.duration.as_secs_f64(),
            rate: plan.rate,
            legit_rate: plan.legit_rate,
            concurrency: plan.concurrency,
            timeout_ms: plan.timeout.as_millis() as u64,
            max_requests: plan.max_requests,
        },
        legit: legit_report,
        attack: attack_report,
        levee,
        notes,
    })
}
