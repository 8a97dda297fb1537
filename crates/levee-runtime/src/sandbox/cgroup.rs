//! cgroup v1 groups per instance: memory (with swap where accounted) and pids.
//!
//! Owns the groups' creation under `levee/<server pid>`, the open
//! `cgroup.procs` files a child writes itself into before `exec`, the OOM
//! record, and removal. Must never decide limits: the caller passes them.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Processes and threads per instance (Lambda's limit).
pub const PIDS_MAX: u32 = 1024;
/// The cgroup v1 hierarchies used: memory first, then pids.
pub(crate) const HIERARCHIES: [&str; 2] = ["/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"];

#[derive(Debug, Clone)]
pub(crate) struct CgroupRoots {
    pub(crate) memory: PathBuf,
    pub(crate) pids: PathBuf,
}

/// Removes the cgroups of servers that died without cleaning up (kill -9):
/// their roots are named by PID, and a PID with no /proc entry is gone.
#[allow(unsafe_code)]
pub(crate) fn sweep_dead_servers(levee_root: &Path) {
    let Ok(servers) = fs::read_dir(levee_root) else {
        return;
    };
    for server in servers.flatten() {
        let name = server.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        for group in fs::read_dir(server.path()).into_iter().flatten().flatten() {
            if !group.path().is_dir() {
                continue;
            }
            let procs = fs::read_to_string(group.path().join("cgroup.procs")).unwrap_or_default();
            for p in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: plain syscall on a process left in a dead server's cgroup.
                unsafe {
                    libc::kill(p, libc::SIGKILL);
                }
            }
            let _ = fs::remove_dir(group.path());
        }
        let _ = fs::remove_dir(server.path());
    }
}
#[derive(Debug)]
pub(crate) struct InstanceCgroup {
    memory: PathBuf,
    pids: PathBuf,
    /// Open `cgroup.procs` files written from the child before exec.
    pub(crate) join_files: Vec<fs::File>,
}

impl InstanceCgroup {
    pub(crate) fn create(roots: &CgroupRoots, name: &str, memory_mb: u32) -> io::Result<Self> {
        let memory = roots.memory.join(name);
        let pids = roots.pids.join(name);
        fs::create_dir_all(&memory)?;
        fs::create_dir_all(&pids)?;
        let bytes = u64::from(memory_mb) * 1024 * 1024;
        fs::write(memory.join("memory.limit_in_bytes"), bytes.to_string())?;
        // Without this the instance could spill into swap instead of being
        // held to its size; absent when swap accounting is off, which is fine.
        let _ = fs::write(
            memory.join("memory.memsw.limit_in_bytes"),
            bytes.to_string(),
        );
        fs::write(pids.join("pids.max"), PIDS_MAX.to_string())?;
        let open = |p: PathBuf| fs::OpenOptions::new().write(true).open(p);
        let join_files = vec![
            open(memory.join("cgroup.procs"))?,
            open(pids.join("cgroup.procs"))?,
        ];
        Ok(Self {
            memory,
            pids,
            join_files,
        })
    }

    pub(crate) fn close_join_files(mut self) -> Self {
        self.join_files.clear();
        self
    }

    pub(crate) fn oom_killed(&self) -> bool {
        let Ok(text) = fs::read_to_string(self.memory.join("memory.oom_control")) else {
            return false;
        };
        text.lines()
            .filter_map(|l| l.strip_prefix("oom_kill "))
            .any(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0))
    }

    #[allow(unsafe_code)]
    pub(crate) fn kill_all(&self) {
        let Ok(procs) = fs::read_to_string(self.pids.join("cgroup.procs")) else {
            return;
        };
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // SAFETY: plain syscall; the pids are members of this instance's cgroup.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }

    pub(crate) fn remove(self) {
        // rmdir fails while a killed process is still exiting; retry briefly.
        for _ in 0..50 {
            let m = fs::remove_dir(&self.memory);
            let p = fs::remove_dir(&self.pids);
            let gone = |r: io::Result<()>| r.is_ok() || !self_exists(&r);
            if gone(m) && gone(p) {
                return;
            }
            self.kill_all();
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        tracing::warn!(cgroup = %self.memory.display(), "could not remove instance cgroup");
    }
}

fn self_exists(r: &io::Result<()>) -> bool {
    !matches!(r, Err(e) if e.kind() == io::ErrorKind::NotFound)
}
