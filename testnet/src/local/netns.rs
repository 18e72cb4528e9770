//! `--netns`: every peer in a network namespace of its own, behind real kernel links, instead
//! of the link shim's rate, loss and cuts (the shim keeps only the delay: this kernel has no
//! netem).
//!
//! For run `R` (this process's id, so runs never collide) and peer `i`:
//!
//! ```text
//!   namespace vt<R>-sw                         namespace vt<R>-<i>
//!   bridge br0 ── port p<i> ══ veth ══════════ eth0  198.18.<i/200>.<10+i%200>/16
//!                 (tbf: rate to the peer)     (tbf: rate from the peer; nft: loss, cuts)
//!   host: c<R>x<i>  198.19.<B+i/64>.<4(i%64)+1>/30 ══ veth ══ ctl  …+2/30 (the API only)
//! ```
//!
//! * The peers' traffic crosses the bridge in a switch namespace of its own, so the host's
//!   firewall (br_netfilter, Docker's or podman's FORWARD rules) never sees it.
//! * Link rate: `tc tbf` on both ends of each peer's veth, so each peer has a link of the given
//!   rate each way (as a radio or an access line; not per pair of peers, as the shim's rate is).
//!   With `--tbf-per-pair`, as the shim: on each peer's `eth0` an htb with one class per other
//!   peer (matched by destination address), each class a tbf of the rate, and none on the
//!   switch side, so every pair of peers has its own link of the rate each way.
//! * Loss: an nft rule dropping that share of the packets arriving on `eth0` (`numgen random`).
//! * Cuts (partitions, flapping links): an nft set of peer addresses whose packets `eth0`
//!   drops on arrival, in both namespaces of a cut pair: the sender sees silence, as through a
//!   radio fade, not an error.
//! * The API listens on a point-to-point control link to the host, outside the shaped path,
//!   so sampling and following the peers costs them nothing on their links.
//!
//! The addresses are from 198.18.0.0/15, the range set aside for network benchmarks
//! (RFC 2544), so they do not shadow a real network. The data addresses exist only inside the
//! namespaces; the control links are the host's, in /24 blocks from `B`, the first blocks no
//! address of the host is in (so runs side by side, and leftovers of a killed one, never
//! share one). Everything lives in the namespaces:
//! deleting them removes the veths, qdiscs and nft tables. [`Netns`] deletes them when dropped
//! (on return, error, panic, and after Ctrl-C ends the run), and a new run first deletes those
//! of runs whose process is gone (one killed with SIGKILL).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use vecino::cluster::Host;

/// Peers a run can place (the addressing plan holds 200 per /16 row and 64 control links per
/// /24; `--nodes` stops at 200).
pub(crate) const MAX_PEERS: usize = 200;

/// Why the namespaces could not be made or changed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NetnsError {
    /// Not root, or a tool is missing.
    #[error("--netns needs {0}")]
    Needs(String),
    /// A command failed.
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    /// Too many peers for the addressing plan.
    #[error("--netns places at most {MAX_PEERS} peers, not {0}")]
    TooMany(usize),
}

/// The kernel links of one run.
#[derive(Debug)]
pub(crate) struct Netns {
    run: u32,
    n: usize,
    /// The first /24 block of the control links.
    block: u8,
    /// Pairs (a, b) whose packets a's namespace drops on arrival from b.
    cuts: BTreeSet<(usize, usize)>,
    /// Namespaces made so far (deleted on drop).
    made: Vec<String>,
    /// The tbf settings, for the report.
    pub(crate) tbf: Option<Tbf>,
    /// One tbf per pair of peers (each way) instead of one per peer.
    pub(crate) per_pair: bool,
    pub(crate) loss: f64,
}

/// A token bucket filter on each end of a peer's link.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct Tbf {
    pub(crate) rate_kbps: u64,
    pub(crate) burst_bytes: u64,
    pub(crate) limit_bytes: u64,
}

impl Tbf {
    /// A bucket of 4 KiB (a few packets: a radio sends no bursts) and a queue of one second
    /// at the rate (at least 16 KiB), past which packets are dropped.
    pub(crate) fn for_rate(rate_kbps: u64) -> Self {
        Tbf { rate_kbps, burst_bytes: 4096, limit_bytes: (rate_kbps * 1000 / 8).max(16 * 1024) }
    }
}

/// The data address of peer `i`.
pub(crate) fn data_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, (i / 200) as u8, (10 + i % 200) as u8)
}

/// The host's and the namespace's ends of peer `i`'s control link, from /24 block `block`.
fn control_ips(block: u8, i: usize) -> (Ipv4Addr, Ipv4Addr) {
    let (third, base) = (block + (i / 64) as u8, (4 * (i % 64)) as u8);
    (Ipv4Addr::new(198, 19, third, base + 1), Ipv4Addr::new(198, 19, third, base + 2))
}

/// The first of `need` consecutive /24 blocks of 198.19.0.0/16 that no address in `used`
/// (the third octets of the host's 198.19.x.y addresses) is in.
fn free_block(used: &BTreeSet<u8>, need: usize) -> Option<u8> {
    (0..=256usize.saturating_sub(need))
        .find(|&b| (b..b + need).all(|x| !used.contains(&(x as u8))))
        .map(|b| b as u8)
}

/// The third octets of the host's addresses in 198.19.0.0/16.
fn used_blocks() -> BTreeSet<u8> {
    output("ip", &["-4", "-o", "addr", "show"])
        .split_whitespace()
        .filter_map(|w| w.split('/').next()?.parse::<Ipv4Addr>().ok())
        .filter(|a| a.octets()[..2] == [198, 19])
        .map(|a| a.octets()[2])
        .collect()
}

fn run_cmd(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), NetnsError> {
    let command = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetnsError::Command { command: command.clone(), stderr: e.to_string() })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let _ = pipe.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| NetnsError::Command { command: command.clone(), stderr: e.to_string() })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetnsError::Command {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Deletes the namespaces and host veths of earlier runs whose process is gone.
fn delete_stale() {
    let gone = |pid: Option<&str>| {
        pid.and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists())
    };
    for line in output("ip", &["netns", "list"]).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        if gone(name.strip_prefix("vt").and_then(|r| r.split('-').next())) {
            let _ = run_cmd("ip", &["netns", "delete", name], None);
        }
    }
    for line in output("ip", &["-o", "link", "show", "type", "veth"]).lines() {
        // "9: c24181x0@if2: <...>"
        let Some(name) = line.split_whitespace().nth(1) else { continue };
        let name = name.trim_end_matches(':').split('@').next().unwrap_or("");
        if gone(name.strip_prefix('c').and_then(|r| r.split('x').next())) {
            let _ = run_cmd("ip", &["link", "delete", name], None);
        }
    }
}

impl Netns {
    /// Makes the switch and `n` peer namespaces with their links, rate and loss.
    pub(crate) fn create(
        n: usize,
        rate_kbps: u64,
        loss: f64,
        per_pair: bool,
    ) -> Result<Self, NetnsError> {
        if n > MAX_PEERS {
            return Err(NetnsError::TooMany(n));
        }
        let uid = output("id", &["-u"]);
        if uid.trim() != "0" {
            return Err(NetnsError::Needs("root (network namespaces, tc, nft)".into()));
        }
        for tool in ["ip", "tc", "nft"] {
            if output("sh", &["-c", &format!("command -v {tool}")]).trim().is_empty() {
                return Err(NetnsError::Needs(format!(
                    "`{tool}` (Debian: apt-get install iproute2 nftables)"
                )));
            }
        }
        delete_stale();
        let block = free_block(&used_blocks(), n.div_ceil(64)).ok_or_else(|| {
            NetnsError::Needs("a free /24 in 198.19.0.0/16 for the control links".into())
        })?;
        let mut net = Netns {
            run: std::process::id(),
            n,
            block,
            cuts: BTreeSet::new(),
            made: Vec::new(),
            tbf: (rate_kbps > 0).then(|| Tbf::for_rate(rate_kbps)),
            per_pair,
            loss,
        };
        net.build()?;
        Ok(net)
    }

    fn switch(&self) -> String {
        format!("vt{}-sw", self.run)
    }

    fn ns(&self, i: usize) -> String {
        format!("vt{}-{i}", self.run)
    }

    fn add_ns(&mut self, name: &str) -> Result<(), NetnsError> {
        run_cmd("ip", &["netns", "add", name], None)?;
        self.made.push(name.to_string());
        run_cmd("ip", &["-n", name, "link", "set", "lo", "up"], None)
    }

    fn tbf_args(&self) -> Option<Vec<String>> {
        self.tbf.map(|t| {
            vec![
                "rate".into(),
                format!("{}kbit", t.rate_kbps),
                "burst".into(),
                t.burst_bytes.to_string(),
                "limit".into(),
                t.limit_bytes.to_string(),
            ]
        })
    }

    fn build(&mut self) -> Result<(), NetnsError> {
        let sw = self.switch();
        self.add_ns(&sw)?;
        run_cmd("ip", &["-n", &sw, "link", "add", "br0", "type", "bridge"], None)?;
        run_cmd("ip", &["-n", &sw, "link", "set", "br0", "up"], None)?;
        for i in 0..self.n {
            let ns = self.ns(i);
            self.add_ns(&ns)?;
            let port = format!("p{i}");
            run_cmd(
                "ip",
                &["-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0"],
                None,
            )?;
            run_cmd("ip", &["-n", &sw, "link", "set", "eth0", "netns", &ns], None)?;
            run_cmd("ip", &["-n", &sw, "link", "set", &port, "master", "br0", "up"], None)?;
            let data = format!("{}/16", data_ip(i));
            run_cmd("ip", &["-n", &ns, "addr", "add", &data, "dev", "eth0"], None)?;
            run_cmd("ip", &["-n", &ns, "link", "set", "eth0", "up"], None)?;
            let host_end = format!("c{}x{i}", self.run);
            let (h, p) = control_ips(self.block, i);
            run_cmd(
                "ip",
                &["link", "add", &host_end, "type", "veth", "peer", "name", "ctl", "netns", &ns],
                None,
            )?;
            run_cmd("ip", &["addr", "add", &format!("{h}/30"), "dev", &host_end], None)?;
            run_cmd("ip", &["link", "set", &host_end, "up"], None)?;
            run_cmd("ip", &["-n", &ns, "addr", "add", &format!("{p}/30"), "dev", "ctl"], None)?;
            run_cmd("ip", &["-n", &ns, "link", "set", "ctl", "up"], None)?;
            if let Some(tbf) = self.tbf_args().filter(|_| self.per_pair) {
                self.per_pair_qdiscs(&ns, &tbf, i)?;
            } else if let Some(tbf) = self.tbf_args() {
                for (space, dev) in [(ns.as_str(), "eth0"), (sw.as_str(), port.as_str())] {
                    let mut args = vec!["-n", space, "qdisc", "replace", "dev", dev, "root", "tbf"];
                    args.extend(tbf.iter().map(String::as_str));
                    run_cmd("tc", &args, None)?;
                }
            }
            run_cmd("ip", &["netns", "exec", &ns, "nft", "-f", "-"], Some(&self.ruleset()))?;
        }
        Ok(())
    }

    /// `--tbf-per-pair`: on peer `i`'s eth0, an htb whose class 1:(j+1) (packets to peer j,
    /// matched by address) holds a tbf of the rate; anything else (ARP) goes to an unshaped
    /// default class.
    fn per_pair_qdiscs(&self, ns: &str, tbf: &[String], i: usize) -> Result<(), NetnsError> {
        let dev = ["-n", ns];
        let on = |rest: &[&str]| -> Result<(), NetnsError> {
            let mut args: Vec<&str> = dev.to_vec();
            args.extend_from_slice(rest);
            run_cmd("tc", &args, None)
        };
        on(&["qdisc", "replace", "dev", "eth0", "root", "handle", "1:", "htb", "default", "ffff"])?;
        on(&[
            "class", "add", "dev", "eth0", "parent", "1:", "classid", "1:ffff", "htb", "rate",
            "10gbit",
        ])?;
        for j in (0..self.n).filter(|&j| j != i) {
            let class = format!("1:{:x}", j + 1);
            let handle = format!("{:x}:", j + 16);
            let dst = format!("{}/32", data_ip(j));
            on(&[
                "class", "add", "dev", "eth0", "parent", "1:", "classid", &class, "htb", "rate",
                "10gbit",
            ])?;
            let mut q =
                vec!["qdisc", "add", "dev", "eth0", "parent", &class, "handle", &handle, "tbf"];
            q.extend(tbf.iter().map(String::as_str));
            on(&q)?;
            on(&[
                "filter", "add", "dev", "eth0", "parent", "1:", "protocol", "ip", "prio", "1",
                "u32", "match", "ip", "dst", &dst, "flowid", &class,
            ])?;
        }
        Ok(())
    }

    /// Each peer's nft table: the cut set, and the loss rule when there is loss.
    fn ruleset(&self) -> String {
        // numgen random mod 1e6 < loss × 1e6: drop that share of the packets.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let per_million = (self.loss.clamp(0.0, 1.0) * 1e6).round() as u64;
        let loss = if per_million > 0 {
            format!(
                "        iifname \"eth0\" numgen random mod 1000000 < {per_million} counter drop\n"
            )
        } else {
            String::new()
        };
        format!(
            "table inet vecino {{\n    set cut {{ type ipv4_addr; }}\n    chain input {{\n        \
             type filter hook input priority 0; policy accept;\n        \
             iifname \"eth0\" ip saddr @cut counter drop\n{loss}    }}\n}}\n"
        )
    }

    /// Where each peer runs: in its namespace, transports on its data address, the API on its
    /// control address.
    pub(crate) fn hosts(&self) -> Vec<Host> {
        (0..self.n)
            .map(|i| Host {
                wrap: vec!["ip".into(), "netns".into(), "exec".into(), self.ns(i)],
                listen_ip: data_ip(i).into(),
                api_ip: control_ips(self.block, i).1.into(),
            })
            .collect()
    }

    /// Cuts (or restores) every link between the sets `a` and `b`, both directions.
    pub(crate) fn cut(
        &mut self,
        a: &[usize],
        b: &[usize],
        restore: bool,
    ) -> Result<(), NetnsError> {
        for (x, y) in [(a, b), (b, a)] {
            for &i in x {
                let change: Vec<usize> = y
                    .iter()
                    .copied()
                    .filter(|&j| j != i && self.cuts.contains(&(i, j)) == restore)
                    .collect();
                if change.is_empty() {
                    continue;
                }
                let ips: Vec<String> = change.iter().map(|&j| data_ip(j).to_string()).collect();
                let verb = if restore { "delete" } else { "add" };
                let elements = format!("{{ {} }}", ips.join(", "));
                let ns = self.ns(i);
                run_cmd(
                    "ip",
                    &[
                        "netns", "exec", &ns, "nft", verb, "element", "inet", "vecino", "cut",
                        &elements,
                    ],
                    None,
                )?;
                for j in change {
                    if restore {
                        self.cuts.remove(&(i, j));
                    } else {
                        self.cuts.insert((i, j));
                    }
                }
            }
        }
        Ok(())
    }

    /// Lifts every cut.
    pub(crate) fn restore_all(&mut self) -> Result<(), NetnsError> {
        let all: Vec<usize> = (0..self.n).collect();
        self.cut(&all, &all, true)
    }

    /// `tc -s qdisc` of both ends of every peer's link (the proof of the rate), as text.
    pub(crate) fn qdisc_counters(&self) -> String {
        let mut s = String::new();
        let sw = self.switch();
        for i in 0..self.n {
            let ns = self.ns(i);
            s.push_str(&format!("# p{i} {ns} eth0 (from the peer)\n"));
            s.push_str(&output(
                "ip",
                &["netns", "exec", &ns, "tc", "-s", "qdisc", "show", "dev", "eth0"],
            ));
            s.push_str(&format!("# p{i} {sw} p{i} (to the peer)\n"));
            s.push_str(&output(
                "ip",
                &["netns", "exec", &sw, "tc", "-s", "qdisc", "show", "dev", &format!("p{i}")],
            ));
            s.push_str(&format!("# p{i} {ns} nft (loss and cuts)\n"));
            s.push_str(&output(
                "ip",
                &["netns", "exec", &ns, "nft", "list", "table", "inet", "vecino"],
            ));
        }
        s
    }

    /// Bytes and packets sent and dropped by every tbf, from `tc -s -j qdisc` (for the report):
    /// per peer and end of its link, the tbfs' sums (one per peer, or one per other peer with
    /// `--tbf-per-pair`).
    pub(crate) fn qdisc_json(&self) -> serde_json::Value {
        let sw = self.switch();
        let q = |space: &str, dev: &str| {
            let text = output(
                "ip",
                &["netns", "exec", space, "tc", "-s", "-j", "qdisc", "show", "dev", dev],
            );
            let all: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
            let tbfs: Vec<&serde_json::Value> = all.iter().filter(|v| v["kind"] == "tbf").collect();
            if tbfs.is_empty() {
                return serde_json::Value::Null;
            }
            let sum = |k: &str| tbfs.iter().filter_map(|v| v[k].as_u64()).sum::<u64>();
            serde_json::json!({
                "kind": "tbf",
                "qdiscs": tbfs.len(),
                "bytes": sum("bytes"),
                "packets": sum("packets"),
                "drops": sum("drops"),
                "overlimits": sum("overlimits"),
            })
        };
        let peers: Vec<serde_json::Value> = (0..self.n)
            .map(|i| {
                serde_json::json!({
                    "peer": format!("p{i}"),
                    "address": data_ip(i).to_string(),
                    "from_peer": q(&self.ns(i), "eth0"),
                    "to_peer": q(&sw, &format!("p{i}")),
                })
            })
            .collect();
        let prefix = format!("vt{}-", self.run);
        serde_json::json!({
            "namespaces": prefix,
            "tbf": self.tbf,
            "tbf_per_pair": self.per_pair,
            "loss": self.loss,
            "peers": peers,
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // The host's ends of the control links first: a namespace's veths go with it only
        // once the kernel frees it, which sockets still closing can delay by a minute.
        for i in 0..self.n {
            let _ = run_cmd("ip", &["link", "delete", &format!("c{}x{i}", self.run)], None);
        }
        // Then the peers' namespaces, then the switch.
        for name in self.made.iter().rev() {
            let _ = run_cmd("ip", &["netns", "delete", name], None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_and_in_the_benchmark_range() {
        let mut seen = BTreeSet::new();
        for i in 0..MAX_PEERS {
            let d = data_ip(i);
            let (h, p) = control_ips(7, i);
            assert_eq!(d.octets()[..2], [198, 18]);
            assert_eq!(h.octets()[..2], [198, 19]);
            assert!(d.octets()[3] >= 10 && d.octets()[3] < 255);
            // The control /30: network, host, peer, broadcast.
            assert_eq!(h.octets()[3] % 4, 1);
            assert_eq!(u32::from(p), u32::from(h) + 1);
            assert!(seen.insert(d) && seen.insert(h) && seen.insert(p), "peer {i}");
            assert!((7..11).contains(&h.octets()[2]), "200 peers fit in 4 blocks");
        }
        let used: BTreeSet<u8> = [0, 1, 3].into_iter().collect();
        assert_eq!(free_block(&used, 1), Some(2));
        assert_eq!(free_block(&used, 2), Some(4));
        assert_eq!(free_block(&(0..=255).collect(), 1), None);
    }

    fn plan(loss: f64) -> Netns {
        // Nothing made: dropping it deletes nothing.
        Netns {
            run: 1,
            n: 2,
            block: 0,
            cuts: BTreeSet::new(),
            made: Vec::new(),
            tbf: Some(Tbf::for_rate(256)),
            per_pair: false,
            loss,
        }
    }

    #[test]
    fn the_ruleset_drops_cut_peers_and_the_loss_share() {
        let r = plan(0.01).ruleset();
        assert!(r.contains("ip saddr @cut counter drop"), "{r}");
        assert!(r.contains("numgen random mod 1000000 < 10000 counter drop"), "{r}");
        let none = plan(0.0);
        assert!(!none.ruleset().contains("numgen"));
        assert_eq!(Tbf::for_rate(256).limit_bytes, 32_000);
        assert_eq!(Tbf::for_rate(56).limit_bytes, 16 * 1024);
        let hosts = none.hosts();
        assert_eq!(hosts[1].wrap, ["ip", "netns", "exec", "vt1-1"]);
        assert_eq!(hosts[1].listen_ip.to_string(), "198.18.0.11");
    }
}
