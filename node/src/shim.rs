//! The link shim (test only): realistic links between real processes on one host.
//!
//! Off unless `vecino run --emulate-links FILE` is given. Inside the transport, every frame to a
//! peer is held for the link's one-way delay (half the RTT from a matrix row or an explicit
//! link), serialised at the link's rate, and dropped with the link's loss probability; frames to
//! and from a *cut* peer are dropped in both directions (the transport connection stays up, as
//! it would through a radio fade), so the engine sees exactly what a partition looks like.
//! Cuts are set and lifted through `POST /v1/shim/cut` and `/v1/shim/restore`. This kernel has
//! no netem; where root is available, netns + tbf + nft do the same outside the process.
//!
//! The file is shared by every node of a test network; each node reads its own row:
//!
//! ```toml
//! matrix = "planetlab490.txt"                   # optional: RTTs in ms, first line n; relative
//!                                               # to this file (testnet/data/ ships some)
//! [nodes]                                       # peer id → matrix row
//! "12D3KooW…a" = 0
//! "12D3KooW…b" = 17
//! [default]                                     # links not given otherwise
//! rtt_ms = 0.0
//! rate_kbps = 0                                 # 0 = unlimited
//! loss = 0.0
//! [[link]]                                      # explicit links win over the matrix
//! a = "12D3KooW…a"
//! b = "12D3KooW…b"
//! rtt_ms = 80.0
//! rate_kbps = 256
//! loss = 0.01
//! ```
//!
//! A matrix with missing pairs (`-1`) is filled as the simulator fills it
//! ([`RttMatrix::filled`]: the shortest two-hop path through a host measured to both), and
//! the node logs once how many pairs were missing; one whose holes cannot be filled, or that
//! is not a valid matrix, is refused when the file is loaded.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::Duration;

use libp2p::PeerId;
use serde::Deserialize;
use vecino_coords::topology::RttMatrix;

/// Why the emulation file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// Could not read a file.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Malformed content.
    #[error("link emulation file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    matrix: Option<PathBuf>,
    #[serde(default)]
    nodes: BTreeMap<String, usize>,
    #[serde(default)]
    default: Params,
    #[serde(default)]
    link: Vec<LinkLine>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    rtt_ms: f64,
    #[serde(default)]
    rate_kbps: u64,
    #[serde(default)]
    loss: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkLine {
    a: String,
    b: String,
    #[serde(flatten)]
    params: Params,
}

/// What the shim does to frames towards one peer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkShape {
    /// Added one-way delay.
    pub delay: Duration,
    /// Serialisation rate in bits per second (`None`: unlimited).
    pub rate_bps: Option<u64>,
    /// Drop probability.
    pub loss: f64,
}

/// The shim of one node.
#[derive(Debug)]
pub struct Shim {
    row: Option<Vec<f64>>,
    rows: HashMap<PeerId, usize>,
    default: LinkShape,
    links: HashMap<PeerId, LinkShape>,
    cut: RwLock<HashSet<PeerId>>,
}

fn shape(p: Params) -> LinkShape {
    LinkShape {
        delay: Duration::from_secs_f64((p.rtt_ms.max(0.0) / 2.0) / 1e3),
        rate_bps: (p.rate_kbps > 0).then(|| p.rate_kbps.saturating_mul(1000)),
        loss: p.loss.clamp(0.0, 1.0),
    }
}

impl Shim {
    /// Reads the emulation file as node `me`.
    pub fn load(path: &Path, me: &PeerId) -> Result<Self, ShimError> {
        let perr = |message: String| ShimError::Parse { path: path.to_owned(), message };
        let text = std::fs::read_to_string(path)
            .map_err(|source| ShimError::Read { path: path.to_owned(), source })?;
        let file: File = toml::from_str(&text).map_err(|e| perr(e.to_string()))?;
        let mut rows = HashMap::new();
        for (peer, row) in &file.nodes {
            let p: PeerId = peer.parse().map_err(|e| perr(format!("bad peer id {peer}: {e}")))?;
            rows.insert(p, *row);
        }
        let row = match (&file.matrix, rows.get(me)) {
            (Some(m), Some(&r)) => {
                let m = if m.is_relative() {
                    path.parent().unwrap_or(Path::new(".")).join(m)
                } else {
                    m.clone()
                };
                Some(matrix_row(&m, r)?)
            }
            _ => None,
        };
        let mut links = HashMap::new();
        for l in &file.link {
            let a: PeerId = l.a.parse().map_err(|e| perr(format!("bad peer id {}: {e}", l.a)))?;
            let b: PeerId = l.b.parse().map_err(|e| perr(format!("bad peer id {}: {e}", l.b)))?;
            if &a == me {
                links.insert(b, shape(l.params));
            } else if &b == me {
                links.insert(a, shape(l.params));
            }
        }
        for p in [file.default].iter().chain(file.link.iter().map(|l| &l.params)) {
            if !(p.rtt_ms.is_finite() && p.loss.is_finite()) {
                return Err(perr("rtt_ms and loss must be finite".into()));
            }
        }
        Ok(Shim { row, rows, default: shape(file.default), links, cut: RwLock::default() })
    }

    /// How frames to `peer` are shaped.
    pub fn shape(&self, peer: &PeerId) -> LinkShape {
        if let Some(s) = self.links.get(peer) {
            return *s;
        }
        let from_matrix = self
            .row
            .as_ref()
            .zip(self.rows.get(peer))
            .and_then(|(row, &r)| row.get(r).copied())
            .filter(|rtt| *rtt >= 0.0);
        match from_matrix {
            Some(rtt_ms) => {
                LinkShape { delay: Duration::from_secs_f64(rtt_ms / 2e3), ..self.default }
            }
            None => self.default,
        }
    }

    /// True while the link to `peer` is cut.
    pub fn is_cut(&self, peer: &PeerId) -> bool {
        self.cut.read().map(|c| c.contains(peer)).unwrap_or(false)
    }

    /// Cuts the links to `peers`.
    pub fn cut(&self, peers: &[PeerId]) {
        if let Ok(mut c) = self.cut.write() {
            c.extend(peers.iter().copied());
        }
    }

    /// Restores the links to `peers`, or every link if `None`.
    pub fn restore(&self, peers: Option<&[PeerId]>) {
        if let Ok(mut c) = self.cut.write() {
            match peers {
                Some(ps) => ps.iter().for_each(|p| {
                    c.remove(p);
                }),
                None => c.clear(),
            }
        }
    }

    /// The peers whose links are cut.
    pub fn cut_peers(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .cut
            .read()
            .map(|c| c.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// Row `r` of an RTT matrix file (first line n, then n rows of n values in ms, `-1` where
/// missing), missing pairs filled ([`RttMatrix::filled`]; logged once).
fn matrix_row(path: &Path, r: usize) -> Result<Vec<f64>, ShimError> {
    let perr = |message: String| ShimError::Parse { path: path.to_owned(), message };
    let text = std::fs::read_to_string(path)
        .map_err(|source| ShimError::Read { path: path.to_owned(), source })?;
    let m = RttMatrix::parse(&text).map_err(|e| perr(e.to_string()))?;
    if r >= m.len() {
        return Err(perr(format!("row {r} out of range (n = {})", m.len())));
    }
    let m = m.filled().map_err(|e| {
        perr(format!(
            "{} of {} pairs missing and they cannot all be filled: {e}",
            m.missing_pairs(),
            m.pairs()
        ))
    })?;
    if let Some(f) = m.fill() {
        tracing::warn!(matrix = %path.display(), "link shim: {}", f.describe(m.pairs()));
    }
    Ok(m.row(r).to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_links_and_cuts() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        // 1–2 missing: filled through host 0, 100 + 40 ms.
        std::fs::write(dir.path().join("m.txt"), "3\n0 100 40\n100 0 -1\n40 -1 0\n").unwrap();
        let file = dir.path().join("links.toml");
        std::fs::write(
            &file,
            format!(
                "matrix = \"m.txt\"\n[nodes]\n\"{a}\" = 0\n\"{b}\" = 1\n\"{c}\" = 2\n\
                 [default]\nrate_kbps = 1000\n[[link]]\na = \"{c}\"\nb = \"{a}\"\nrtt_ms = 10.0\nloss = 0.5\n"
            ),
        )
        .unwrap();
        let shim = Shim::load(&file, &a).unwrap();
        let to_b = shim.shape(&b);
        assert_eq!(to_b.delay, Duration::from_millis(50));
        assert_eq!(to_b.rate_bps, Some(1_000_000));
        let to_c = shim.shape(&c);
        assert_eq!((to_c.delay, to_c.loss), (Duration::from_millis(5), 0.5));
        assert_eq!(shim.shape(&PeerId::random()).delay, Duration::ZERO);
        shim.cut(&[b, c]);
        assert!(shim.is_cut(&b) && shim.is_cut(&c));
        shim.restore(Some(&[b]));
        assert!(!shim.is_cut(&b) && shim.is_cut(&c));
        shim.restore(None);
        assert!(!shim.is_cut(&c));

        let from_b = Shim::load(&file, &b).unwrap();
        assert_eq!(from_b.shape(&c).delay, Duration::from_millis(70), "a missing pair is filled");
        assert_eq!(from_b.shape(&a).delay, Duration::from_millis(50));
        std::fs::write(&file, "bogus = 1\n").unwrap();
        assert!(Shim::load(&file, &a).is_err());
    }

    #[test]
    fn matrices_that_cannot_be_used_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let a = PeerId::random();
        let file = dir.path().join("links.toml");
        std::fs::write(&file, format!("matrix = \"m.txt\"\n[nodes]\n\"{a}\" = 0\n")).unwrap();
        let refused = |matrix: &str| {
            std::fs::write(dir.path().join("m.txt"), matrix).unwrap();
            Shim::load(&file, &a).unwrap_err().to_string()
        };
        // Host 0 measured to nobody.
        let e = refused("3\n0 -1 -1\n-1 0 5\n-1 5 0\n");
        assert!(e.contains("2 of 3 pairs missing") && e.contains("host 0 has no measured"), "{e}");
        // Two groups with no measured pair between them.
        let e = refused("4\n0 10 -1 -1\n10 0 -1 -1\n-1 -1 0 10\n-1 -1 10 0\n");
        assert!(e.contains("no path of measured pairs joins hosts 0 and 2"), "{e}");
        // Not a matrix: asymmetric, missing on one side only, a bad value, a short row.
        assert!(refused("2\n0 10\n20 0\n").contains("asymmetric pair at row 0, column 1"));
        assert!(refused("2\n0 -1\n20 0\n").contains("asymmetric"));
        assert!(refused("2\n0 x\nx 0\n").contains("bad value at row 0, column 1"));
        assert!(refused("3\n0 1 2\n1 0 3\n2 3\n").contains("expected 9 values, found 8"));
        assert!(refused("3\n0 1 2\n1 0 -3\n2 -3 0\n").contains("unusable value at row 1"));
        // Only the node's own row must exist.
        std::fs::write(&file, format!("matrix = \"m.txt\"\n[nodes]\n\"{a}\" = 5\n")).unwrap();
        assert!(refused("2\n0 10\n10 0\n").contains("row 5 out of range (n = 2)"));
    }
}
