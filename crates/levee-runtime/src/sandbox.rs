//! Process sandbox v1: how one instance's process is started and torn down.
//!
//! Owns the instance's private directories (a read-only copy of the code and
//! an empty /tmp), its environment (nothing of the platform's own leaks in),
//! its memory and pids limits (cgroup v1 where writable, else rlimits), and its
//! process group, so a kill reaches every process the function started. It must
//! never decide *when* to start or kill an instance; the scheduler does that.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use levee_config::Function;

/// Largest code directory staged (Lambda's unzipped deployment limit).
pub const MAX_CODE_BYTES: u64 = 250 * 1024 * 1024;
/// Most files in a code directory; bounds the per-instance copy.
pub const MAX_CODE_FILES: usize = 20_000;
/// Processes and threads per instance (Lambda's limit).
pub const PIDS_MAX: u32 = 1024;
/// Open files per instance (Lambda's limit).
pub const NOFILE_MAX: u64 = 1024;

const PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// The cgroup v1 hierarchies used: memory first, then pids.
const CGROUP_HIERARCHIES: [&str; 2] = ["/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"];

/// Removes the cgroups of servers that died without cleaning up (kill -9):
/// their roots are named by PID, and a PID with no /proc entry is gone.
#[allow(unsafe_code)]
fn sweep_dead_servers(levee_root: &Path) {
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
/// The region reported to functions; SDKs inside functions need one.
pub const REGION: &str = "us-east-1";

/// Where instance limits are enforced: cgroup v1 if this process may create
/// groups under the memory and pids hierarchies, otherwise rlimits.
#[derive(Debug, Clone)]
pub struct Sandbox {
    cgroups: Option<CgroupRoots>,
    instances_dir: PathBuf,
    spawner: Spawner,
}

/// The shell script that holds a prepared process at the gate: it waits for
/// one line on stdin (the go signal) and then becomes the function's
/// command; EOF instead means the standby is discarded. `$0` is the
/// function's program and `$@` its arguments.
const GATE: &str = "read -r _ || exit 0; exec \"$0\" \"$@\"";
/// The shell that runs [`GATE`].
const SHELL: &str = "/bin/sh";

type SpawnJob = (
    tokio::process::Command,
    tokio::sync::oneshot::Sender<io::Result<tokio::process::Child>>,
);

/// Forks on one dedicated, long-lived thread. Two reasons: `fork` returns
/// only once the child has joined its cgroups, which on cgroup v1 can wait
/// tens of milliseconds for an RCU grace period, and that must not stall an
/// async worker; and `PR_SET_PDEATHSIG` fires when the *thread* that forked
/// exits, so that thread must live as long as the server.
#[derive(Debug, Clone)]
struct Spawner {
    jobs: std::sync::mpsc::Sender<SpawnJob>,
}

impl Spawner {
    fn new() -> io::Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let (jobs, queue) = std::sync::mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("levee-spawner".into())
            .spawn(move || {
                // Children are reaped by the runtime's process driver.
                let _runtime = runtime.enter();
                for (mut cmd, reply) in queue {
                    let _ = reply.send(cmd.spawn());
                }
            })?;
        Ok(Self { jobs })
    }

    async fn spawn(&self, cmd: tokio::process::Command) -> io::Result<tokio::process::Child> {
        let (reply, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send((cmd, reply))
            .map_err(|_| io::Error::other("spawner thread is gone"))?;
        result
            .await
            .map_err(|_| io::Error::other("spawner thread is gone"))?
    }
}

#[derive(Debug, Clone)]
struct CgroupRoots {
    memory: PathBuf,
    pids: PathBuf,
}

impl Sandbox {
    /// Probes cgroup v1 once. Groups live under `levee/<server pid>` so that
    /// two servers on one machine never share or remove each other's groups.
    pub fn new(data_dir: &Path) -> io::Result<Self> {
        let instances_dir = data_dir.join("instances");
        fs::create_dir_all(&instances_dir)?;
        for hierarchy in CGROUP_HIERARCHIES {
            sweep_dead_servers(&Path::new(hierarchy).join("levee"));
        }
        let tag = format!("levee/{}", std::process::id());
        let memory = Path::new(CGROUP_HIERARCHIES[0]).join(&tag);
        let pids = Path::new(CGROUP_HIERARCHIES[1]).join(&tag);
        let cgroups = match (fs::create_dir_all(&memory), fs::create_dir_all(&pids)) {
            (Ok(()), Ok(())) => Some(CgroupRoots { memory, pids }),
            (m, p) => {
                tracing::warn!(
                    memory = ?m.err(), pids = ?p.err(),
                    "cgroup v1 not writable; memory limits fall back to RLIMIT_AS and pids are not limited"
                );
                None
            }
        };
        Ok(Self {
            cgroups,
            instances_dir,
            spawner: Spawner::new()?,
        })
    }

    /// Removes this server's cgroup roots; call after every instance stopped.
    pub fn close(&self) {
        if let Some(roots) = &self.cgroups {
            let _ = fs::remove_dir(&roots.memory);
            let _ = fs::remove_dir(&roots.pids);
        }
    }

    /// Creates the instance's directories, code copy and cgroups. Blocking
    /// file I/O: run it off the async workers.
    pub fn prepare(
        &self,
        instance_name: &str,
        staged_code: &Path,
        memory_mb: u32,
    ) -> io::Result<Prepared> {
        let dir = self.instances_dir.join(instance_name);
        let task = dir.join("task");
        let tmp = dir.join("tmp");
        let _ = remove_tree(&dir);
        fs::create_dir_all(&tmp)?;
        let staged = copy_tree(staged_code, &task, &mut CopyBudget::default())
            .and_then(|()| seal_tree(&task));
        let cgroup = staged.and_then(|()| match &self.cgroups {
            Some(roots) => InstanceCgroup::create(roots, instance_name, memory_mb).map(Some),
            None => Ok(None),
        });
        match cgroup {
            Ok(cgroup) => Ok(Prepared {
                dir,
                task,
                tmp,
                cgroup,
                spawner: self.spawner.clone(),
            }),
            Err(e) => {
                let _ = remove_tree(&dir);
                Err(e)
            }
        }
    }
}

/// An instance's directories and cgroups, ready for its process.
#[derive(Debug)]
pub struct Prepared {
    dir: PathBuf,
    task: PathBuf,
    tmp: PathBuf,
    cgroup: Option<InstanceCgroup>,
    spawner: Spawner,
}

impl Prepared {
    /// Starts the process *at the gate*: inside its cgroups, with its
    /// environment and directories, but running a shell that waits for one
    /// line on stdin before it `exec`s the function's command (see
    /// [`open_gate`]). Everything slow about a cold start happens
    /// here, so a standby can be prepared ahead of demand.
    pub async fn spawn(self, spec: &SpawnSpec<'_>) -> io::Result<Spawned> {
        let program = &spec.function.command[0];
        if let Err(e) = check_executable(Path::new(program)) {
            self.discard();
            return Err(e);
        }
        let mut cmd = tokio::process::Command::new(SHELL);
        cmd.arg("-c")
            .arg(GATE)
            .args(&spec.function.command)
            .current_dir(&self.task)
            .env_clear()
            .envs(instance_env(spec, &self.task, &self.tmp))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let memory_bytes = u64::from(spec.function.memory_mb) * 1024 * 1024;
        let join_fds: Vec<i32> = self
            .cgroup
            .as_ref()
            .map(|c| c.join_files.iter().map(|f| f.as_raw_fd()).collect())
            .unwrap_or_default();
        pre_exec_limits(&mut cmd, join_fds, memory_bytes);
        match self.spawner.spawn(cmd).await {
            Ok(mut child) => Ok(Spawned {
                pgid: child.id().map(|p| p as i32).unwrap_or(0),
                gate: child.stdin.take(),
                child,
                cgroup: self.cgroup.map(InstanceCgroup::close_join_files),
                dir: self.dir,
            }),
            Err(e) => {
                self.discard();
                Err(e)
            }
        }
    }

    fn discard(self) {
        if let Some(cg) = self.cgroup {
            cg.remove();
        }
        let _ = remove_tree(&self.dir);
    }
}

/// Refuses a program that cannot be executed, before anything is started:
/// behind the gate, a bad path would only show as the shell exiting 127.
fn check_executable(program: &Path) -> io::Result<()> {
    let meta = fs::metadata(program)?;
    if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "not an executable file",
        ))
    }
}

/// What to start.
#[derive(Debug)]
pub struct SpawnSpec<'a> {
    /// The function's configuration.
    pub function: &'a Function,
    /// Unique per server: names the instance's log stream.
    pub instance_name: &'a str,
    /// This instance's own Runtime API listener.
    pub runtime_api: SocketAddr,
    /// `on-demand` or `provisioned-concurrency`.
    pub init_type: &'static str,
}

fn instance_env(spec: &SpawnSpec<'_>, task: &Path, tmp: &Path) -> Vec<(OsString, OsString)> {
    let f = spec.function;
    let mut path = OsString::from(PATH);
    if let Some(parent) = Path::new(&f.command[0])
        .parent()
        .filter(|p| p.is_absolute())
    {
        path = OsString::from(format!("{}:{PATH}", parent.display()));
    }
    // `YYYY/MM/DD` in UTC, as in Lambda log stream names.
    let day = chrono::Utc::now().format("%Y/%m/%d");
    let mut env: Vec<(OsString, OsString)> = vec![
        (
            "AWS_LAMBDA_RUNTIME_API".into(),
            spec.runtime_api.to_string().into(),
        ),
        ("_HANDLER".into(), f.handler.clone().into()),
        ("LAMBDA_TASK_ROOT".into(), task.into()),
        ("LAMBDA_RUNTIME_DIR".into(), task.into()),
        ("AWS_LAMBDA_FUNCTION_NAME".into(), f.name.as_str().into()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
            f.memory_mb.to_string().into(),
        ),
        ("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into()),
        (
            "AWS_LAMBDA_FUNCTION_TIMEOUT".into(),
            f.timeout.as_secs().max(1).to_string().into(),
        ),
        (
            "AWS_LAMBDA_INITIALIZATION_TYPE".into(),
            spec.init_type.into(),
        ),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME".into(),
            format!("/aws/lambda/{}", f.name).into(),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME".into(),
            format!("{day}/[$LATEST]{}", spec.instance_name).into(),
        ),
        ("AWS_REGION".into(), REGION.into()),
        ("AWS_DEFAULT_REGION".into(), REGION.into()),
        ("TZ".into(), "UTC".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("PATH".into(), path),
        ("HOME".into(), tmp.into()),
        ("TMPDIR".into(), tmp.into()),
    ];
    env.extend(f.env.iter().map(|(k, v)| (k.into(), v.into())));
    env
}

#[allow(unsafe_code)]
fn pre_exec_limits(cmd: &mut tokio::process::Command, join_fds: Vec<i32>, memory_bytes: u64) {
    // SAFETY: the closure runs between fork and exec, so it only makes
    // async-signal-safe calls (write, setrlimit, prctl) on values prepared
    // before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // Die with the server, even on kill -9, instead of lingering.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // Join the cgroups before exec, so no byte is allocated outside them.
            for fd in &join_fds {
                if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            let nofile = libc::rlimit {
                rlim_cur: NOFILE_MAX,
                rlim_max: NOFILE_MAX,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &nofile) != 0 {
                return Err(io::Error::last_os_error());
            }
            if join_fds.is_empty() {
                let mem = libc::rlimit {
                    rlim_cur: memory_bytes,
                    rlim_max: memory_bytes,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &mem) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// A running instance process and what must be cleaned up after it.
#[derive(Debug)]
pub struct Spawned {
    /// The process (leader of its own process group).
    pub child: tokio::process::Child,
    /// The gate's stdin; see [`open_gate`].
    gate: Option<tokio::process::ChildStdin>,
    pgid: i32,
    cgroup: Option<InstanceCgroup>,
    dir: PathBuf,
}

impl Spawned {
    /// Takes the gate, to be opened later with [`open_gate`].
    pub fn take_gate(&mut self) -> Option<tokio::process::ChildStdin> {
        self.gate.take()
    }

    /// Kills the whole process group (and, with cgroups, every process in the
    /// group's cgroup, which catches processes that left the process group).
    #[allow(unsafe_code)]
    pub fn kill(&self) {
        if self.pgid > 0 {
            // SAFETY: plain syscall on a process group this server created.
            unsafe {
                libc::killpg(self.pgid, libc::SIGKILL);
            }
        }
        if let Some(cg) = &self.cgroup {
            cg.kill_all();
        }
    }

    /// Whether the memory cgroup recorded an OOM kill.
    pub fn oom_killed(&self) -> bool {
        self.cgroup.as_ref().is_some_and(InstanceCgroup::oom_killed)
    }

    /// Kills what is left and removes the instance's directories and cgroups.
    pub async fn teardown(mut self) {
        self.kill();
        let _ = self.child.wait().await;
        let dir = std::mem::take(&mut self.dir);
        let cgroup = self.cgroup.take();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(cg) = cgroup {
                cg.remove();
            }
            let _ = remove_tree(&dir);
        })
        .await;
    }
}

#[derive(Debug)]
struct InstanceCgroup {
    memory: PathBuf,
    pids: PathBuf,
    /// Open `cgroup.procs` files written from the child before exec.
    join_files: Vec<fs::File>,
}

impl InstanceCgroup {
    fn create(roots: &CgroupRoots, name: &str, memory_mb: u32) -> io::Result<Self> {
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

    fn close_join_files(mut self) -> Self {
        self.join_files.clear();
        self
    }

    fn oom_killed(&self) -> bool {
        let Ok(text) = fs::read_to_string(self.memory.join("memory.oom_control")) else {
            return false;
        };
        text.lines()
            .filter_map(|l| l.strip_prefix("oom_kill "))
            .any(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0))
    }

    #[allow(unsafe_code)]
    fn kill_all(&self) {
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

    fn remove(self) {
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

/// Lets a process waiting at the gate `exec` the function. The function
/// then sees EOF on stdin, as Lambda functions do.
pub async fn open_gate(mut gate: tokio::process::ChildStdin) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    gate.write_all(b"go\n").await?;
    gate.flush().await
}

/// Resolves a bare program name (`python3`) against the platform's own PATH,
/// once at start: instances get a clean standard PATH, and the operator's
/// command should mean what it means in the operator's shell.
pub fn resolve_program(program: &str) -> String {
    if program.contains('/') {
        return program.to_string();
    }
    let Some(path) = std::env::var_os("PATH") else {
        return program.to_string();
    };
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| program.to_string())
}

/// Bounds a tree copy in bytes and files; going over either is an
/// [`io::ErrorKind::FileTooLarge`] error.
#[derive(Debug, Default)]
pub struct CopyBudget {
    bytes: u64,
    files: usize,
}

/// Copies a directory tree: regular files and directories, symlinks as
/// symlinks (never followed, so a link cannot pull in files from outside).
pub fn copy_tree(src: &Path, dest: &Path, budget: &mut CopyBudget) -> io::Result<()> {
    fs::create_dir_all(dest)?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let to = dest.join(entry.file_name());
        budget.files += 1;
        if budget.files > MAX_CODE_FILES {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("more than {MAX_CODE_FILES} files"),
            ));
        }
        if ty.is_dir() {
            copy_tree(&entry.path(), &to, budget)?;
        } else if ty.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path())?, &to)?;
        } else if ty.is_file() {
            budget.bytes += fs::copy(entry.path(), &to)?;
            if budget.bytes > MAX_CODE_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::FileTooLarge,
                    format!("more than {MAX_CODE_BYTES} bytes"),
                ));
            }
        }
    }
    Ok(())
}

/// Makes a tree read-only (executables stay executable).
pub fn seal_tree(root: &Path) -> io::Result<()> {
    set_tree_mode(root, |is_dir, mode| {
        if is_dir || mode & 0o111 != 0 {
            0o555
        } else {
            0o444
        }
    })
}

/// Removes a tree made read-only by [`seal_tree`].
pub fn remove_tree(root: &Path) -> io::Result<()> {
    if !root.exists() {
        return Ok(());
    }
    set_tree_mode(root, |is_dir, mode| if is_dir { 0o755 } else { mode })?;
    fs::remove_dir_all(root)
}

fn set_tree_mode(root: &Path, mode: impl Fn(bool, u32) -> u32 + Copy) -> io::Result<()> {
    let meta = fs::symlink_metadata(root)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let is_dir = meta.is_dir();
    if is_dir {
        // Open the directory before sealing it, so reading works as non-root too.
        fs::set_permissions(root, fs::Permissions::from_mode(0o755))?;
        for entry in fs::read_dir(root)? {
            set_tree_mode(&entry?.path(), mode)?;
        }
    }
    fs::set_permissions(
        root,
        fs::Permissions::from_mode(mode(is_dir, meta.permissions().mode())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_programs_resolve_on_the_platform_path() {
        let sh = resolve_program("sh");
        assert!(sh.starts_with('/') && sh.ends_with("/sh"), "{sh}");
        assert_eq!(resolve_program("./relative/bin"), "./relative/bin");
        assert_eq!(
            resolve_program("no-such-program-here"),
            "no-such-program-here"
        );
    }

    #[test]
    fn copy_is_read_only_and_removable() {
        let base = std::env::temp_dir().join(format!("levee-sandbox-test-{}", std::process::id()));
        let src = base.join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/a.txt"), "hello").unwrap();
        fs::write(src.join("run.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();
        let dest = base.join("dest");
        copy_tree(&src, &dest, &mut CopyBudget::default()).unwrap();
        seal_tree(&dest).unwrap();
        assert_eq!(fs::read_to_string(dest.join("sub/a.txt")).unwrap(), "hello");
        let mode = |p: &str| fs::metadata(dest.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("sub/a.txt"), 0o444);
        assert_eq!(mode("run.sh"), 0o555);
        assert_eq!(mode("sub"), 0o555);
        assert!(fs::symlink_metadata(dest.join("link"))
            .unwrap()
            .file_type()
            .is_symlink());
        remove_tree(&base).unwrap();
        assert!(!base.exists());
    }

    #[test]
    fn copy_stops_at_the_file_budget() {
        let base = std::env::temp_dir().join(format!("levee-budget-test-{}", std::process::id()));
        fs::create_dir_all(base.join("src")).unwrap();
        fs::write(base.join("src/a"), "x").unwrap();
        let mut budget = CopyBudget {
            bytes: 0,
            files: MAX_CODE_FILES,
        };
        let err = copy_tree(&base.join("src"), &base.join("dest"), &mut budget).unwrap_err();
        assert!(err.to_string().contains("files"), "{err}");
        remove_tree(&base).unwrap();
    }
}
