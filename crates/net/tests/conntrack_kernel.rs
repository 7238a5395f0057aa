//! `net::proxy::conntrack`'s ctnetlink client against the kernel: a UDP
//! flow on loopback shows up in the dump with its tuple, is deleted by
//! it, and is gone from the next dump; deleting it again says so. Needs
//! root (CAP_NET_ADMIN); skipped, saying why, without it.

use std::net::{Ipv4Addr, UdpSocket};

use net::proxy::conntrack::netlink::Socket;
use net::proxy::conntrack::{clear, Clear, Dst, Entry, Flow};
use net::proxy::model::Protocol;

fn find(entries: &[Entry], sport: u16, dport: u16) -> Option<&Entry> {
    entries
        .iter()
        .find(|e| e.proto == 17 && e.sport == sport && e.dport == dport)
}

#[test]
fn a_loopback_udp_flow_is_dumped_and_deleted() {
    let mut sock = match Socket::open() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("skipping: no ctnetlink socket here: {e}");
            return;
        }
    };
    if let Err(e) = sock.dump() {
        eprintln!("skipping: cannot dump the conntrack table: {e}");
        return;
    }
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (sport, dport) = (
        client.local_addr().unwrap().port(),
        server.local_addr().unwrap().port(),
    );
    client
        .send_to(b"ping", server.local_addr().unwrap())
        .unwrap();
    let mut buf = [0u8; 16];
    server.recv_from(&mut buf).unwrap();

    let entries = sock.dump().unwrap();
    let e = find(&entries, sport, dport)
        .unwrap_or_else(|| {
            panic!(
                "no entry for {sport} -> {dport} in {} entries",
                entries.len()
            )
        })
        .clone();
    let lo = Ipv4Addr::LOCALHOST;
    assert_eq!((e.src, e.dst, e.reply_src, e.zone), (lo, lo, lo, None));

    assert!(sock.delete(&e).unwrap(), "deleted");
    assert!(find(&sock.dump().unwrap(), sport, dport).is_none());
    assert!(!sock.delete(&e).unwrap(), "already gone");

    // The whole path: a flow to a "service" at the server's address and
    // port that keeps only some other endpoint is cleared; one that keeps
    // the address it went to (as if DNATed there) is not.
    client
        .send_to(b"again", server.local_addr().unwrap())
        .unwrap();
    server.recv_from(&mut buf).unwrap();
    let flow = Flow {
        protocol: Protocol::Udp,
        dst: Dst::Addr(lo, dport),
    };
    let keep_lo = Clear {
        flow,
        keep: [lo].into(),
    };
    assert_eq!(clear(&[keep_lo]).unwrap(), 0);
    assert!(find(&sock.dump().unwrap(), sport, dport).is_some());
    let keep_other = Clear {
        flow,
        keep: ["10.42.0.5".parse().unwrap()].into(),
    };
    assert_eq!(clear(&[keep_other]).unwrap(), 1);
    assert!(find(&sock.dump().unwrap(), sport, dport).is_none());
}
