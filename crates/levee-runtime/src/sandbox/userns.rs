//! Isolation without root: the child makes a user namespace of its own.
//!
//! A multithreaded process cannot enter a new user namespace, so the
//! spawner thread cannot prepare one the way it prepares network and pid
//! namespaces for root. Instead the child, single-threaded after the fork,
//! creates the user namespace (one uid mapped: Levee's own), every other
//! namespace inside it, brings `lo` up, binds the Runtime API and `forward`
//! listeners in its new network, hands them to Levee over a socket pair
//! (`SCM_RIGHTS`), and forks once more so the instance is pid 1 of its pid
//! namespace; the middle process only waits and passes the exit status on.
//! Everything here runs between fork and exec: async-signal-safe syscalls on
//! values prepared before the fork, no allocation. It must never run in the
//! server's own process.

use std::ffi::CString;
use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::check;

/// Listeners one instance can hand over: its Runtime API and `forward`s.
pub(crate) const MAX_LISTENERS: usize = 1 + 16;

/// What the child needs to build its user namespace and listeners.
#[derive(Debug)]
pub(crate) struct UserPlan {
    uid_map: CString,
    gid_map: CString,
    /// Runtime API first, then each `forward`, in order.
    listeners: Vec<SocketAddrV4>,
    /// The child's end of the socket pair the listeners travel over.
    handoff: RawFd,
}

/// Levee's end of the hand-over: receives the child's listeners.
#[derive(Debug)]
pub(crate) struct Handoff {
    ours: OwnedFd,
}

/// A connected `AF_UNIX` datagram pair: (Levee's end, the child's end).
#[allow(unsafe_code)]
pub(crate) fn handoff_pair() -> io::Result<(Handoff, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: plain syscall writing two fds into a local array.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((Handoff { ours }, theirs))
}

impl UserPlan {
    /// Maps Levee's own uid and gid to themselves inside the namespace.
    #[allow(unsafe_code)]
    pub(crate) fn new(listeners: Vec<SocketAddrV4>, handoff: RawFd) -> Self {
        // SAFETY: plain syscalls with no arguments.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        Self {
            uid_map: CString::new(format!("{uid} {uid} 1\n")).unwrap_or_default(),
            gid_map: CString::new(format!("{gid} {gid} 1\n")).unwrap_or_default(),
            listeners,
            handoff,
        }
    }

    /// In a throwaway child: whether a user namespace with every other
    /// namespace inside it can be had here.
    #[allow(unsafe_code)]
    pub(crate) fn probe(&self) -> io::Result<()> {
        // SAFETY: raw syscalls between fork and exec; nothing allocates.
        unsafe { self.namespaces() }
    }

    #[allow(unsafe_code)]
    unsafe fn namespaces(&self) -> io::Result<()> {
        // SAFETY: the caller runs between fork and exec; plain syscalls.
        unsafe {
            check(libc::unshare(libc::CLONE_NEWUSER))?;
            write_file(c"/proc/self/setgroups", b"deny")?;
            write_file(c"/proc/self/uid_map", self.uid_map.as_bytes())?;
            write_file(c"/proc/self/gid_map", self.gid_map.as_bytes())?;
            check(libc::unshare(
                libc::CLONE_NEWNS
                    | libc::CLONE_NEWIPC
                    | libc::CLONE_NEWUTS
                    | libc::CLONE_NEWCGROUP
                    | libc::CLONE_NEWNET
                    | libc::CLONE_NEWPID,
            ))
        }
    }

    /// In the child: user namespace, then mount, IPC, UTS, cgroup, network
    /// and pid namespaces inside it; `lo` up; the listeners bound and handed
    /// over; then a second fork. Returns only in the grandchild, pid 1 of
    /// the new pid namespace; the middle process waits for it and exits
    /// with its status.
    #[allow(unsafe_code)]
    pub(crate) fn enter(&self) -> io::Result<()> {
        // SAFETY: raw syscalls between fork and exec; nothing allocates.
        unsafe {
            self.namespaces()?;
            super::netns::loopback_up()?;
            let mut fds = [-1; MAX_LISTENERS];
            let count = self.listeners.len().min(MAX_LISTENERS);
            for (fd, addr) in fds.iter_mut().zip(&self.listeners) {
                *fd = listen(*addr)?;
            }
            send_fds(self.handoff, &fds[..count])?;
            for fd in &fds[..count] {
                libc::close(*fd);
            }
            libc::close(self.handoff);
            // Die with the spawner thread, now that the credentials are set.
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
            let pid = libc::fork();
            if pid < 0 {
                return Err(io::Error::last_os_error());
            }
            if pid > 0 {
                wait_and_exit(pid);
            }
        }
        Ok(())
    }
}

impl Handoff {
    /// The listeners the child sent, in the order they were planned. They
    /// are queued before the child's second fork, so by the time `spawn`
    /// returns they are here or the child failed.
    #[allow(unsafe_code)]
    pub(crate) fn receive(&self, expected: usize) -> io::Result<Vec<std::net::TcpListener>> {
        let mut buffers = FdMessage::new();
        let mut msg = buffers.header();
        // SAFETY: msghdr points at `buffers`, which stays put; CMSG_* walk
        // only within its room; each received fd is taken once.
        unsafe {
            if libc::recvmsg(
                std::os::fd::AsRawFd::as_raw_fd(&self.ours),
                &mut msg,
                libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
            ) < 0
            {
                return Err(io::Error::last_os_error());
            }
            let mut listeners = Vec::with_capacity(expected);
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                    let len = (*cmsg).cmsg_len - libc::CMSG_LEN(0) as usize;
                    for i in 0..len / std::mem::size_of::<RawFd>() {
                        let fd = data.add(i).read_unaligned();
                        listeners.push(std::net::TcpListener::from_raw_fd(fd));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
            if listeners.len() != expected {
                return Err(io::Error::other(format!(
                    "the instance handed over {} of {expected} listeners",
                    listeners.len()
                )));
            }
            Ok(listeners)
        }
    }
}

#[allow(unsafe_code)]
unsafe fn write_file(path: &std::ffi::CStr, contents: &[u8]) -> io::Result<()> {
    // SAFETY: the caller runs between fork and exec; plain syscalls.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        check(fd)?;
        let written = libc::write(fd, contents.as_ptr().cast(), contents.len());
        let err = io::Error::last_os_error();
        libc::close(fd);
        if written != contents.len() as isize {
            return Err(err);
        }
    }
    Ok(())
}

/// A listening TCP socket on `addr` in the current network namespace.
#[allow(unsafe_code)]
unsafe fn listen(addr: SocketAddrV4) -> io::Result<RawFd> {
    // SAFETY: plain syscalls on a socket this function owns; the address is
    // a zeroed `sockaddr_in` with family, port and address set.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        check(fd)?;
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_port = addr.port().to_be();
        sin.sin_addr.s_addr = u32::from(*addr.ip()).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        if libc::bind(fd, (&sin as *const libc::sockaddr_in).cast(), len) != 0
            || libc::listen(fd, 1024) != 0
        {
            let err = io::Error::last_os_error();
            libc::close(fd);
            return Err(err);
        }
        Ok(fd)
    }
}

#[allow(unsafe_code)]
unsafe fn send_fds(socket: RawFd, fds: &[RawFd]) -> io::Result<()> {
    let mut buffers = FdMessage::new();
    let mut msg = buffers.header();
    // SAFETY: msghdr points at `buffers`, which stays put; the control
    // message holds `fds.len()` ≤ MAX_LISTENERS fds, which fits its room.
    unsafe {
        let data_len = std::mem::size_of_val(fds) as u32;
        msg.msg_controllen = libc::CMSG_SPACE(data_len) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(data_len) as usize;
        std::ptr::copy_nonoverlapping(
            fds.as_ptr(),
            libc::CMSG_DATA(cmsg).cast::<RawFd>(),
            fds.len(),
        );
        if libc::sendmsg(socket, &msg, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The buffers of one `SCM_RIGHTS` message: the byte of data a message
/// must carry, and room (256 bytes) for [`MAX_LISTENERS`] fds.
struct FdMessage {
    byte: [u8; 1],
    iov: libc::iovec,
    space: [u64; 32],
}

impl FdMessage {
    fn new() -> Self {
        Self {
            byte: [0],
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 1,
            },
            space: [0; 32],
        }
    }

    /// A header pointing into `self`, valid while `self` stays put; its
    /// control length is the whole room, for receiving.
    #[allow(unsafe_code)]
    fn header(&mut self) -> libc::msghdr {
        self.iov.iov_base = self.byte.as_mut_ptr().cast();
        // SAFETY: msghdr is plain data; zeroed is its empty value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut self.iov;
        msg.msg_iovlen = 1;
        msg.msg_control = self.space.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&self.space);
        msg
    }
}

/// The middle process: closes everything but the standard streams (so the
/// grandchild's `exec` alone tells Levee the spawn worked), waits for the
/// grandchild and exits as it did.
#[allow(unsafe_code)]
unsafe fn wait_and_exit(pid: libc::pid_t) -> ! {
    // SAFETY: plain syscalls; this process never returns to Rust code.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        let mut status = 0;
        loop {
            let r = libc::waitpid(pid, &mut status, 0);
            if r == pid {
                break;
            }
            if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                libc::_exit(1);
            }
        }
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status))
        }
        libc::_exit(128 + libc::WTERMSIG(status))
    }
}
