//! `levee drill`: an attack and load simulator for a target its operator owns.
//! It floods a target (on loopback unless `--i-own-this-target`) from many
//! distinct 127.x.y.z source addresses with one of several scenarios, runs
//! legitimate traffic beside the attack, and reports what each class saw
//! (statuses, latency percentiles, a per-second series) and, for a levee
//! target with `--admin`, the invocations and spend the run caused, as JSON
//! and as a self-contained HTML page.
//!
//! It must never run unbounded: every run stops by itself within
//! [`plan::MAX_DURATION`] plus a drain period and after at most
//! [`plan::MAX_REQUESTS`] requests; and it must never attack a non-loopback
//! address without the operator saying they own it.

pub mod admin;
pub mod client;
pub mod engine;
pub mod error;
pub mod html;
pub mod plan;
pub mod report;
pub mod scenario;
pub mod stats;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use engine::run;
pub use error::DrillError;
pub use plan::{DrillPlan, Scenario};
pub use report::DrillReport;

/// Writes `drill-<scenario>-<unix ms>.json` and `.html` into `dir`; returns both paths.
pub fn write_reports(report: &DrillReport, dir: &Path) -> Result<(PathBuf, PathBuf), DrillError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DrillError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let stem = format!("drill-{}-{}", report.scenario, report.started_unix_ms);
    let json_path = dir.join(format!("{stem}.json"));
    let html_path = dir.join(format!("{stem}.html"));
    let json = serde_json::to_string_pretty(report).map_err(|e| DrillError::Io {
        path: json_path.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&json_path, json).map_err(io(&json_path))?;
    std::fs::write(&html_path, html::render(report)).map_err(io(&html_path))?;
    Ok((json_path, html_path))
}

fn main_inner(args: &[String]) -> Result<(), DrillError> {
    let plan = DrillPlan::from_args(args)?;
    let dir = plan.report_dir.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(DrillError::Runtime)?;
    let report = rt.block_on(run(plan))?;
    print!("{}", report.summary());
    if let Some(dir) = dir {
        let (json, html) = write_reports(&report, &dir)?;
        println!("  report {} and {}", json.display(), html.display());
    }
    Ok(())
}

/// Parses drill arguments (everything after `levee drill`) and runs; returns
/// the process exit code (0 ok, 2 bad arguments / refused target, 1 other failure).
pub fn main(args: Vec<String>) -> ExitCode {
    match main_inner(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(DrillError::Help(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("levee drill: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
