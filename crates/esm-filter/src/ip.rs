//! IP addresses and CIDR blocks, following aws/event-ruler's `CIDR` class.
//!
//! Ruler only treats text as an address when it looks like one (four dot-separated digit runs, or
//! hex digits and colons with at least one colon) and then parses it like Java's `InetAddress`,
//! which turns IPv4-mapped IPv6 addresses into IPv4. A CIDR block spans from the address as
//! written (not masked) to the address with all host bits set.

use std::net::{Ipv4Addr, Ipv6Addr};

/// An inclusive address range within one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpRange {
    v6: bool,
    low: u128,
    high: u128,
}

impl IpRange {
    pub(crate) fn contains(&self, text: &str) -> bool {
        match parse(text) {
            Some(Ok(Address { v6, bits })) => v6 == self.v6 && self.low <= bits && bits <= self.high,
            _ => false,
        }
    }

    /// A single address, used when a plain pattern string is an IP literal (Ruler then matches
    /// any spelling of the same address, e.g. a differently compressed IPv6 form).
    pub(crate) fn single(text: &str) -> Option<IpRange> {
        let Address { v6, bits } = parse(text)?.ok()?;
        Some(IpRange { v6, low: bits, high: bits })
    }

    pub(crate) fn cidr(text: &str) -> Result<IpRange, String> {
        let mut parts = text.split('/');
        let (Some(addr), Some(mask), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err("Malformed CIDR, one '/' required".to_owned());
        };
        let mask: i64 = mask
            .parse()
            .map_err(|_| "Malformed CIDR, mask bits must be an integer".to_owned())?;
        if mask < 0 {
            return Err("Malformed CIDR, mask bits must not be negative".to_owned());
        }
        let Address { v6, bits } = match parse(addr) {
            Some(result) => result?,
            None => return Err(format!("Nonstandard IP address: {addr}")),
        };
        let width: i64 = if v6 { 128 } else { 32 };
        if mask >= width {
            let family = if v6 { "IPv6" } else { "IPv4" };
            return Err(format!("{family} mask bits must be < {width}"));
        }
        let host_bits = (width - mask) as u32;
        let host_mask = if host_bits >= 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
        Ok(IpRange { v6, low: bits, high: bits | host_mask })
    }
}

struct Address {
    v6: bool,
    bits: u128,
}

/// `None` if the text does not look like an address, `Some(Err)` if it looks like one but is not.
fn parse(text: &str) -> Option<Result<Address, String>> {
    let invalid = || Err(format!("Invalid IP address: {text}"));
    if looks_like_v4(text) {
        let mut octets = [0u8; 4];
        for (slot, part) in octets.iter_mut().zip(text.split('.')) {
            // Java's parser reads each part as decimal, leading zeros included.
            match part.parse::<u8>() {
                Ok(value) => *slot = value,
                Err(_) => return Some(invalid()),
            }
        }
        return Some(Ok(Address { v6: false, bits: u32::from(Ipv4Addr::from(octets)).into() }));
    }
    if looks_like_v6(text) {
        return Some(match text.parse::<Ipv6Addr>() {
            Ok(addr) => Ok(match addr.to_ipv4_mapped() {
                Some(v4) => Address { v6: false, bits: u32::from(v4).into() },
                None => Address { v6: true, bits: u128::from(addr) },
            }),
            Err(_) => invalid(),
        });
    }
    None
}

fn looks_like_v4(text: &str) -> bool {
    let mut parts = 0;
    for part in text.split('.') {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        parts += 1;
    }
    parts == 4
}

fn looks_like_v6(text: &str) -> bool {
    text.contains(':') && text.bytes().all(|b| b == b':' || b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_v4() {
        let r = IpRange::cidr("10.0.0.0/24").unwrap();
        assert!(r.contains("10.0.0.0"));
        assert!(r.contains("10.0.0.255"));
        assert!(!r.contains("10.0.1.0"));
        assert!(!r.contains("not an ip"));
        assert!(!r.contains("::1"));
    }

    #[test]
    fn cidr_bottom_is_not_masked() {
        // Ruler keeps the address as written as the lower bound.
        let r = IpRange::cidr("10.0.0.5/24").unwrap();
        assert!(!r.contains("10.0.0.4"));
        assert!(r.contains("10.0.0.5"));
    }

    #[test]
    fn cidr_v6_and_mapped_v4() {
        let r = IpRange::cidr("2001:db8::/32").unwrap();
        assert!(r.contains("2001:0db8:ffff::1"));
        assert!(!r.contains("2001:db9::1"));
        let single = IpRange::single("::ffff:a00:1").unwrap();
        assert!(single.contains("10.0.0.1"));
    }

    #[test]
    fn cidr_errors() {
        assert_eq!(IpRange::cidr("10.0.0.0").unwrap_err(), "Malformed CIDR, one '/' required");
        assert_eq!(IpRange::cidr("10.0.0.0/x").unwrap_err(), "Malformed CIDR, mask bits must be an integer");
        assert_eq!(IpRange::cidr("xx.11.xx/8").unwrap_err(), "Nonstandard IP address: xx.11.xx");
        assert_eq!(IpRange::cidr("10.0.0.0/32").unwrap_err(), "IPv4 mask bits must be < 32");
        assert_eq!(IpRange::cidr("300.0.0.0/8").unwrap_err(), "Invalid IP address: 300.0.0.0");
    }
}
