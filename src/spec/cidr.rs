//! IPv4 CIDR blocks: parsing, containment, overlap and the kops-style split.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 network in CIDR notation whose host bits are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    addr: u32,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("expected an IPv4 CIDR such as 172.20.0.0/16")]
    Syntax,
    #[error("the prefix length must be between 0 and 32")]
    Prefix,
    #[error("host bits are set; the network address is {0}")]
    HostBits(Ipv4Cidr),
}

impl Ipv4Cidr {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, CidrError> {
        if prefix > 32 {
            return Err(CidrError::Prefix);
        }
        let addr = u32::from(addr);
        let net = Ipv4Cidr {
            addr: addr & mask(prefix),
            prefix,
        };
        if net.addr != addr {
            return Err(CidrError::HostBits(net));
        }
        Ok(net)
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr)
    }

    fn last(&self) -> u32 {
        self.addr | !mask(self.prefix)
    }

    pub fn contains(&self, other: &Ipv4Cidr) -> bool {
        other.prefix >= self.prefix && other.addr & mask(self.prefix) == self.addr
    }

    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.addr <= other.last() && other.addr <= self.last()
    }

    /// Splits into `2^bits` equal blocks, in address order; `None` past /32.
    pub fn split(&self, bits: u8) -> Option<Vec<Ipv4Cidr>> {
        let prefix = self.prefix.checked_add(bits).filter(|p| *p <= 32)?;
        let step = 1u64 << (32 - prefix);
        Some(
            (0..1u64 << bits)
                .map(|i| Ipv4Cidr {
                    addr: (self.addr as u64 + i * step) as u32,
                    prefix,
                })
                .collect(),
        )
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s.split_once('/').ok_or(CidrError::Syntax)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| CidrError::Syntax)?;
        // Reject "+8" and "08": only plain decimal.
        if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CidrError::Syntax);
        }
        let prefix: u8 = prefix.parse().map_err(|_| CidrError::Syntax)?;
        Ipv4Cidr::new(addr, prefix)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

impl Serialize for Ipv4Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
    }
}

/// The kops split of a network for `big` large subnets (private, or public in a
/// public topology) and `little` small ones (utility): the network is cut into the
/// smallest power of two above `big`; block 0 is cut into 8 for the little ones and
/// the big ones take blocks 1..=big. For 172.20.0.0/16 and three zones this gives
/// private /18s from .64.0 and utility /21s from .0.0, as kops does.
pub fn kops_split(
    network: Ipv4Cidr,
    big: usize,
    little: usize,
) -> Option<(Vec<Ipv4Cidr>, Vec<Ipv4Cidr>)> {
    if little > 8 {
        return None;
    }
    let bits = (big + 1).next_power_of_two().trailing_zeros() as u8;
    let blocks = network.split(bits)?;
    let small = blocks[0].split(3)?;
    Some((blocks[1..=big].to_vec(), small[..little].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_rejects() {
        assert_eq!(c("172.20.0.0/16").to_string(), "172.20.0.0/16");
        assert_eq!(
            "172.20.0.1/16".parse::<Ipv4Cidr>(),
            Err(CidrError::HostBits(c("172.20.0.0/16")))
        );
        assert_eq!("172.20.0.0/33".parse::<Ipv4Cidr>(), Err(CidrError::Prefix));
        for bad in [
            "",
            "172.20.0.0",
            "172.20.0.0/",
            "300.0.0.0/8",
            "10.0.0.0/+8",
            "10.0.0.0/008",
            "a/8",
        ] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn contains_and_overlaps() {
        let vpc = c("172.20.0.0/16");
        assert!(vpc.contains(&c("172.20.64.0/18")));
        assert!(!vpc.contains(&c("172.21.0.0/18")));
        assert!(!c("172.20.64.0/18").contains(&vpc));
        assert!(c("172.20.64.0/18").overlaps(&c("172.20.100.0/24")));
        assert!(!c("172.20.64.0/18").overlaps(&c("172.20.128.0/18")));
    }

    #[test]
    fn kops_layout_three_zones() {
        let (big, little) = kops_split(c("172.20.0.0/16"), 3, 3).unwrap();
        let s = |v: Vec<Ipv4Cidr>| v.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        assert_eq!(
            s(big),
            ["172.20.64.0/18", "172.20.128.0/18", "172.20.192.0/18"]
        );
        assert_eq!(
            s(little),
            ["172.20.0.0/21", "172.20.8.0/21", "172.20.16.0/21"]
        );
    }

    #[test]
    fn kops_layout_one_zone() {
        let (big, little) = kops_split(c("172.20.0.0/16"), 1, 1).unwrap();
        assert_eq!(big, [c("172.20.128.0/17")]);
        assert_eq!(little, [c("172.20.0.0/20")]);
    }

    #[test]
    fn kops_split_too_small() {
        assert!(kops_split(c("10.0.0.0/30"), 3, 3).is_none());
    }

    proptest::proptest! {
        // Whatever the network and zone count, the blocks lie inside it and never overlap.
        #[test]
        fn split_is_disjoint_and_inside(a in proptest::prelude::any::<u32>(), prefix in 8u8..24, zones in 1usize..8) {
            let net = Ipv4Cidr::new(Ipv4Addr::from(a & mask(prefix)), prefix).unwrap();
            let (big, little) = kops_split(net, zones, zones).unwrap();
            let all: Vec<_> = big.iter().chain(&little).collect();
            for (i, x) in all.iter().enumerate() {
                proptest::prop_assert!(net.contains(x));
                for y in &all[i + 1..] {
                    proptest::prop_assert!(!x.overlaps(y), "{x} overlaps {y}");
                }
            }
        }
    }
}
