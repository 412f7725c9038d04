//! Port mapping asked of the home router, sans IO: the PCP (RFC 6887) and NAT-PMP (RFC 6886)
//! messages for a TCP mapping of our listening port, and when to renew it.
//!
//! Both protocols are one UDP datagram each way to the default gateway's port 5351. PCP is
//! asked first (a `MAP` request, 60 bytes, a random nonce that the answer must echo); a
//! gateway that speaks only NAT-PMP answers it with version 0 (unsupported version), and the
//! client then asks NAT-PMP for the external address and the mapping. Answers are parsed from
//! fixed offsets after a length check: anything short, of another opcode, nonce, protocol or
//! internal port is an error, never a panic, and PCP options after the 60 bytes are ignored
//! (a datagram is read into a buffer of [`MAX_DATAGRAM`] bytes). A mapping is renewed at half
//! its lifetime and deleted (lifetime 0) when the node stops. The driver is
//! `super::mapper`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// The port PCP and NAT-PMP servers listen on.
pub const SERVER_PORT: u16 = 5351;
/// The largest datagram read (PCP's maximum message size).
pub const MAX_DATAGRAM: usize = 1100;
/// The lifetime asked for, in seconds (RFC 6886 recommends two hours).
pub const LIFETIME_SECS: u32 = 7200;

const PCP_VERSION: u8 = 2;
const PCP_MAP: u8 = 1;
const PCP_RESPONSE: u8 = 0x80;
const PCP_LEN: usize = 60;
const TCP: u8 = 6;
const PMP_ADDRESS: u8 = 0;
const PMP_MAP_TCP: u8 = 2;
const PMP_RESPONSE: u8 = 128;

/// Why a gateway gave us no mapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortmapError {
    /// The datagram is not the answer we wait for (too short, another opcode, nonce, protocol
    /// or port).
    #[error("not an answer to our request: {0}")]
    Malformed(&'static str),
    /// The gateway speaks only NAT-PMP (a PCP request answered with version 0).
    #[error("the gateway does not speak PCP")]
    UnsupportedVersion,
    /// The gateway refused (the protocol's result code).
    #[error("the gateway refused the mapping (result code {0})")]
    Refused(u16),
    /// No answer after every retry.
    #[error("no answer from the gateway")]
    NoAnswer,
    /// No default gateway, or no socket towards it.
    #[error("no gateway: {0}")]
    NoGateway(String),
}

/// A mapping the gateway granted: its public address maps to our listening port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// The public address (the gateway's external address, the assigned port).
    pub external: SocketAddrV4,
    /// For how long, in seconds.
    pub lifetime: u32,
}

impl Mapping {
    /// When to renew a mapping granted at `granted`: at half its lifetime, not sooner than
    /// `floor` after it (a gateway granting a few seconds is not asked every second).
    pub fn renew_at(&self, granted: Instant, floor: Duration) -> Instant {
        granted + (Duration::from_secs(u64::from(self.lifetime)) / 2).max(floor)
    }

    /// When the mapping lapses if not renewed.
    pub fn expires_at(&self, granted: Instant) -> Instant {
        granted + Duration::from_secs(u64::from(self.lifetime))
    }
}

/// The delays between tries of one request: a datagram may be lost (RFC 6886 starts at
/// 250 ms and doubles; fewer tries, as the node does not wait for the answer anyway).
pub const RETRIES: [Duration; 4] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// A PCP `MAP` request for TCP to `client` (our address towards the gateway and the listening
/// port), asking `lifetime` seconds (0 deletes) and the same external port.
pub fn pcp_map_request(client: SocketAddrV4, nonce: [u8; 12], lifetime: u32) -> [u8; PCP_LEN] {
    let mut m = [0u8; PCP_LEN];
    m[0] = PCP_VERSION;
    m[1] = PCP_MAP;
    m[4..8].copy_from_slice(&lifetime.to_be_bytes());
    m[8..24].copy_from_slice(&client.ip().to_ipv6_mapped().octets());
    m[24..36].copy_from_slice(&nonce);
    m[36] = TCP;
    m[40..42].copy_from_slice(&client.port().to_be_bytes());
    let suggested = if lifetime == 0 { 0 } else { client.port() };
    m[42..44].copy_from_slice(&suggested.to_be_bytes());
    // No suggested external address: IPv4's all-zeros, mapped.
    m[44..60].copy_from_slice(&Ipv4Addr::UNSPECIFIED.to_ipv6_mapped().octets());
    m
}

/// Parses the answer to [`pcp_map_request`] for `internal_port` and `nonce`.
pub fn parse_pcp_map(
    d: &[u8],
    internal_port: u16,
    nonce: &[u8; 12],
) -> Result<Mapping, PortmapError> {
    if d.len() >= 4 && d[0] == 0 {
        // A NAT-PMP server's answer to a version it does not know.
        return Err(PortmapError::UnsupportedVersion);
    }
    if d.len() < PCP_LEN {
        return Err(PortmapError::Malformed("short"));
    }
    if d[0] != PCP_VERSION || d[1] != PCP_RESPONSE | PCP_MAP {
        return Err(PortmapError::Malformed("not a PCP MAP response"));
    }
    if d[24..36] != nonce[..] {
        return Err(PortmapError::Malformed("another request's nonce"));
    }
    let result = d[3];
    if result != 0 {
        return Err(PortmapError::Refused(u16::from(result)));
    }
    if d[36] != TCP || u16::from_be_bytes([d[40], d[41]]) != internal_port {
        return Err(PortmapError::Malformed("another protocol or port"));
    }
    let lifetime = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
    let port = u16::from_be_bytes([d[42], d[43]]);
    let mut ip = [0u8; 16];
    ip.copy_from_slice(&d[44..60]);
    let ip = Ipv6Addr::from(ip)
        .to_ipv4_mapped()
        .ok_or(PortmapError::Malformed("not an IPv4 external address"))?;
    mapping(ip, port, lifetime)
}

fn mapping(ip: Ipv4Addr, port: u16, lifetime: u32) -> Result<Mapping, PortmapError> {
    if port == 0 || ip.is_unspecified() || lifetime == 0 {
        return Err(PortmapError::Malformed("no address, port or lifetime"));
    }
    Ok(Mapping {
        external: SocketAddrV4::new(ip, port),
        lifetime,
    })
}

/// NAT-PMP's request for the gateway's external address.
pub fn pmp_address_request() -> [u8; 2] {
    [0, PMP_ADDRESS]
}

/// Parses the answer to [`pmp_address_request`].
pub fn parse_pmp_address(d: &[u8]) -> Result<Ipv4Addr, PortmapError> {
    let result = pmp_header(d, PMP_ADDRESS, 12)?;
    if result != 0 {
        return Err(PortmapError::Refused(result));
    }
    Ok(Ipv4Addr::new(d[8], d[9], d[10], d[11]))
}

/// A NAT-PMP TCP mapping request for `internal_port`, asking `lifetime` seconds (0 deletes)
/// and the same external port.
pub fn pmp_map_request(internal_port: u16, lifetime: u32) -> [u8; 12] {
    let mut m = [0u8; 12];
    m[1] = PMP_MAP_TCP;
    m[4..6].copy_from_slice(&internal_port.to_be_bytes());
    let suggested = if lifetime == 0 { 0 } else { internal_port };
    m[6..8].copy_from_slice(&suggested.to_be_bytes());
    m[8..12].copy_from_slice(&lifetime.to_be_bytes());
    m
}

/// Parses the answer to [`pmp_map_request`]: the mapping at `external_ip`.
pub fn parse_pmp_map(
    d: &[u8],
    internal_port: u16,
    external_ip: Ipv4Addr,
) -> Result<Mapping, PortmapError> {
    let result = pmp_header(d, PMP_MAP_TCP, 16)?;
    if result != 0 {
        return Err(PortmapError::Refused(result));
    }
    if u16::from_be_bytes([d[8], d[9]]) != internal_port {
        return Err(PortmapError::Malformed("another port"));
    }
    let port = u16::from_be_bytes([d[10], d[11]]);
    let lifetime = u32::from_be_bytes([d[12], d[13], d[14], d[15]]);
    mapping(external_ip, port, lifetime)
}

/// Checks a NAT-PMP answer's length, version and opcode; returns its result code.
fn pmp_header(d: &[u8], opcode: u8, len: usize) -> Result<u16, PortmapError> {
    if d.len() < 4 || d[0] != 0 || d[1] != PMP_RESPONSE | opcode {
        return Err(PortmapError::Malformed("not a NAT-PMP response"));
    }
    let result = u16::from_be_bytes([d[2], d[3]]);
    // An error answer may be cut short; a success must be whole.
    if result == 0 && d.len() < len {
        return Err(PortmapError::Malformed("short"));
    }
    Ok(result)
}

/// The default IPv4 gateway in Linux's `/proc/net/route` text, if there is one.
pub fn default_gateway(route_table: &str) -> Option<Ipv4Addr> {
    route_table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (dest, gw, flags, mask) = (f.get(1)?, f.get(2)?, f.get(3)?, f.get(7)?);
        let flags = u32::from_str_radix(flags, 16).ok()?;
        // RTF_UP and RTF_GATEWAY, to 0.0.0.0/0.
        if *dest != "00000000" || *mask != "00000000" || flags & 0x3 != 0x3 {
            return None;
        }
        // The kernel prints the address's bytes as a native-endian number.
        let gw = u32::from_str_radix(gw, 16).ok()?;
        Some(Ipv4Addr::from(gw.to_ne_bytes())).filter(|ip| !ip.is_unspecified())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NONCE: [u8; 12] = [7; 12];

    fn pcp_answer(result: u8, port: u16, ip: Ipv4Addr, lifetime: u32) -> Vec<u8> {
        let mut d = pcp_map_request(
            SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 2), 7420),
            NONCE,
            0,
        )
        .to_vec();
        d[1] = 0x81;
        d[2] = 0;
        d[3] = result;
        d[4..8].copy_from_slice(&lifetime.to_be_bytes());
        d[8..24].fill(0);
        d[42..44].copy_from_slice(&port.to_be_bytes());
        d[44..60].copy_from_slice(&ip.to_ipv6_mapped().octets());
        d
    }

    #[test]
    fn a_pcp_map_request_is_laid_out_as_rfc_6887_says() {
        let client = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 2), 7420);
        let m = pcp_map_request(client, NONCE, 7200);
        assert_eq!(&m[..4], &[2, 1, 0, 0]);
        assert_eq!(&m[4..8], &7200u32.to_be_bytes());
        assert_eq!(&m[8..24], &client.ip().to_ipv6_mapped().octets());
        assert_eq!(&m[24..36], &NONCE);
        assert_eq!(m[36], 6);
        assert_eq!(&m[40..44], &[0x1c, 0xfc, 0x1c, 0xfc]);
        assert_eq!(&m[44..60], &Ipv4Addr::UNSPECIFIED.to_ipv6_mapped().octets());
        // Deleting asks no external port.
        assert_eq!(&pcp_map_request(client, NONCE, 0)[42..44], &[0, 0]);
    }

    #[test]
    fn pcp_answers_are_checked_before_they_are_believed() {
        let ip = Ipv4Addr::new(203, 0, 113, 1);
        let ok = pcp_answer(0, 7420, ip, 3600);
        assert_eq!(
            parse_pcp_map(&ok, 7420, &NONCE),
            Ok(Mapping {
                external: SocketAddrV4::new(ip, 7420),
                lifetime: 3600
            })
        );
        // With options after it, still the same.
        let mut long = ok.clone();
        long.extend_from_slice(&[0; 40]);
        assert!(parse_pcp_map(&long, 7420, &NONCE).is_ok());
        assert_eq!(
            parse_pcp_map(&ok, 7420, &[8; 12]),
            Err(PortmapError::Malformed("another request's nonce"))
        );
        assert!(parse_pcp_map(&ok, 7421, &NONCE).is_err());
        assert!(parse_pcp_map(&ok[..59], 7420, &NONCE).is_err());
        assert_eq!(
            parse_pcp_map(&pcp_answer(2, 0, ip, 0), 7420, &NONCE),
            Err(PortmapError::Refused(2))
        );
        assert!(parse_pcp_map(&pcp_answer(0, 0, ip, 3600), 7420, &NONCE).is_err());
        // A NAT-PMP gateway's "unsupported version".
        assert_eq!(
            parse_pcp_map(&[0, 0x81, 0, 1, 0, 0, 0, 0], 7420, &NONCE),
            Err(PortmapError::UnsupportedVersion)
        );
    }

    #[test]
    fn nat_pmp_requests_and_answers_follow_rfc_6886() {
        assert_eq!(pmp_address_request(), [0, 0]);
        assert_eq!(
            pmp_map_request(7420, 7200),
            [0, 2, 0, 0, 0x1c, 0xfc, 0x1c, 0xfc, 0, 0, 0x1c, 0x20]
        );
        assert_eq!(&pmp_map_request(7420, 0)[6..], &[0; 6]);
        let addr = [0, 128, 0, 0, 0, 0, 0, 9, 203, 0, 113, 1];
        assert_eq!(parse_pmp_address(&addr), Ok(Ipv4Addr::new(203, 0, 113, 1)));
        assert!(parse_pmp_address(&addr[..11]).is_err());
        assert_eq!(
            parse_pmp_address(&[0, 128, 0, 3]),
            Err(PortmapError::Refused(3))
        );
        let ip = Ipv4Addr::new(203, 0, 113, 1);
        let map = [
            0, 130, 0, 0, 0, 0, 0, 9, 0x1c, 0xfc, 0x1c, 0xfd, 0, 0, 0x0e, 0x10,
        ];
        assert_eq!(
            parse_pmp_map(&map, 7420, ip),
            Ok(Mapping {
                external: SocketAddrV4::new(ip, 7421),
                lifetime: 3600
            })
        );
        assert!(parse_pmp_map(&map, 7000, ip).is_err());
        assert!(parse_pmp_map(&map[..15], 7420, ip).is_err());
        assert!(parse_pmp_map(&addr, 7420, ip).is_err(), "another opcode");
    }

    #[test]
    fn renewal_comes_at_half_the_lifetime_with_a_floor() {
        let m = Mapping {
            external: "203.0.113.1:7420".parse().unwrap(),
            lifetime: 7200,
        };
        let t = Instant::now();
        assert_eq!(
            m.renew_at(t, Duration::from_secs(30)),
            t + Duration::from_secs(3600)
        );
        let short = Mapping { lifetime: 4, ..m };
        assert_eq!(
            short.renew_at(t, Duration::from_secs(30)),
            t + Duration::from_secs(30)
        );
        assert_eq!(short.expires_at(t), t + Duration::from_secs(4));
    }

    #[test]
    fn the_default_gateway_is_read_from_the_route_table() {
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                     eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        let expected = Ipv4Addr::from(u32::from_str_radix("0101A8C0", 16).unwrap().to_ne_bytes());
        assert_eq!(default_gateway(table), Some(expected));
        if cfg!(target_endian = "little") {
            assert_eq!(expected, Ipv4Addr::new(192, 168, 1, 1));
        }
        assert_eq!(default_gateway("Iface\tDestination\n"), None);
        assert_eq!(default_gateway("x\ny 00000000 zz 3 0 0 0 00000000"), None);
    }

    proptest! {
        #[test]
        fn no_datagram_makes_a_parser_panic(d in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = parse_pcp_map(&d, 7420, &NONCE);
            let _ = parse_pmp_address(&d);
            let _ = parse_pmp_map(&d, 7420, Ipv4Addr::LOCALHOST);
        }
    }
}
