//! Which addresses this node dials, and how often: a stranger must not turn it into a
//! connect-flooder aimed at a third party (the probe of 2026-12: one 3-s connection made a node
//! open 304 TCP connections to addresses the stranger chose).
//!
//! - **Scope**: an address announced by another peer is dialled only if this node could be on
//!   its network: a loopback address only if this node listens on loopback itself, a private,
//!   shared or link-local one only if one of this node's own addresses is in the same block;
//!   unspecified and multicast addresses never. Names (`/dns…`) and public addresses pass.
//! - **Plausibility**: the addresses a peer lists in identify (unsigned) are kept only on the
//!   IP its connection came from; its signed presence may name others (subject to scope).
//! - **Budget**: dials to peers other than the bootstrap ones draw from a token bucket
//!   ([`DIAL_BURST`], refilled at [`DIALS_PER_MINUTE`]), and each dials at most
//!   [`ADDRS_PER_DIAL`] addresses.

use std::net::IpAddr;

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use tokio::time::Instant;

/// Dials per minute to peers other than the bootstrap ones, on average.
pub(super) const DIALS_PER_MINUTE: u32 = 60;
/// Dials that may go out at once (at start, a joining node picks its first neighbours).
pub(super) const DIAL_BURST: u32 = 30;
/// Addresses tried per dial at most.
pub(super) const ADDRS_PER_DIAL: usize = 4;

/// The IP of an address, if it names one.
pub(super) fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// The block an address of limited scope belongs to (two addresses in one block may be on one
/// network); `None` for a public address.
fn block(ip: IpAddr) -> Option<(u8, u128)> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            let bits = u32::from(v4);
            let masked = |prefix: u32| u128::from(bits & (u32::MAX << (32 - prefix)));
            match o {
                [10, ..] => Some((4, masked(8))),
                [172, b, ..] if (16..32).contains(&b) => Some((4, masked(12))),
                [192, 168, ..] => Some((4, masked(16))),
                [100, b, ..] if (64..128).contains(&b) => Some((4, masked(10))),
                [169, 254, ..] => Some((4, masked(16))),
                _ => None,
            }
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let seg = v6.segments()[0];
            if seg & 0xfe00 == 0xfc00 {
                Some((6, bits & (u128::MAX << 80))) // unique local: the /48
            } else if seg & 0xffc0 == 0xfe80 {
                Some((6, bits & (u128::MAX << 64))) // link-local
            } else {
                None
            }
        }
    }
}

/// Whether this node (listening on `own`) may dial `addr`, announced by another peer.
pub(super) fn in_scope(addr: &Multiaddr, own: &[Multiaddr]) -> bool {
    let Some(ip) = ip_of(addr) else {
        return true; // a name: resolved by the transport
    };
    let own_ips: Vec<IpAddr> = own.iter().filter_map(ip_of).collect();
    if ip.is_unspecified() || ip.is_multicast() {
        return false;
    }
    if ip.is_loopback() {
        return own_ips.iter().any(IpAddr::is_loopback);
    }
    match block(ip) {
        None => true,
        Some(b) => own_ips.iter().any(|o| block(*o) == Some(b)),
    }
}

/// A token bucket of dials.
#[derive(Debug)]
pub(super) struct DialBudget {
    tokens: f64,
    at: Instant,
}

impl DialBudget {
    pub(super) fn new(now: Instant) -> Self {
        Self { tokens: f64::from(DIAL_BURST), at: now }
    }

    /// Takes one dial if the budget allows it at `now`.
    pub(super) fn take(&mut self, now: Instant) -> bool {
        let per_sec = f64::from(DIALS_PER_MINUTE) / 60.0;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(f64::from(DIAL_BURST));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How long until the budget has a dial again (for tests and logs).
#[cfg(test)]
fn refill_time() -> std::time::Duration {
    std::time::Duration::from_secs_f64(60.0 / f64::from(DIALS_PER_MINUTE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn announced_addresses_are_dialled_only_where_this_node_could_be() {
        let on_lan = [a("/ip4/192.168.1.7/tcp/7301"), a("/ip4/127.0.0.1/tcp/7301")];
        let public_only = [a("/ip4/203.0.113.9/tcp/7301")];
        // Loopback: only by a node that listens on loopback itself.
        assert!(in_scope(&a("/ip4/127.0.0.1/tcp/22"), &on_lan));
        assert!(!in_scope(&a("/ip4/127.0.0.1/tcp/22"), &public_only));
        assert!(!in_scope(&a("/ip6/::1/tcp/22"), &public_only));
        // Private blocks: only the one this node is in.
        assert!(in_scope(&a("/ip4/192.168.44.3/tcp/7301"), &on_lan));
        assert!(!in_scope(&a("/ip4/10.0.0.5/tcp/7301"), &on_lan));
        assert!(!in_scope(&a("/ip4/172.20.0.5/tcp/7301"), &public_only));
        assert!(!in_scope(&a("/ip4/169.254.1.1/tcp/7301"), &public_only));
        assert!(!in_scope(&a("/ip6/fd00::1/tcp/7301"), &public_only));
        // Never: unspecified, multicast. Always: public addresses and names.
        assert!(!in_scope(&a("/ip4/0.0.0.0/tcp/7301"), &on_lan));
        assert!(!in_scope(&a("/ip4/224.0.0.1/udp/7301"), &on_lan));
        assert!(in_scope(&a("/ip4/198.51.100.2/udp/7301/quic-v1"), &public_only));
        assert!(in_scope(&a("/dns4/peer.example/tcp/7301"), &public_only));
    }

    #[test]
    fn the_dial_budget_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = DialBudget::new(t0);
        let burst = (0..100).filter(|_| b.take(t0)).count();
        assert_eq!(burst, DIAL_BURST as usize);
        assert!(!b.take(t0));
        let later = t0 + refill_time() * 10;
        let refilled = (0..100).filter(|_| b.take(later)).count();
        assert_eq!(refilled, 10);
    }
}
