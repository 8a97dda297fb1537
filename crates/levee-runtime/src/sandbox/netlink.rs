//! The few rtnetlink requests egress needs: make a veth pair with its peer
//! in another network namespace, address a link, bring it up, add a default
//! route, delete a link. Each request is sent on a `NETLINK_ROUTE` socket
//! opened in the calling thread's network namespace and waits for the
//! kernel's acknowledgement. Must never be given names or addresses from
//! outside Levee: it checks lengths, not intent.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;
/// `VETH_INFO_PEER` (linux/veth.h), not in libc.
const VETH_INFO_PEER: u16 = 1;
/// Largest acknowledgement read; an error ack echoes the request's header.
const ACK_MAX: usize = 1024;

/// A netlink socket in the namespace it was opened in.
pub(crate) struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

/// A request under construction: header, fixed part, attributes.
struct Message(Vec<u8>);

impl Message {
    fn new(kind: u16, flags: u16, fixed: &[u8]) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set in `finish`
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(
            &(flags | libc::NLM_F_REQUEST as u16 | libc::NLM_F_ACK as u16).to_ne_bytes(),
        );
        buf.extend_from_slice(&0u32.to_ne_bytes()); // sequence, set in `send`
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel
        buf.extend_from_slice(fixed);
        Self(buf)
    }

    fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Self {
        let len = 4 + data.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.pad();
        self
    }

    /// Opens a nested attribute; returns where its length goes.
    fn open(&mut self, kind: u16) -> usize {
        let at = self.0.len();
        self.0.extend_from_slice(&0u16.to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        at
    }

    fn close(&mut self, at: usize) {
        let len = (self.0.len() - at) as u16;
        self.0[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }
}

fn ifinfomsg(index: i32, flags: u32, change: u32) -> [u8; IFINFOMSG] {
    let mut m = [0u8; IFINFOMSG];
    m[0] = libc::AF_UNSPEC as u8;
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&change.to_ne_bytes());
    m
}

fn name(text: &str) -> io::Result<Vec<u8>> {
    if text.is_empty() || text.len() >= libc::IFNAMSIZ || text.contains('\0') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad link name"));
    }
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    Ok(bytes)
}

/// The index of link `text` in the calling thread's network namespace.
#[allow(unsafe_code)]
pub(crate) fn index(text: &str) -> io::Result<i32> {
    let c = std::ffi::CString::new(text).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: plain call with a NUL-terminated name.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i as i32),
    }
}

impl Netlink {
    #[allow(unsafe_code)]
    pub(crate) fn open() -> io::Result<Self> {
        // SAFETY: plain syscalls; the fd is owned at once; the address is a
        // zeroed `sockaddr_nl` with only its family set.
        unsafe {
            let fd = libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            );
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(fd);
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            let len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            if libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                len,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(Self { fd, seq: 0 })
        }
    }

    /// Sends `msg` and waits for its acknowledgement.
    #[allow(unsafe_code)]
    fn send(&mut self, mut msg: Message) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let len = msg.0.len() as u32;
        msg.0[0..4].copy_from_slice(&len.to_ne_bytes());
        msg.0[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        let mut ack = [0u8; ACK_MAX];
        // SAFETY: plain syscalls on this socket with live, sized buffers.
        unsafe {
            if libc::send(self.fd.as_raw_fd(), msg.0.as_ptr().cast(), msg.0.len(), 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = libc::recv(self.fd.as_raw_fd(), ack.as_mut_ptr().cast(), ack.len(), 0);
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if (n as usize) < NLMSG_HDR + 4 {
                return Err(io::Error::other("short netlink answer"));
            }
        }
        let kind = u16::from_ne_bytes([ack[4], ack[5]]);
        let errno = i32::from_ne_bytes([ack[16], ack[17], ack[18], ack[19]]);
        match (kind as i32, errno) {
            (libc::NLMSG_ERROR, 0) => Ok(()),
            (libc::NLMSG_ERROR, e) => Err(io::Error::from_raw_os_error(-e)),
            _ => Err(io::Error::other("unexpected netlink answer")),
        }
    }

    /// A veth pair: `here` in this namespace, `peer` in the namespace of
    /// `peer_ns` (an open `/proc/.../ns/net`).
    pub(crate) fn add_veth(&mut self, here: &str, peer: &str, peer_ns: RawFd) -> io::Result<()> {
        let create = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
        let mut msg = Message::new(libc::RTM_NEWLINK, create, &ifinfomsg(0, 0, 0));
        msg.attr(libc::IFLA_IFNAME, &name(here)?);
        let info = msg.open(libc::IFLA_LINKINFO);
        msg.attr(libc::IFLA_INFO_KIND, b"veth");
        let data = msg.open(libc::IFLA_INFO_DATA);
        let peer_at = msg.open(VETH_INFO_PEER);
        msg.0.extend_from_slice(&ifinfomsg(0, 0, 0));
        msg.attr(libc::IFLA_IFNAME, &name(peer)?);
        msg.attr(libc::IFLA_NET_NS_FD, &peer_ns.to_ne_bytes());
        msg.close(peer_at);
        msg.close(data);
        msg.close(info);
        self.send(msg)
    }

    pub(crate) fn set_up(&mut self, index: i32) -> io::Result<()> {
        let up = libc::IFF_UP as u32;
        self.send(Message::new(
            libc::RTM_NEWLINK,
            0,
            &ifinfomsg(index, up, up),
        ))
    }

    pub(crate) fn add_address(&mut self, index: i32, ip: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut fixed = [0u8; 8];
        fixed[0] = libc::AF_INET as u8;
        fixed[1] = prefix;
        fixed[4..8].copy_from_slice(&(index as u32).to_ne_bytes());
        let create = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
        let mut msg = Message::new(libc::RTM_NEWADDR, create, &fixed);
        msg.attr(libc::IFA_LOCAL, &ip.octets());
        msg.attr(libc::IFA_ADDRESS, &ip.octets());
        self.send(msg)
    }

    pub(crate) fn add_default_route(&mut self, gateway: Ipv4Addr) -> io::Result<()> {
        let fixed = [
            libc::AF_INET as u8,
            0, // destination length: the default route
            0,
            0,
            libc::RT_TABLE_MAIN,
            libc::RTPROT_BOOT,
            libc::RT_SCOPE_UNIVERSE,
            libc::RTN_UNICAST,
            0,
            0,
            0,
            0,
        ];
        let create = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
        let mut msg = Message::new(libc::RTM_NEWROUTE, create, &fixed);
        msg.attr(libc::RTA_GATEWAY, &gateway.octets());
        self.send(msg)
    }

    pub(crate) fn delete_link(&mut self, link: &str) -> io::Result<()> {
        let mut msg = Message::new(libc::RTM_DELLINK, 0, &ifinfomsg(0, 0, 0));
        msg.attr(libc::IFLA_IFNAME, &name(link)?);
        self.send(msg)
    }
}
