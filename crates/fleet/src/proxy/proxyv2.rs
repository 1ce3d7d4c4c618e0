//! The PROXY protocol version 2 header (binary form, haproxy's proxy-protocol.txt §2.2):
//! sent first on each upstream connection when a service sets `proxy_protocol = true`, so
//! the instance learns the client's address instead of seeing the proxy's.

use std::net::{IpAddr, SocketAddr};

/// The 12-byte signature every v2 header starts with.
pub const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// The header of a relayed TCP connection from `src` (the client) to `dst` (the address
/// the client connected to). Mixed families are sent as IPv6 (IPv4-mapped).
pub fn proxy_header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut h = Vec::with_capacity(16 + 36);
    h.extend_from_slice(&SIGNATURE);
    h.push(0x21); // version 2, PROXY
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            h.push(0x11); // AF_INET, STREAM
            h.extend_from_slice(&12u16.to_be_bytes());
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            h.push(0x21); // AF_INET6, STREAM
            h.extend_from_slice(&36u16.to_be_bytes());
            h.extend_from_slice(&v6(s).octets());
            h.extend_from_slice(&v6(d).octets());
        }
    }
    h.extend_from_slice(&src.port().to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h
}

/// The header of a connection the proxy makes on its own behalf (health checks): command
/// LOCAL, no addresses; the receiver uses the connection's real endpoints.
pub fn local_header() -> Vec<u8> {
    let mut h = Vec::with_capacity(16);
    h.extend_from_slice(&SIGNATURE);
    h.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp4_layout() {
        let h = proxy_header(
            "10.1.2.3:40000".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
        );
        assert_eq!(h.len(), 28);
        assert_eq!(&h[..12], &SIGNATURE);
        assert_eq!(&h[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(&h[16..20], &[10, 1, 2, 3]);
        assert_eq!(&h[20..24], &[127, 0, 0, 1]);
        assert_eq!(&h[24..26], &40000u16.to_be_bytes());
        assert_eq!(&h[26..28], &8080u16.to_be_bytes());
    }

    #[test]
    fn tcp6_and_local() {
        let h = proxy_header("[::1]:1".parse().unwrap(), "10.0.0.1:2".parse().unwrap());
        assert_eq!(h.len(), 16 + 36);
        assert_eq!(&h[12..16], &[0x21, 0x21, 0, 36]);
        assert_eq!(h[16 + 15], 1);
        assert_eq!(&h[16 + 16 + 10..16 + 16 + 16], &[0xff, 0xff, 10, 0, 0, 1]);
        assert_eq!(local_header()[12..], [0x20, 0, 0, 0]);
    }
}
