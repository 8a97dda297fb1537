//! Fresh network and pid namespaces for the next child of the spawner thread.
//!
//! The spawner thread enters a new net namespace (with `lo` up) and makes
//! its next child the init of a new pid namespace, binds the instance's
//! listeners there, forks, and returns to the host's namespaces. This way
//! the Runtime API lives inside the instance's own network at
//! 127.0.0.1:9001, with no proxy process and no extra hop. Must only ever
//! run on the spawner thread, and must always switch back: a second
//! `unshare(CLONE_NEWPID)` fails until the thread has returned.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// The spawner thread's own namespaces, to return to.
#[derive(Debug)]
pub(crate) struct HostNamespaces {
    net: File,
    pid: File,
}

/// While alive, the thread is in a fresh net namespace and its next child
/// starts a fresh pid namespace; dropping it switches back.
pub(crate) struct Fresh<'a> {
    host: &'a HostNamespaces,
}

impl HostNamespaces {
    pub(crate) fn of_this_thread() -> io::Result<Self> {
        Ok(Self {
            net: File::open("/proc/thread-self/ns/net")?,
            pid: File::open("/proc/thread-self/ns/pid_for_children")?,
        })
    }

    /// The host's network namespace, for a link whose end goes there.
    pub(crate) fn net_fd(&self) -> std::os::fd::RawFd {
        self.net.as_raw_fd()
    }

    #[allow(unsafe_code)]
    pub(crate) fn enter_fresh(&self) -> io::Result<Fresh<'_>> {
        // SAFETY: plain syscall; affects only the calling (spawner) thread.
        if unsafe { libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWPID) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let fresh = Fresh { host: self };
        loopback_up()?;
        Ok(fresh)
    }
}

impl Drop for Fresh<'_> {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        for (ns, kind) in [
            (&self.host.net, libc::CLONE_NEWNET),
            (&self.host.pid, libc::CLONE_NEWPID),
        ] {
            // SAFETY: plain syscall on a namespace fd this thread opened.
            if unsafe { libc::setns(ns.as_raw_fd(), kind) } != 0 {
                tracing::error!(
                    error = %io::Error::last_os_error(),
                    "spawner thread could not return to the host namespace"
                );
            }
        }
    }
}

/// Brings `lo` up in the calling thread's current net namespace; makes
/// only async-signal-safe syscalls, so a child may call it before `exec`.
#[allow(unsafe_code)]
pub(crate) fn loopback_up() -> io::Result<()> {
    // SAFETY: plain syscalls on a socket this function owns; `ifreq` is
    // zeroed and only its name and flags are read or written.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let mut result = Ok(());
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) != 0 {
            result = Err(io::Error::last_os_error());
        } else {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) != 0 {
                result = Err(io::Error::last_os_error());
            }
        }
        libc::close(fd);
        result
    }
}
