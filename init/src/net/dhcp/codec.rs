//! The DHCPv4 wire format: the BOOTP header (RFC 2131 section 2, figure 1),
//! the magic cookie and the options area (RFC 2132 sections 2-3), with
//! option overload (RFC 2132 9.3) and long-option concatenation (RFC 3396).

use std::net::Ipv4Addr;

/// RFC 2131 section 3: the first four octets of the options field.
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Fixed header before the cookie: op .. file (RFC 2131 figure 1).
pub const HEADER_LEN: usize = 236;
/// RFC 1542 section 3.3.2: relay agents may drop BOOTP messages shorter
/// than 300 octets, so requests are padded to that length.
pub const MIN_LEN: usize = 300;

pub const OP_REQUEST: u8 = 1;
pub const OP_REPLY: u8 = 2;
/// `htype` for Ethernet (RFC 1700 "Hardware Type").
pub const HTYPE_ETHERNET: u8 = 1;
/// The BROADCAST bit of `flags` (RFC 2131 section 2, figure 2).
pub const FLAG_BROADCAST: u16 = 0x8000;

/// RFC 2132 option codes used here.
pub mod opt {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const HOSTNAME: u8 = 12;
    pub const DOMAIN_NAME: u8 = 15;
    pub const MTU: u8 = 26;
    pub const BROADCAST: u8 = 28;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_LIST: u8 = 55;
    pub const MESSAGE: u8 = 56;
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const CLIENT_ID: u8 = 61;
    /// RFC 3442.
    pub const CLASSLESS_ROUTES: u8 = 121;
    pub const END: u8 = 255;
}

/// DHCP message type, option 53 (RFC 2132 9.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
    Inform = 8,
}

impl MessageType {
    pub fn from_u8(v: u8) -> Option<MessageType> {
        use MessageType::*;
        [Discover, Offer, Request, Decline, Ack, Nak, Release, Inform]
            .into_iter()
            .find(|t| *t as u8 == v)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("DHCP packet of {len} bytes is shorter than the {min}-byte BOOTP header and cookie")]
    TooShort { len: usize, min: usize },
    #[error("DHCP packet has magic cookie {found:02x?}, want 63 82 53 63 (RFC 2131 section 3)")]
    BadCookie { found: [u8; 4] },
    #[error("DHCP option {code} in the {area} runs past the end of the packet")]
    Truncated { code: u8, area: &'static str },
    #[error("DHCP option 52 (overload) has invalid value {value:?} (RFC 2132 9.3)")]
    BadOverload { value: Vec<u8> },
}

/// A DHCP message. Options are kept raw in order (codes merged per RFC
/// 3396); typed views live in `options.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub op: u8,
    pub htype: u8,
    pub hlen: u8,
    pub hops: u8,
    pub xid: u32,
    pub secs: u16,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub chaddr: [u8; 16],
    pub options: Vec<(u8, Vec<u8>)>,
}

impl Packet {
    /// A BOOTREQUEST from an Ethernet client.
    pub fn request(xid: u32, mac: [u8; 6], kind: MessageType) -> Packet {
        let mut chaddr = [0; 16];
        chaddr[..6].copy_from_slice(&mac);
        Packet {
            op: OP_REQUEST,
            htype: HTYPE_ETHERNET,
            hlen: 6,
            hops: 0,
            xid,
            secs: 0,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            options: vec![(opt::MESSAGE_TYPE, vec![kind as u8])],
        }
    }

    /// The payload of option `code`, if present.
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, d)| d.as_slice())
    }

    /// Appends an option (the caller keeps codes unique).
    pub fn push(&mut self, code: u8, data: impl Into<Vec<u8>>) {
        self.options.push((code, data.into()));
    }

    pub fn message_type(&self) -> Option<MessageType> {
        self.option(opt::MESSAGE_TYPE)
            .filter(|d| d.len() == 1)
            .and_then(|d| MessageType::from_u8(d[0]))
    }

    /// The hardware address from `chaddr`, `hlen` bytes of it.
    pub fn hardware_address(&self) -> &[u8] {
        &self.chaddr[..usize::from(self.hlen).min(16)]
    }

    /// Serializes: header, cookie, options (split into 255-byte pieces per
    /// RFC 3396), END, zero padding up to [`MIN_LEN`].
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(MIN_LEN);
        b.extend_from_slice(&[self.op, self.htype, self.hlen, self.hops]);
        b.extend_from_slice(&self.xid.to_be_bytes());
        b.extend_from_slice(&self.secs.to_be_bytes());
        b.extend_from_slice(&self.flags.to_be_bytes());
        for a in [self.ciaddr, self.yiaddr, self.siaddr, self.giaddr] {
            b.extend_from_slice(&a.octets());
        }
        b.extend_from_slice(&self.chaddr);
        b.resize(HEADER_LEN, 0); // sname (64) and file (128) stay empty
        b.extend_from_slice(&MAGIC_COOKIE);
        for (code, data) in &self.options {
            if data.is_empty() {
                b.extend_from_slice(&[*code, 0]);
            }
            for chunk in data.chunks(255) {
                // chunks(255): every length fits the option's length byte.
                let len = u8::try_from(chunk.len()).unwrap_or(u8::MAX);
                b.extend_from_slice(&[*code, len]);
                b.extend_from_slice(chunk);
            }
        }
        b.push(opt::END);
        if b.len() < MIN_LEN {
            b.resize(MIN_LEN, opt::PAD);
        }
        b
    }

    /// Parses a UDP payload. Options from `file` and `sname` are read when
    /// option 52 says so (RFC 2132 9.3: options area first, then `file`,
    /// then `sname`); repeated codes are concatenated (RFC 3396 section 7).
    pub fn decode(bytes: &[u8]) -> Result<Packet, CodecError> {
        let min = HEADER_LEN + MAGIC_COOKIE.len();
        if bytes.len() < min {
            return Err(CodecError::TooShort {
                len: bytes.len(),
                min,
            });
        }
        let cookie: [u8; 4] = bytes[HEADER_LEN..min].try_into().unwrap_or_default();
        if cookie != MAGIC_COOKIE {
            return Err(CodecError::BadCookie { found: cookie });
        }
        let u32_at =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let ip_at = |i: usize| Ipv4Addr::from(u32_at(i));
        let mut chaddr = [0; 16];
        chaddr.copy_from_slice(&bytes[28..44]);
        let mut p = Packet {
            op: bytes[0],
            htype: bytes[1],
            hlen: bytes[2],
            hops: bytes[3],
            xid: u32_at(4),
            secs: u16::from_be_bytes([bytes[8], bytes[9]]),
            flags: u16::from_be_bytes([bytes[10], bytes[11]]),
            ciaddr: ip_at(12),
            yiaddr: ip_at(16),
            siaddr: ip_at(20),
            giaddr: ip_at(24),
            chaddr,
            options: Vec::new(),
        };
        parse_area(&bytes[min..], "options area", &mut p.options)?;
        let overload = p.option(opt::OVERLOAD).map(<[u8]>::to_vec);
        if let Some(v) = overload {
            let (file, sname) = match v.as_slice() {
                [1] => (true, false),
                [2] => (false, true),
                [3] => (true, true),
                _ => return Err(CodecError::BadOverload { value: v }),
            };
            if file {
                parse_area(&bytes[108..236], "file field", &mut p.options)?;
            }
            if sname {
                parse_area(&bytes[44..108], "sname field", &mut p.options)?;
            }
        }
        Ok(p)
    }
}

/// Reads code/length/value triples up to END or the end of `area`.
fn parse_area(
    area: &[u8],
    name: &'static str,
    out: &mut Vec<(u8, Vec<u8>)>,
) -> Result<(), CodecError> {
    let mut i = 0;
    while i < area.len() {
        let code = area[i];
        match code {
            opt::PAD => i += 1,
            opt::END => break,
            _ => {
                let len = *area
                    .get(i + 1)
                    .ok_or(CodecError::Truncated { code, area: name })?;
                let data = area
                    .get(i + 2..i + 2 + usize::from(len))
                    .ok_or(CodecError::Truncated { code, area: name })?;
                match out.iter_mut().find(|(c, _)| *c == code) {
                    Some((_, d)) => d.extend_from_slice(data),
                    None => out.push((code, data.to_vec())),
                }
                i += 2 + usize::from(len);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_long_options() {
        let mut p = Packet::request(0x1234_5678, [2, 0, 0, 0, 0, 1], MessageType::Request);
        p.push(opt::HOSTNAME, vec![b'a'; 300]);
        p.push(opt::PARAMETER_LIST, vec![]);
        let b = p.encode();
        // 300 bytes of hostname: a 255-byte piece and a 45-byte piece.
        assert_eq!(&b[243..245], &[opt::HOSTNAME, 255]);
        assert_eq!(&b[500..502], &[opt::HOSTNAME, 45]);
        assert_eq!(Packet::decode(&b).unwrap(), p);
    }

    #[test]
    fn overload_reads_file_then_sname() {
        let mut b = Packet::request(1, [2, 0, 0, 0, 0, 1], MessageType::Offer).encode();
        b[0] = OP_REPLY;
        // Options area: 53, then 52=3 (file and sname), END.
        let o = HEADER_LEN + 4;
        b[o..o + 7].copy_from_slice(&[53, 1, 2, 52, 1, 3, 255]);
        b[108..114].copy_from_slice(&[15, 3, b'l', b'a', b'b', 255]); // file
        b[44..50].copy_from_slice(&[15, 3, b'.', b'i', b'o', 255]); // sname
        let p = Packet::decode(&b).unwrap();
        assert_eq!(p.option(opt::DOMAIN_NAME), Some(&b"lab.io"[..]));
        assert_eq!(p.message_type(), Some(MessageType::Offer));
    }

    #[test]
    fn malformed() {
        assert_eq!(
            Packet::decode(&[0; 239]),
            Err(CodecError::TooShort { len: 239, min: 240 })
        );
        let mut b = vec![0; 240];
        assert!(matches!(
            Packet::decode(&b),
            Err(CodecError::BadCookie { .. })
        ));
        b[236..240].copy_from_slice(&MAGIC_COOKIE);
        assert!(Packet::decode(&b).unwrap().options.is_empty());
        b.extend_from_slice(&[51, 4, 0, 0]);
        assert_eq!(
            Packet::decode(&b),
            Err(CodecError::Truncated {
                code: 51,
                area: "options area"
            })
        );
        b.truncate(240);
        b.extend_from_slice(&[52, 1, 9]);
        assert!(matches!(
            Packet::decode(&b),
            Err(CodecError::BadOverload { .. })
        ));
        b.truncate(240);
        b.push(61);
        assert!(matches!(
            Packet::decode(&b),
            Err(CodecError::Truncated { code: 61, .. })
        ));
    }
}
