//! `figures mesh --nft`: the kernel's count of every peer's bytes on loopback, to check the
//! node's own wire counters against.
//!
//! One nftables table with one chain on the output hook of `lo`, four counters per peer: TCP
//! from and to its TCP port, UDP from and to its QUIC port. On loopback every packet passes
//! the output hook once, so a packet from port P is a send of the peer listening on P and a
//! packet to port P a receipt; the byte count is the IP packet's length (IP and TCP/UDP
//! headers included, no link layer). A TCP connection dialled from an ephemeral port (libp2p
//! dials from its listening port, and falls back to another one only when that 4-tuple is
//! taken) has one side no counter names: [`Counts::unattributed`] counts that side.
//!
//! Two things make loopback differ from a real path: the kernel hands large TCP writes and
//! GSO UDP sends to `lo` as one packet with one set of headers, where a real link carries one
//! per MTU; in an idle overlay every write is far below the MTU, so this does not matter there.
//!
//! The table is removed when the [`Nft`] is dropped (a panic included).

use std::process::{Command, Stdio};

use serde_json::Value;

/// A peer's listening ports: TCP, and UDP for QUIC.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ports {
    pub(crate) tcp: u16,
    pub(crate) udp: u16,
}

/// Bytes per peer, by direction and transport, at one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counts {
    /// Per peer: [tcp sent, quic sent, tcp received, quic received].
    pub(crate) peers: Vec<[f64; 4]>,
    /// TCP bytes from an ephemeral port to a peer's port (a dial that could not reuse its
    /// listening port): sent by some peer, counted as received by the listener only.
    pub(crate) unattributed: f64,
}

/// The installed table; removed on drop.
#[derive(Debug)]
pub(crate) struct Nft {
    table: String,
    n: usize,
}

fn nft(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    use std::io::Write;
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().ok_or("nft stdin")?;
        pipe.write_all(text.as_bytes()).map_err(|e| format!("nft stdin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("nft {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Nft {
    /// Installs the counters for `ports` (needs root and nftables).
    pub(crate) fn install(ports: &[Ports]) -> Result<Nft, String> {
        let table = format!("vecino_figures_{}", std::process::id());
        let mut script = format!(
            "table inet {table} {{\n  chain out {{\n    type filter hook output priority 0; policy accept;\n"
        );
        for (i, p) in ports.iter().enumerate() {
            for (proto, dir, port, what) in [
                ("tcp", "sport", p.tcp, "tcp sent"),
                ("udp", "sport", p.udp, "quic sent"),
                ("tcp", "dport", p.tcp, "tcp received"),
                ("udp", "dport", p.udp, "quic received"),
            ] {
                script.push_str(&format!(
                    "    oifname \"lo\" {proto} {dir} {port} counter comment \"{i} {what}\"\n"
                ));
            }
        }
        let tcp = ports.iter().map(|p| p.tcp.to_string()).collect::<Vec<_>>().join(", ");
        script.push_str(&format!(
            "    oifname \"lo\" tcp dport {{ {tcp} }} tcp sport != {{ {tcp} }} counter comment \"unattributed\"\n  }}\n}}\n"
        ));
        nft(&["-f", "-"], Some(&script))?;
        Ok(Nft { table, n: ports.len() })
    }

    /// The counters now.
    pub(crate) fn read(&self) -> Result<Counts, String> {
        let text = nft(&["-j", "list", "table", "inet", &self.table], None)?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("nft json: {e}"))?;
        let mut counts = Counts { peers: vec![[0.0; 4]; self.n], unattributed: 0.0 };
        let rules = v["nftables"].as_array().ok_or("nft json: no nftables array")?;
        for rule in rules.iter().filter_map(|r| r.get("rule")) {
            let Some(comment) = rule["comment"].as_str() else { continue };
            let bytes = rule["expr"]
                .as_array()
                .and_then(|e| e.iter().find_map(|x| x["counter"]["bytes"].as_f64()))
                .ok_or_else(|| format!("nft json: no counter in rule {comment}"))?;
            if comment == "unattributed" {
                counts.unattributed = bytes;
                continue;
            }
            let mut words = comment.split(' ');
            let i: usize = words.next().and_then(|w| w.parse().ok()).ok_or("nft: bad comment")?;
            let slot = match (words.next(), words.next()) {
                (Some("tcp"), Some("sent")) => 0,
                (Some("quic"), Some("sent")) => 1,
                (Some("tcp"), Some("received")) => 2,
                (Some("quic"), Some("received")) => 3,
                _ => return Err(format!("nft: bad comment {comment}")),
            };
            if let Some(p) = counts.peers.get_mut(i) {
                p[slot] = bytes;
            }
        }
        Ok(counts)
    }
}

impl Drop for Nft {
    fn drop(&mut self) {
        if let Err(e) = nft(&["delete", "table", "inet", &self.table], None) {
            eprintln!("could not remove the nftables table {}: {e}", self.table);
        }
    }
}

/// The TCP and QUIC ports a peer advertises (`/v1/status`).
pub(crate) fn ports_of(status: &Value) -> Option<Ports> {
    let mut tcp = None;
    let mut udp = None;
    for a in status["advertise"].as_array()?.iter().filter_map(Value::as_str) {
        let parts: Vec<&str> = a.split('/').collect();
        for w in parts.windows(2) {
            match w[0] {
                "tcp" => tcp = tcp.or_else(|| w[1].parse().ok()),
                "udp" if a.contains("/quic-v1") => udp = udp.or_else(|| w[1].parse().ok()),
                _ => {}
            }
        }
    }
    Some(Ports { tcp: tcp?, udp: udp? })
}
