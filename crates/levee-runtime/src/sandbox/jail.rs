//! The root an isolated instance sees, and the steps that put it there.
//!
//! [`Plan::new`] decides everything before the fork (pure of I/O except
//! `lstat` of the host paths it shows); [`Plan::enter_root`] and
//! [`Plan::become_instance`] run in the child between fork and exec, so
//! they only make async-signal-safe syscalls on what the plan holds and
//! never allocate. The order matters and is documented in docs/ISOLATION.md;
//! this module must never decide which instance gets which uid.

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::check;
use super::seccomp::Filters;

/// The root's own tmpfs: directories, symlinks and three small files.
const ROOT_OPTIONS: &CStr = c"size=1m,nr_inodes=4096,mode=0755";
const HOSTNAME: &[u8] = b"localhost";
/// Host directories at `/` shown as they are (merged-/usr machines have
/// symlinks here, others directories).
const TOP_LEVEL: [&str; 6] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];
/// What `/etc` keeps of the host's: the loader's cache, `update-alternatives`
/// links (Debian's `awk` is one), CA certificates, name-service order, time zone.
const ETC_SHOWN: [&str; 6] = [
    "ld.so.cache",
    "alternatives",
    "ssl",
    "ca-certificates",
    "nsswitch.conf",
    "localtime",
];
const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

#[derive(Debug)]
enum Step {
    Dir(CString),
    Link {
        target: CString,
        at: CString,
    },
    File {
        at: CString,
        contents: Vec<u8>,
    },
    /// Bind `src` at `at` (an existing placeholder); read-only binds are
    /// also `nosuid,nodev`, and keep the flags `src`'s mount already has
    /// (inside a user namespace the kernel refuses to drop them).
    Bind {
        src: CString,
        at: CString,
        read_only: bool,
        kept: libc::c_ulong,
    },
    Tmpfs {
        at: CString,
        options: CString,
    },
}

/// What one instance's root is made of.
#[derive(Debug)]
pub(crate) struct RootSpec<'a> {
    pub staged_code: &'a Path,
    pub uid: u32,
    /// Take `uid` as the instance's (root); without root the ids stay
    /// Levee's own, mapped in the instance's user namespace.
    pub switch_ids: bool,
    pub tmp_bytes: u64,
    /// Host paths shown read-only at the same place.
    pub runtime_paths: &'a [PathBuf],
}

/// Everything the child needs, prepared before the fork.
#[derive(Debug)]
pub(crate) struct Plan {
    root: CString,
    /// `/proc` inside the root, as the host sees it before the pivot.
    proc_at: CString,
    steps: Vec<Step>,
    uid: u32,
    switch_ids: bool,
    last_cap: u32,
    filters: std::sync::Arc<Filters>,
}

fn c(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has a NUL byte", path.display()),
        )
    })
}

/// Builds the step list, creating each parent directory once.
struct Builder<'a> {
    root: &'a Path,
    steps: Vec<Step>,
    dirs: std::collections::HashSet<PathBuf>,
}

impl Builder<'_> {
    fn at(&self, inside: &Path) -> PathBuf {
        self.root.join(inside.strip_prefix("/").unwrap_or(inside))
    }

    fn dir(&mut self, inside: &Path) -> io::Result<()> {
        if inside == Path::new("/") || self.dirs.contains(inside) {
            return Ok(());
        }
        if let Some(parent) = inside.parent() {
            self.dir(parent)?;
        }
        self.dirs.insert(inside.to_path_buf());
        let at = c(&self.at(inside))?;
        self.steps.push(Step::Dir(at));
        Ok(())
    }

    fn parent(&mut self, inside: &Path) -> io::Result<()> {
        match inside.parent() {
            Some(parent) => self.dir(parent),
            None => Ok(()),
        }
    }

    fn file(&mut self, inside: &Path, contents: Vec<u8>) -> io::Result<()> {
        self.parent(inside)?;
        let at = c(&self.at(inside))?;
        self.steps.push(Step::File { at, contents });
        Ok(())
    }

    /// Shows host path `src` at `inside`: a symlink as the same symlink, a
    /// directory or file as a bind over a placeholder. Absent paths are skipped.
    fn show(&mut self, src: &Path, inside: &Path, read_only: bool) -> io::Result<()> {
        let Ok(meta) = std::fs::symlink_metadata(src) else {
            return Ok(());
        };
        if meta.file_type().is_symlink() {
            let target = c(&std::fs::read_link(src)?)?;
            self.parent(inside)?;
            let at = c(&self.at(inside))?;
            self.steps.push(Step::Link { target, at });
            return Ok(());
        }
        if meta.is_dir() {
            self.dir(inside)?;
        } else {
            self.file(inside, Vec::new())?;
        }
        let kept = mount_flags(src);
        let src = c(src)?;
        let at = c(&self.at(inside))?;
        self.steps.push(Step::Bind {
            src,
            at,
            read_only,
            kept,
        });
        Ok(())
    }

    fn link(&mut self, target: &str, inside: &Path) -> io::Result<()> {
        self.parent(inside)?;
        let at = c(&self.at(inside))?;
        self.steps.push(Step::Link {
            target: CString::new(target).map_err(|_| io::ErrorKind::InvalidInput)?,
            at,
        });
        Ok(())
    }
}

impl Plan {
    /// `root` is an empty host directory every instance mounts its own
    /// tmpfs over, inside its own mount namespace.
    pub(crate) fn new(
        root: &Path,
        spec: &RootSpec<'_>,
        last_cap: u32,
        filters: std::sync::Arc<Filters>,
    ) -> io::Result<Self> {
        let mut b = Builder {
            root,
            steps: Vec::with_capacity(48),
            dirs: Default::default(),
        };
        b.show(Path::new("/usr"), Path::new("/usr"), true)?;
        for name in TOP_LEVEL {
            let path = Path::new("/").join(name);
            b.show(&path, &path, true)?;
        }
        let etc = Path::new("/etc");
        b.dir(etc)?;
        let uid = spec.uid;
        b.file(
            &etc.join("passwd"),
            format!("root:x:0:0:root:/:/usr/sbin/nologin\nsbx_user:x:{uid}:{uid}::/tmp:/usr/sbin/nologin\n")
                .into_bytes(),
        )?;
        b.file(
            &etc.join("group"),
            format!("root:x:0:\nsbx_user:x:{uid}:\n").into_bytes(),
        )?;
        b.file(
            &etc.join("hosts"),
            b"127.0.0.1\tlocalhost\n::1\tlocalhost\n".to_vec(),
        )?;
        for name in ETC_SHOWN {
            b.show(&etc.join(name), &etc.join(name), true)?;
        }
        let dev = Path::new("/dev");
        b.dir(dev)?;
        for name in DEVICES {
            b.show(&dev.join(name), &dev.join(name), false)?;
        }
        b.link("/proc/self/fd", &dev.join("fd"))?;
        for (i, name) in ["stdin", "stdout", "stderr"].into_iter().enumerate() {
            b.link(&format!("/proc/self/fd/{i}"), &dev.join(name))?;
        }
        b.dir(Path::new("/proc"))?;
        let tmp = Path::new("/tmp");
        b.dir(tmp)?;
        let at = c(&b.at(tmp))?;
        b.steps.push(Step::Tmpfs {
            at,
            options: CString::new(format!("size={},mode=1777", spec.tmp_bytes))
                .map_err(|_| io::ErrorKind::InvalidInput)?,
        });
        b.show(spec.staged_code, Path::new("/var/task"), true)?;
        // Ancestors first, so a path inside one already shown is skipped
        // rather than made inside a read-only bind.
        let mut paths: Vec<&PathBuf> = spec.runtime_paths.iter().collect();
        paths.sort_by_key(|p| p.components().count());
        let mut shown: Vec<PathBuf> = vec!["/usr".into(), "/var/task".into()];
        let written = ["passwd", "group", "hosts"];
        shown.extend(ETC_SHOWN.iter().chain(&written).map(|name| etc.join(name)));
        for path in paths {
            if !shown.iter().any(|s| path.starts_with(s)) {
                b.show(path, path, true)?;
                shown.push(path.clone());
            }
        }
        Ok(Self {
            root: c(root)?,
            proc_at: c(&root.join("proc"))?,
            steps: b.steps,
            uid,
            switch_ids: spec.switch_ids,
            last_cap,
            filters,
        })
    }

    /// In the child: a mount namespace of its own (with IPC, UTS and cgroup
    /// ones beside it), the planned root built and pivoted into, a fresh
    /// `/proc`, `/` read-only and `/var/task` the working directory.
    /// Joining cgroups must come before, so `/proc/self/cgroup` shows `/`.
    #[allow(unsafe_code)]
    pub(crate) fn enter_root(&self) -> io::Result<()> {
        // SAFETY: raw syscalls between fork and exec on C strings the plan
        // owns; nothing here allocates.
        unsafe {
            // Without root they came with the user namespace.
            if self.switch_ids {
                check(libc::unshare(
                    libc::CLONE_NEWNS
                        | libc::CLONE_NEWIPC
                        | libc::CLONE_NEWUTS
                        | libc::CLONE_NEWCGROUP,
                ))?;
            }
            // No mount made from here on may reach the host.
            check(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            let tmpfs = c"tmpfs".as_ptr();
            check(libc::mount(
                tmpfs,
                self.root.as_ptr(),
                tmpfs,
                libc::MS_NOSUID | libc::MS_NODEV,
                ROOT_OPTIONS.as_ptr().cast(),
            ))?;
            for step in &self.steps {
                run(step)?;
            }
            // Before the old root goes: inside a user namespace the kernel
            // mounts a procfs only where one is already fully visible.
            check(libc::mount(
                c"proc".as_ptr(),
                self.proc_at.as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ))?;
            check(libc::chdir(self.root.as_ptr()))?;
            // pivot_root(".", "."): the old root ends up stacked under the
            // new one, and detaching it leaves nothing of the host behind.
            check(libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as i32)?;
            check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
            check(libc::chdir(c"/".as_ptr()))?;
            check(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REMOUNT
                    | libc::MS_BIND
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV,
                std::ptr::null(),
            ))?;
            check(libc::chdir(c"/var/task".as_ptr()))?;
            check(libc::sethostname(HOSTNAME.as_ptr().cast(), HOSTNAME.len()))?;
        }
        Ok(())
    }

    /// In the child, after every step that needs root: drops the whole
    /// capability bounding set, takes the instance's uid and gid with no
    /// supplementary groups, asks to die with the server (a credential
    /// change clears that wish, so it comes after), and installs the
    /// seccomp filters, last.
    #[allow(unsafe_code)]
    pub(crate) fn become_instance(&self) -> io::Result<()> {
        // SAFETY: raw syscalls between fork and exec; nothing here allocates.
        unsafe {
            for cap in 0..=self.last_cap {
                check(libc::prctl(
                    libc::PR_CAPBSET_DROP,
                    cap as libc::c_ulong,
                    0,
                    0,
                    0,
                ))?;
            }
            if self.switch_ids {
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setresgid(self.uid, self.uid, self.uid))?;
                check(libc::setresuid(self.uid, self.uid, self.uid))?;
            }
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
        }
        self.filters.install()
    }
}

#[allow(unsafe_code)]
fn run(step: &Step) -> io::Result<()> {
    // SAFETY: raw syscalls on C strings the plan owns; nothing allocates.
    unsafe {
        match step {
            Step::Dir(at) => {
                if libc::mkdir(at.as_ptr(), 0o755) != 0
                    && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
                {
                    return Err(io::Error::last_os_error());
                }
            }
            Step::Link { target, at } => check(libc::symlink(target.as_ptr(), at.as_ptr()))?,
            Step::File { at, contents } => {
                let fd = libc::open(
                    at.as_ptr(),
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                    0o644,
                );
                check(fd)?;
                let written = libc::write(fd, contents.as_ptr().cast(), contents.len());
                libc::close(fd);
                if written != contents.len() as isize {
                    return Err(io::Error::from_raw_os_error(libc::EIO));
                }
            }
            Step::Bind {
                src,
                at,
                read_only,
                kept,
            } => {
                check(libc::mount(
                    src.as_ptr(),
                    at.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ))?;
                if *read_only {
                    check(libc::mount(
                        std::ptr::null(),
                        at.as_ptr(),
                        std::ptr::null(),
                        libc::MS_REMOUNT
                            | libc::MS_BIND
                            | libc::MS_RDONLY
                            | libc::MS_NOSUID
                            | libc::MS_NODEV
                            | kept,
                        std::ptr::null(),
                    ))?;
                }
            }
            Step::Tmpfs { at, options } => {
                let tmpfs = c"tmpfs".as_ptr();
                check(libc::mount(
                    tmpfs,
                    at.as_ptr(),
                    tmpfs,
                    libc::MS_NOSUID | libc::MS_NODEV,
                    options.as_ptr().cast(),
                ))?;
            }
        }
    }
    Ok(())
}

/// The flags of the mount holding `path` that a read-only remount of a
/// bind of it must keep: `noexec` and the access-time ones.
#[allow(unsafe_code)]
fn mount_flags(path: &Path) -> libc::c_ulong {
    let Ok(p) = c(path) else {
        return 0;
    };
    // SAFETY: `statvfs` fills the zeroed struct it is given.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(p.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    [
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ]
    .iter()
    .filter(|(st_flag, _)| st.f_flag & st_flag != 0)
    .fold(0, |acc, (_, ms_flag)| acc | ms_flag)
}

/// The highest capability number this kernel knows.
pub(crate) fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Whether `path` would show anything of `secret` (the data directory):
/// binding it, or an ancestor of it, would.
pub fn exposes(path: &Path, secret: &Path) -> bool {
    let real = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    real(secret).starts_with(real(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binds(plan: &Plan) -> Vec<String> {
        plan.steps
            .iter()
            .filter_map(|s| match s {
                Step::Bind { at, .. } => Some(at.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_path_inside_one_already_shown_is_not_shown_again() {
        let base = std::env::temp_dir().join(format!("levee-jail-{}", std::process::id()));
        let layer = base.join("layer");
        std::fs::create_dir_all(layer.join("inner")).unwrap();
        let root = base.join("root");
        let plan = Plan::new(
            &root,
            &RootSpec {
                staged_code: &layer,
                uid: 200_000,
                switch_ids: true,
                tmp_bytes: 1 << 20,
                runtime_paths: &[
                    layer.join("inner"),
                    layer.clone(),
                    PathBuf::from("/etc/passwd"),
                    PathBuf::from("/usr/bin"),
                ],
            },
            40,
            std::sync::Arc::new(Filters::compile().unwrap()),
        )
        .unwrap();
        let binds = binds(&plan);
        let at = |p: &Path| {
            root.join(p.strip_prefix("/").unwrap())
                .to_string_lossy()
                .into_owned()
        };
        assert_eq!(
            binds.iter().filter(|b| **b == at(&layer)).count(),
            1,
            "{binds:?}"
        );
        assert!(!binds.contains(&at(&layer.join("inner"))), "{binds:?}");
        assert!(!binds.contains(&at(Path::new("/etc/passwd"))), "{binds:?}");
        assert!(!binds.contains(&at(Path::new("/usr/bin"))), "{binds:?}");
        assert!(binds.contains(&at(Path::new("/var/task"))), "{binds:?}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
