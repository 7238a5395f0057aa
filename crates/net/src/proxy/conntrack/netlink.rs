//! Just enough ctnetlink (`NETLINK_NETFILTER`, subsystem
//! `NFNL_SUBSYS_CTNETLINK`) to dump the IPv4 conntrack table and delete
//! entries by their original tuple. A message is an `nlmsghdr`, an
//! `nfgenmsg` and netlink attributes (type, length, value padded to 4
//! bytes; nested attributes carry `NLA_F_NESTED`), with the tuple's
//! numbers in network order, as in `linux/netfilter/nfnetlink_conntrack.h`.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::Entry;

const NETLINK_NETFILTER: libc::c_int = 12;
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_MULTI: u16 = 0x2;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;

const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

// enum ctattr_type
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_ZONE: u16 = 18;
// enum ctattr_tuple
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
// enum ctattr_ip
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
// enum ctattr_l4proto
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

const HEADER: usize = 16;

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// A message being built: header, nfgenmsg, attributes.
struct Message {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Message {
    fn new(cmd: u16, flags: u16, seq: u32) -> Message {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
        buf.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | cmd).to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
                                                    // nfgenmsg: family, version NFNETLINK_V0, resource id 0.
        buf.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0]);
        Message {
            buf,
            nests: Vec::new(),
        }
    }

    fn attr(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let len = 4 + value.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    fn begin(&mut self, kind: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    fn end(&mut self) -> &mut Self {
        let start = self.nests.pop().expect("begin before end");
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// The request for a dump of the IPv4 table.
pub fn dump_request(seq: u32) -> Vec<u8> {
    Message::new(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, seq).finish()
}

/// The request deleting `e` by its original tuple (and zone).
pub fn delete_request(seq: u32, e: &Entry) -> Vec<u8> {
    let mut m = Message::new(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq);
    m.begin(CTA_TUPLE_ORIG)
        .begin(CTA_TUPLE_IP)
        .attr(CTA_IP_V4_SRC, &e.src.octets())
        .attr(CTA_IP_V4_DST, &e.dst.octets())
        .end()
        .begin(CTA_TUPLE_PROTO)
        .attr(CTA_PROTO_NUM, &[e.proto])
        .attr(CTA_PROTO_SRC_PORT, &e.sport.to_be_bytes())
        .attr(CTA_PROTO_DST_PORT, &e.dport.to_be_bytes())
        .end()
        .end();
    if let Some(zone) = e.zone {
        m.attr(CTA_ZONE, &zone.to_be_bytes());
    }
    m.finish()
}

/// The attributes in `buf`: (type without flags, value).
fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return None;
        }
        let value = &buf[4..len];
        buf = &buf[align(len).min(buf.len())..];
        Some((kind, value))
    })
}

fn find(buf: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(buf).find(|(k, _)| *k == kind).map(|(_, v)| v)
}

fn v4(buf: &[u8]) -> Option<Ipv4Addr> {
    let b: [u8; 4] = buf.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

fn be16(buf: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(buf.try_into().ok()?))
}

/// (proto, src, dst, sport, dport) of a CTA_TUPLE_* value; ports are 0
/// for protocols without them.
fn tuple(buf: &[u8]) -> Option<(u8, Ipv4Addr, Ipv4Addr, u16, u16)> {
    let ip = find(buf, CTA_TUPLE_IP)?;
    let proto = find(buf, CTA_TUPLE_PROTO)?;
    Some((
        *find(proto, CTA_PROTO_NUM)?.first()?,
        v4(find(ip, CTA_IP_V4_SRC)?)?,
        v4(find(ip, CTA_IP_V4_DST)?)?,
        find(proto, CTA_PROTO_SRC_PORT).and_then(be16).unwrap_or(0),
        find(proto, CTA_PROTO_DST_PORT).and_then(be16).unwrap_or(0),
    ))
}

/// The entry in the attributes of a conntrack message (after nfgenmsg);
/// None for what is not an IPv4 entry.
pub fn parse_entry(buf: &[u8]) -> Option<Entry> {
    let (proto, src, dst, sport, dport) = tuple(find(buf, CTA_TUPLE_ORIG)?)?;
    let (_, reply_src, ..) = tuple(find(buf, CTA_TUPLE_REPLY)?)?;
    let zone = find(buf, CTA_ZONE).and_then(be16).filter(|z| *z != 0);
    Some(Entry {
        proto,
        src,
        dst,
        sport,
        dport,
        reply_src,
        zone,
    })
}

/// One netlink message: its type, flags and payload.
pub struct Received<'a> {
    pub kind: u16,
    pub flags: u16,
    pub payload: &'a [u8],
}

/// The messages in one datagram.
pub fn messages(mut buf: &[u8]) -> impl Iterator<Item = Received<'_>> {
    std::iter::from_fn(move || {
        if buf.len() < HEADER {
            return None;
        }
        let len = u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize;
        if len < HEADER || len > buf.len() {
            return None;
        }
        let m = Received {
            kind: u16::from_ne_bytes([buf[4], buf[5]]),
            flags: u16::from_ne_bytes([buf[6], buf[7]]),
            payload: &buf[HEADER..len],
        };
        buf = &buf[align(len).min(buf.len())..];
        Some(m)
    })
}

/// The errno of an NLMSG_ERROR payload (0: an acknowledgement).
fn error_code(payload: &[u8]) -> i32 {
    payload
        .get(0..4)
        .map(|b| -i32::from_ne_bytes(b.try_into().unwrap()))
        .unwrap_or(libc::EIO)
}

/// A ctnetlink socket (needs CAP_NET_ADMIN).
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Socket {
    /// Opens and binds the socket; a receive timeout bounds every wait.
    pub fn open() -> io::Result<Socket> {
        // SAFETY: plain socket calls on a descriptor we own; the structs
        // passed are fully initialised and outlive the calls.
        unsafe {
            let fd = libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            );
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(fd);
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            if libc::bind(
                fd.as_raw_fd(),
                &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            ) < 0
            {
                return Err(io::Error::last_os_error());
            }
            let timeout = libc::timeval {
                tv_sec: 5,
                tv_usec: 0,
            };
            if libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &timeout as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            ) < 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(Socket {
                fd,
                seq: 0,
                buf: vec![0; 1 << 16],
            })
        }
    }

    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: msg is a valid buffer of msg.len() bytes.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                msg.as_ptr() as *const libc::c_void,
                msg.len(),
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one datagram into the buffer; returns its length.
    fn recv(&mut self) -> io::Result<usize> {
        // SAFETY: self.buf is a valid, writable buffer of its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                self.buf.as_mut_ptr() as *mut libc::c_void,
                self.buf.len(),
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Every IPv4 entry of the table.
    pub fn dump(&mut self) -> io::Result<Vec<Entry>> {
        let seq = self.next_seq();
        self.send(&dump_request(seq))?;
        let mut out = Vec::new();
        loop {
            let n = self.recv()?;
            for m in messages(&self.buf[..n]) {
                match m.kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let code = error_code(m.payload);
                        if code != 0 {
                            return Err(io::Error::from_raw_os_error(code));
                        }
                    }
                    k if k == (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW => {
                        if let Some(e) = m.payload.get(4..).and_then(parse_entry) {
                            out.push(e);
                        }
                    }
                    _ => {}
                }
                if m.flags & NLM_F_MULTI == 0 && m.kind != NLMSG_ERROR {
                    return Ok(out);
                }
            }
        }
    }

    /// Deletes `e`; false when it was already gone.
    pub fn delete(&mut self, e: &Entry) -> io::Result<bool> {
        let seq = self.next_seq();
        self.send(&delete_request(seq, e))?;
        loop {
            let n = self.recv()?;
            for m in messages(&self.buf[..n]) {
                if m.kind != NLMSG_ERROR {
                    continue;
                }
                return match error_code(m.payload) {
                    0 => Ok(true),
                    libc::ENOENT => Ok(false),
                    code => Err(io::Error::from_raw_os_error(code)),
                };
            }
        }
    }
}
