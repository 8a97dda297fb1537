//! Process sandbox: how one instance's process is started and torn down.
//!
//! Owns the instance's identity and view of the machine. With
//! `isolation = "namespaces"` (the default) each instance gets a uid of its
//! own, new pid, mount, net, ipc, uts and cgroup namespaces, a read-only
//! root showing `/usr`, its code at `/var/task` and what its runtime needs,
//! a private `/tmp` tmpfs, a seccomp filter, and a network holding only its
//! own Runtime API (see [`jail`], [`netns`], [`seccomp`]). With `"none"` it
//! runs as the server's user with a private `/tmp` directory. Either way it
//! gets a clean environment, memory and pids limits (cgroup v1 where
//! writable, else rlimits) and its own process group. It must never decide
//! *when* to start or kill an instance; the scheduler does that.

mod cgroup;
mod egress;
mod jail;
mod needs;
mod netlink;
mod netns;
mod seccomp;
mod uids;
mod userns;

use std::ffi::OsString;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use levee_config::{Function, Isolation, Network, Server};

pub use cgroup::PIDS_MAX;
use cgroup::{CgroupRoots, InstanceCgroup};
pub use jail::exposes;
pub use needs::{resolve as resolve_needs, Needs};

/// Largest code directory staged (Lambda's unzipped deployment limit).
pub const MAX_CODE_BYTES: u64 = 250 * 1024 * 1024;
/// Most files in a code directory; bounds the staging copy.
pub const MAX_CODE_FILES: usize = 20_000;
/// Open files per instance (Lambda's limit).
pub const NOFILE_MAX: u64 = 1024;
/// The region reported to functions; SDKs inside functions need one.
pub const REGION: &str = "us-east-1";

const PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// Where an isolated instance finds its Runtime API, as on Lambda.
const ISOLATED_API: SocketAddrV4 =
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, levee_config::RUNTIME_API_PORT);

/// The shell script that holds a prepared process at the gate: it waits for
/// one line on stdin (the go signal) and then becomes the function's
/// command; EOF instead means the standby is discarded. `$0` is the
/// function's program and `$@` its arguments.
const GATE: &str = "read -r _ || exit 0; exec \"$0\" \"$@\"";
/// The shell that runs [`GATE`].
const SHELL: &str = "/bin/sh";

/// Where instance limits are enforced (cgroup v1 if this process may create
/// groups under the memory and pids hierarchies, otherwise rlimits), and
/// how instances are isolated.
#[derive(Debug, Clone)]
pub struct Sandbox {
    cgroups: Option<CgroupRoots>,
    instances_dir: PathBuf,
    spawner: Spawner,
    jail: Option<Arc<JailSetup>>,
}

/// What every isolated instance shares: the empty directory each mounts its
/// own root over, the uid pool, the compiled seccomp filters.
#[derive(Debug)]
struct JailSetup {
    root: PathBuf,
    /// How instances get their identity.
    kind: JailKind,
    uids: uids::UidPool,
    /// Made at start when a function asks for `network = "egress"`.
    egress: Option<egress::Egress>,
    filters: Arc<seccomp::Filters>,
    last_cap: u32,
}

/// Root gives each instance a uid of its own and prepares its network and
/// pid namespaces on the spawner thread; an ordinary user's instances make
/// a user namespace of their own, mapping only Levee's uid (see [`userns`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JailKind {
    Root,
    UserNamespace,
}

/// A job for the spawner thread, which may enter fresh namespaces first.
type SpawnJob = Box<dyn FnOnce(Option<&netns::HostNamespaces>) + Send>;

/// Forks on one dedicated, long-lived thread. Three reasons: `fork` returns
/// only once the child has joined its cgroups, which on cgroup v1 can wait
/// tens of milliseconds for an RCU grace period, and that must not stall an
/// async worker; `PR_SET_PDEATHSIG` fires when the *thread* that forked
/// exits, so that thread must live as long as the server; and entering a
/// fresh net and pid namespace for each child changes the thread itself.
#[derive(Debug, Clone)]
struct Spawner {
    jobs: std::sync::mpsc::Sender<SpawnJob>,
}

impl Spawner {
    /// `fresh_namespaces`: the thread will enter fresh net and pid
    /// namespaces for its children (root isolation), so check it can now.
    fn new(fresh_namespaces: bool) -> io::Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let (jobs, queue) = std::sync::mpsc::channel::<SpawnJob>();
        let (ready_tx, ready) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("levee-spawner".into())
            .spawn(move || {
                // Children are reaped by the runtime's process driver.
                let _runtime = runtime.enter();
                let host = match fresh_namespaces.then(netns::HostNamespaces::of_this_thread) {
                    Some(Err(e)) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                    Some(Ok(host)) => Some(host),
                    None => None,
                };
                if let Some(host) = &host {
                    // Fail here, at start, rather than at the first instance.
                    if let Err(e) = host.enter_fresh() {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(()));
                for job in queue {
                    job(host.as_ref());
                }
            })?;
        ready
            .recv()
            .map_err(|_| io::Error::other("spawner thread did not start"))??;
        Ok(Self { jobs })
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(Option<&netns::HostNamespaces>) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let (reply, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |host| {
                let _ = reply.send(job(host));
            }))
            .map_err(|_| io::Error::other("spawner thread is gone"))?;
        result
            .await
            .map_err(|_| io::Error::other("spawner thread is gone"))?
    }
}

/// How instances can be isolated here, or why they cannot. Root isolates
/// with a uid per instance; anyone else needs user namespaces, tried once
/// in a throwaway child.
#[allow(unsafe_code)]
fn jail_kind() -> Result<JailKind, String> {
    // SAFETY: plain syscall with no arguments.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        return Ok(JailKind::Root);
    }
    let mut probe = std::process::Command::new("/bin/true");
    probe
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let plan = userns::UserPlan::new(Vec::new(), -1);
    // SAFETY: the closure only makes the syscalls of `UserPlan::probe`.
    unsafe {
        probe.pre_exec(move || plan.probe());
    }
    match probe.status() {
        Ok(status) if status.success() => Ok(JailKind::UserNamespace),
        Ok(status) => Err(format!(
            "Levee runs as uid {euid}, and the user-namespace probe exited with {status}"
        )),
        Err(e) => Err(format!(
            "Levee runs as uid {euid}, not root, and this machine refuses it a user namespace with the others inside ({e})"
        )),
    }
}

/// One line for `levee check`: which layers instances will get, or why
/// they cannot be had.
pub fn describe(server: &Server) -> Result<String, String> {
    match server.isolation {
        Isolation::None => Ok("isolation: none (instances run as this user, in its namespaces, with only memory, pids and file limits)".into()),
        Isolation::Namespaces => {
            let kind = jail_kind()?;
            seccomp::Filters::compile().map_err(|e| format!("seccomp: {e}"))?;
            let identity = match kind {
                JailKind::Root => format!(
                    "a uid per instance from {}..={}, no capabilities, no_new_privs; pid",
                    server.instance_uids.start(),
                    server.instance_uids.end()
                ),
                JailKind::UserNamespace => "without root: Levee's own uid in a user namespace per instance, no capabilities, no_new_privs; user, pid".into(),
            };
            Ok(format!(
                "isolation: namespaces ({identity}, mount, net, ipc, uts and cgroup namespaces; read-only root with /usr, /var/task and the runtime; private /tmp tmpfs; seccomp filter; no network but the Runtime API at {ISOLATED_API} and `forward` addresses)"
            ))
        }
    }
}

impl Sandbox {
    /// Probes cgroup v1 and, when isolating, namespaces and seccomp, once;
    /// with `egress`, makes the egress firewall. Groups live under
    /// `levee/<server pid>` so that two servers on one machine never share
    /// or remove each other's groups.
    pub fn new(server: &Server, egress: bool) -> Result<Self, crate::RuntimeError> {
        let data_dir = &server.data_dir;
        let io_err = |e: io::Error| crate::RuntimeError::Stage {
            function: "*".into(),
            path: data_dir.clone(),
            source: e,
        };
        let instances_dir = data_dir.join("instances");
        fs::create_dir_all(&instances_dir).map_err(io_err)?;
        let jail = match server.isolation {
            Isolation::None => None,
            Isolation::Namespaces => {
                let kind = jail_kind().map_err(crate::RuntimeError::Isolation)?;
                if kind == JailKind::UserNamespace {
                    tracing::warn!("not root: instances share Levee's uid, each in a user namespace of its own");
                }
                let filters = seccomp::Filters::compile()
                    .map_err(|e| crate::RuntimeError::Isolation(format!("seccomp: {e}")))?;
                let root = data_dir.join("root");
                fs::create_dir_all(&root).map_err(io_err)?;
                let egress = match (egress, kind) {
                    (false, _) => None,
                    (true, JailKind::Root) => {
                        Some(egress::Egress::start(&server.instance_uids).map_err(|e| {
                            crate::RuntimeError::Isolation(format!("network = \"egress\": {e}"))
                        })?)
                    }
                    (true, JailKind::UserNamespace) => {
                        return Err(crate::RuntimeError::Isolation(
                            "network = \"egress\" needs root (a veth pair and NAT per instance)"
                                .into(),
                        ))
                    }
                };
                Some(Arc::new(JailSetup {
                    root,
                    kind,
                    egress,
                    uids: uids::UidPool::new(server.instance_uids.clone()),
                    filters: Arc::new(filters),
                    last_cap: jail::last_cap(),
                }))
            }
        };
        let root_jail = jail.as_ref().is_some_and(|j| j.kind == JailKind::Root);
        let spawner = Spawner::new(root_jail).map_err(|e| {
            crate::RuntimeError::Isolation(format!("fresh network and pid namespaces: {e}"))
        })?;
        for hierarchy in cgroup::HIERARCHIES {
            cgroup::sweep_dead_servers(&Path::new(hierarchy).join("levee"));
        }
        let tag = format!("levee/{}", std::process::id());
        let memory = Path::new(cgroup::HIERARCHIES[0]).join(&tag);
        let pids = Path::new(cgroup::HIERARCHIES[1]).join(&tag);
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
            spawner,
            jail,
        })
    }

    /// Whether instances are isolated.
    pub fn isolated(&self) -> bool {
        self.jail.is_some()
    }

    /// Removes this server's cgroup roots; call after every instance stopped.
    pub fn close(&self) {
        if let Some(egress) = self.jail.as_ref().and_then(|j| j.egress.as_ref()) {
            egress.close();
        }
        if let Some(roots) = &self.cgroups {
            let _ = fs::remove_dir(&roots.memory);
            let _ = fs::remove_dir(&roots.pids);
        }
    }

    /// Takes the instance's uid, plans its root (or makes its `/tmp`
    /// directory when unisolated) and creates its cgroups. Blocking file
    /// I/O: run it off the async workers.
    pub fn prepare(&self, spec: &InstanceSpec<'_>) -> io::Result<Prepared> {
        let f = spec.function;
        let view = match &self.jail {
            Some(jail) => {
                let lease = match jail.kind {
                    JailKind::Root => Some(jail.uids.lease().ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::ResourceBusy,
                            "every uid in [server] instance_uids is held by a live instance",
                        )
                    })?),
                    JailKind::UserNamespace => None,
                };
                // SAFETY: plain syscall with no arguments.
                #[allow(unsafe_code)]
                let own_uid = unsafe { libc::geteuid() };
                let link = match (&jail.egress, &lease, f.network) {
                    (Some(egress), Some(lease), Network::Egress) => Some(egress.link(lease.uid)?),
                    _ => None,
                };
                let mut shown = spec.needs.paths.clone();
                shown.extend(f.runtime_paths.iter().cloned());
                if link.is_some() {
                    // Name servers, for an instance that can reach them.
                    shown.push(PathBuf::from("/etc/resolv.conf"));
                }
                let plan = jail::Plan::new(
                    &jail.root,
                    &jail::RootSpec {
                        staged_code: spec.staged_code,
                        uid: lease.as_ref().map_or(own_uid, |l| l.uid),
                        switch_ids: lease.is_some(),
                        tmp_bytes: f.ephemeral_storage_bytes,
                        runtime_paths: &shown,
                    },
                    jail.last_cap,
                    Arc::clone(&jail.filters),
                )?;
                View::Isolated {
                    plan: Box::new(plan),
                    lease,
                    link,
                }
            }
            None => {
                let dir = self.instances_dir.join(spec.instance_name);
                let _ = remove_tree(&dir);
                fs::create_dir_all(dir.join("tmp"))?;
                View::Shared {
                    task: spec.staged_code.to_path_buf(),
                    dir,
                }
            }
        };
        let cgroup = match &self.cgroups {
            Some(roots) => match InstanceCgroup::create(roots, spec.instance_name, f.memory_mb) {
                Ok(cg) => Some(cg),
                Err(e) => {
                    view.discard();
                    return Err(e);
                }
            },
            None => None,
        };
        Ok(Prepared {
            view,
            cgroup,
            spawner: self.spawner.clone(),
        })
    }
}

/// How the instance sees the machine.
#[derive(Debug)]
enum View {
    Isolated {
        plan: Box<jail::Plan>,
        /// Held until the instance is gone, process and cgroup (root only).
        lease: Option<uids::Lease>,
        /// `network = "egress"`: its veth pair, made once it is spawned.
        link: Option<egress::Link>,
    },
    /// Unisolated: the staged code in place, and `dir/tmp` as `/tmp`.
    Shared { task: PathBuf, dir: PathBuf },
}

impl View {
    fn discard(self) {
        if let View::Shared { dir, .. } = self {
            let _ = remove_tree(&dir);
        }
    }
}

/// An instance's view and cgroups, ready for its process.
#[derive(Debug)]
pub struct Prepared {
    view: View,
    cgroup: Option<InstanceCgroup>,
    spawner: Spawner,
}

impl Prepared {
    /// Starts the process *at the gate*: inside its cgroups and namespaces,
    /// with its environment, but running a shell that waits for one line on
    /// stdin before it `exec`s the function's command (see [`open_gate`]).
    /// Everything slow about a cold start happens here, so a standby can be
    /// prepared ahead of demand.
    pub async fn spawn(self, spec: &InstanceSpec<'_>) -> io::Result<Spawned> {
        let f = spec.function;
        let Prepared {
            view,
            cgroup,
            spawner,
        } = self;
        let host_program = &f.command[0];
        let shared_api = match &view {
            View::Shared { .. } => Some(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))),
            View::Isolated { .. } => None,
        };
        let checked = check_executable(Path::new(host_program)).and_then(|()| match shared_api {
            Some(bound) => bound.map(Some),
            None => Ok(None),
        });
        let shared_api = match checked {
            Ok(api) => api,
            Err(e) => {
                discard(view, cgroup);
                return Err(e);
            }
        };
        let (api_addr, task, tmp) = match (&view, &shared_api) {
            (View::Shared { task, dir }, Some(api)) => {
                (api.local_addr()?, task.clone(), dir.join("tmp"))
            }
            _ => (
                SocketAddr::V4(ISOLATED_API),
                PathBuf::from("/var/task"),
                PathBuf::from("/tmp"),
            ),
        };
        let mut cmd = std::process::Command::new(SHELL);
        cmd.arg("-c")
            .arg(GATE)
            .arg(&spec.needs.program)
            .args(&f.command[1..])
            .current_dir(match &view {
                View::Shared { task, .. } => task.as_path(),
                // The child changes into /var/task once its root is built.
                View::Isolated { .. } => Path::new("/"),
            })
            .env_clear()
            .envs(instance_env(spec, api_addr, &task, &tmp))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let memory_bytes = u64::from(f.memory_mb) * 1024 * 1024;
        let join_fds: Vec<i32> = cgroup
            .as_ref()
            .map(|c| c.join_files.iter().map(|f| f.as_raw_fd()).collect())
            .unwrap_or_default();
        let (plan, lease, link, shared_dir) = match view {
            View::Isolated { plan, lease, link } => (Some(plan), lease, Some(link), None),
            View::Shared { dir, .. } => (None, None, None, Some(dir)),
        };
        let launch = Launch {
            cmd,
            join_fds,
            memory_bytes,
            plan,
            forwards: f.forward.clone(),
            link: link.flatten(),
        };
        let rootless = lease.is_none();
        let started = spawner
            .run(move |host| match (launch.plan.is_some(), host) {
                (false, _) => launch.shared(),
                (true, _) if rootless => launch.rootless(),
                (true, Some(host)) => launch.root(host),
                (true, None) => Err(io::Error::other("spawner has no namespaces")),
            })
            .await;
        match started {
            Ok(Started {
                mut child,
                api,
                forwards,
                link,
            }) => Ok(Spawned {
                pgid: child.id().map(|p| p as i32).unwrap_or(0),
                gate: child.stdin.take(),
                child,
                cgroup: cgroup.map(InstanceCgroup::close_join_files),
                dir: shared_dir,
                api: api.or(shared_api),
                forwards,
                lease,
                link,
            }),
            Err(e) => {
                if let Some(cg) = cgroup {
                    cg.remove();
                }
                if let Some(dir) = shared_dir {
                    let _ = remove_tree(&dir);
                }
                drop(lease);
                Err(e)
            }
        }
    }
}

/// Everything the spawner thread needs to start one child.
struct Launch {
    cmd: std::process::Command,
    join_fds: Vec<i32>,
    memory_bytes: u64,
    plan: Option<Box<jail::Plan>>,
    forwards: Vec<SocketAddr>,
    link: Option<egress::Link>,
}

/// A started child and the listeners bound where it can reach them.
struct Started {
    child: tokio::process::Child,
    api: Option<TcpListener>,
    forwards: Vec<(TcpListener, SocketAddr)>,
    link: Option<egress::Link>,
}

impl Launch {
    /// Unisolated: the child in the host's namespaces.
    fn shared(mut self) -> io::Result<Started> {
        pre_exec(&mut self.cmd, self.join_fds, self.memory_bytes, None);
        Ok(Started {
            child: spawn_child(self.cmd)?,
            api: None,
            forwards: Vec::new(),
            link: None,
        })
    }

    /// Root: the thread enters fresh net and pid namespaces, makes the
    /// egress link and binds the listeners there, forks, and returns.
    fn root(mut self, host: &netns::HostNamespaces) -> io::Result<Started> {
        let fresh = host.enter_fresh()?;
        if let Some(link) = &self.link {
            link.create_inside(host.net_fd())?;
        }
        let api = TcpListener::bind(ISOLATED_API)?;
        let forwards = self
            .forwards
            .iter()
            .map(|&addr| TcpListener::bind(addr).map(|l| (l, addr)))
            .collect::<io::Result<Vec<_>>>()?;
        pre_exec(
            &mut self.cmd,
            self.join_fds,
            self.memory_bytes,
            self.plan.map(|plan| (plan, None)),
        );
        let child = spawn_child(self.cmd)?;
        drop(fresh);
        if let Some(link) = &self.link {
            // The child waits at its gate; on failure dropping it kills it.
            link.create_host_side()?;
        }
        Ok(Started {
            child,
            api: Some(api),
            forwards,
            link: self.link,
        })
    }

    /// Without root: the child makes its own namespaces and hands its
    /// listeners back (see [`userns`]).
    fn rootless(mut self) -> io::Result<Started> {
        let (handoff, theirs) = userns::handoff_pair()?;
        let mut wanted = vec![ISOLATED_API];
        // `forward` addresses are IPv4 loopback (checked at load).
        wanted.extend(self.forwards.iter().filter_map(|a| match a {
            SocketAddr::V4(v4) => Some(*v4),
            SocketAddr::V6(_) => None,
        }));
        let count = wanted.len();
        let user = userns::UserPlan::new(wanted, theirs.as_raw_fd());
        pre_exec(
            &mut self.cmd,
            self.join_fds,
            self.memory_bytes,
            self.plan.map(|plan| (plan, Some(user))),
        );
        let child = spawn_child(self.cmd)?;
        drop(theirs);
        let mut listeners = handoff.receive(count)?.into_iter();
        let api = listeners.next();
        Ok(Started {
            child,
            api,
            forwards: listeners.zip(self.forwards).collect(),
            link: None,
        })
    }
}

/// A raw syscall's result as an `io::Result`; allocation-free, for the
/// steps between fork and exec.
fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn discard(view: View, cgroup: Option<InstanceCgroup>) {
    if let Some(cg) = cgroup {
        cg.remove();
    }
    view.discard();
}

fn spawn_child(cmd: std::process::Command) -> io::Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    cmd.spawn()
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

/// What to start: read by [`Sandbox::prepare`] and [`Prepared::spawn`].
#[derive(Debug)]
pub struct InstanceSpec<'a> {
    /// The function's configuration.
    pub function: &'a Function,
    /// What its command needs (see [`resolve_needs`]).
    pub needs: &'a Needs,
    /// Unique per server: names the instance's log stream and cgroups.
    pub instance_name: &'a str,
    /// The function's staged code, shown at `/var/task`.
    pub staged_code: &'a Path,
    /// `on-demand` or `provisioned-concurrency`.
    pub init_type: &'static str,
}

fn instance_env(
    spec: &InstanceSpec<'_>,
    runtime_api: SocketAddr,
    task: &Path,
    tmp: &Path,
) -> Vec<(OsString, OsString)> {
    let f = spec.function;
    let mut dirs: Vec<String> = Vec::new();
    if let Some(parent) = Path::new(&spec.needs.program)
        .parent()
        .filter(|p| p.is_absolute())
    {
        dirs.push(parent.display().to_string());
    }
    dirs.extend(spec.needs.path_dirs.iter().map(|d| d.display().to_string()));
    dirs.push(PATH.to_string());
    // `YYYY/MM/DD` in UTC, as in Lambda log stream names.
    let day = chrono::Utc::now().format("%Y/%m/%d");
    let mut env: Vec<(OsString, OsString)> = vec![
        (
            "AWS_LAMBDA_RUNTIME_API".into(),
            runtime_api.to_string().into(),
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
        ("PATH".into(), dirs.join(":").into()),
        ("HOME".into(), tmp.into()),
        ("TMPDIR".into(), tmp.into()),
    ];
    env.extend(f.env.iter().map(|(k, v)| (k.into(), v.into())));
    env
}

/// The child's steps between fork and exec, in order: join the cgroups
/// (before any byte is allocated, and before the cgroup namespace), without
/// root make the user namespace, build and enter the root, cap open files,
/// then become the instance.
#[allow(unsafe_code)]
fn pre_exec(
    cmd: &mut std::process::Command,
    join_fds: Vec<i32>,
    memory_bytes: u64,
    jail: Option<(Box<jail::Plan>, Option<userns::UserPlan>)>,
) {
    // SAFETY: the closure runs between fork and exec, so it only makes
    // async-signal-safe calls (write, mount, setrlimit, prctl, ...) on values
    // prepared before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for fd in &join_fds {
                if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some((plan, user)) = &jail {
                if let Some(user) = user {
                    user.enter()?;
                }
                plan.enter_root()?;
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
            match &jail {
                Some((plan, _)) => plan.become_instance(),
                None => {
                    // Die with the server, even on kill -9, instead of lingering.
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                }
            }
        });
    }
}

/// A running instance process and what must be cleaned up after it.
#[derive(Debug)]
pub struct Spawned {
    /// The process (leader of its own process group; when isolated, the
    /// init of its pid namespace, whose death takes every process in it).
    pub child: tokio::process::Child,
    /// The gate's stdin; see [`open_gate`].
    gate: Option<tokio::process::ChildStdin>,
    pgid: i32,
    cgroup: Option<InstanceCgroup>,
    /// Unisolated: the instance's directory (its `/tmp`).
    dir: Option<PathBuf>,
    /// The Runtime API listener, bound where the instance can reach it.
    api: Option<TcpListener>,
    /// `forward` listeners inside the instance's network, with the host
    /// address each stands for.
    forwards: Vec<(TcpListener, SocketAddr)>,
    lease: Option<uids::Lease>,
    link: Option<egress::Link>,
}

impl Spawned {
    /// Takes the gate, to be opened later with [`open_gate`].
    pub fn take_gate(&mut self) -> Option<tokio::process::ChildStdin> {
        self.gate.take()
    }

    /// Takes the Runtime API listener (non-blocking once taken).
    pub fn take_api_listener(&mut self) -> io::Result<TcpListener> {
        let api = self
            .api
            .take()
            .ok_or_else(|| io::Error::other("the Runtime API listener was taken"))?;
        api.set_nonblocking(true)?;
        Ok(api)
    }

    /// Takes the `forward` listeners.
    pub fn take_forwards(&mut self) -> Vec<(TcpListener, SocketAddr)> {
        std::mem::take(&mut self.forwards)
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

    /// Kills what is left and removes the instance's directories and
    /// cgroups; only then is its uid free for another instance.
    pub async fn teardown(mut self) {
        self.kill();
        let _ = self.child.wait().await;
        let dir = self.dir.take();
        let cgroup = self.cgroup.take();
        let lease = self.lease.take();
        let link = self.link.take();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(cg) = cgroup {
                cg.remove();
            }
            if let Some(link) = link {
                link.remove();
            }
            if let Some(dir) = dir {
                let _ = remove_tree(&dir);
            }
            drop(lease);
        })
        .await;
    }
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
