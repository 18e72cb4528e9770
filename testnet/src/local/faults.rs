//! The fault schedule of `local` and `soak`: a TOML file (examples in testnet/faults/), compiled
//! into a time-ordered list of actions on peers.
//!
//! ```toml
//! # Times are seconds after traffic starts (after the initial convergence).
//! [groups]                      # named sets of peers: "a..b" (indices, b exclusive),
//! east = "0%..50%"              # "a%..b%" (shares of --nodes), or a list [0, 3, 7]
//! west = "50%..100%"
//!
//! [[partition]]                 # cut every link between two groups, both directions
//! at = 60.0
//! duration = 30.0
//! groups = ["east", "west"]
//!
//! [[flap]]                      # the links between two groups go down and up repeatedly
//! groups = ["east", "west"]
//! at = 10.0                     # first down
//! until = 100.0                 # no new down after this
//! down = 5.0
//! up = 10.0
//!
//! [[kill]]                      # kill -9 one peer, restart it on its data `down` s later
//! node = "50%"                  # an index, a share of --nodes, or "custodian": the peer
//! at = 40.0                     # holding the most postcards in custody at that moment
//! down = 10.0
//! ```
//!
//! Cuts are a set per peer: overlapping faults on the same pair lift each other's cuts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a fault file is unusable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FaultsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// Not valid TOML, unknown keys, wrong types.
    #[error("fault file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A value is out of range or refers to nothing.
    #[error("fault file: {0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FaultFile {
    #[serde(default)]
    groups: BTreeMap<String, Selection>,
    #[serde(default)]
    partition: Vec<Partition>,
    #[serde(default)]
    flap: Vec<Flap>,
    #[serde(default)]
    kill: Vec<Kill>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
enum Selection {
    List(Vec<usize>),
    Range(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Partition {
    at: f64,
    duration: f64,
    groups: [String; 2],
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Flap {
    groups: [String; 2],
    at: f64,
    until: f64,
    down: f64,
    up: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Kill {
    node: NodeRef,
    at: f64,
    down: f64,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
enum NodeRef {
    Index(usize),
    Share(String),
}

/// One scheduled action.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Cut every link between the two sets.
    Cut(Vec<usize>, Vec<usize>),
    /// Restore them (a heal).
    Restore(Vec<usize>, Vec<usize>),
    /// `kill -9` a peer.
    Kill(usize),
    /// Start it again.
    Restart(usize),
    /// `kill -9` the peer holding the most postcards in custody at that moment (the
    /// schedule's `n`th such kill).
    KillCustodian(usize),
    /// Start again the peer the `n`th custodian kill chose.
    RestartCustodian(usize),
}

/// Actions at seconds after the start of traffic, in time order.
pub(crate) type Schedule = Vec<(f64, Action)>;

/// A fault interval (start, end) in seconds, for shading charts.
pub(crate) fn intervals(s: &Schedule) -> Vec<(f64, f64)> {
    let mut open: Vec<(f64, &Action)> = Vec::new();
    let mut out = Vec::new();
    for (t, a) in s {
        match a {
            Action::Cut(..) | Action::Kill(_) | Action::KillCustodian(_) => open.push((*t, a)),
            Action::Restore(x, y) => {
                if let Some(k) =
                    open.iter().position(|(_, o)| **o == Action::Cut(x.clone(), y.clone()))
                {
                    out.push((open.remove(k).0, *t));
                }
            }
            Action::Restart(i) => {
                if let Some(k) = open.iter().position(|(_, o)| **o == Action::Kill(*i)) {
                    out.push((open.remove(k).0, *t));
                }
            }
            Action::RestartCustodian(j) => {
                if let Some(k) = open.iter().position(|(_, o)| **o == Action::KillCustodian(*j)) {
                    out.push((open.remove(k).0, *t));
                }
            }
        }
    }
    out
}

impl FaultFile {
    /// Reads a fault file.
    pub(crate) fn load(path: &Path) -> Result<Self, FaultsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| FaultsError::Read { path: path.to_owned(), source })?;
        toml::from_str(&text)
            .map_err(|e| FaultsError::Parse { path: path.to_owned(), message: e.to_string() })
    }

    /// The convoy-style schedule of `soak`: two halves whose links flap (`down` s down, `up` s
    /// up) from `start` until `end`.
    pub(crate) fn convoy(start: f64, end: f64, down: f64, up: f64) -> Self {
        let mut groups = BTreeMap::new();
        groups.insert("a".to_string(), Selection::Range("0%..50%".into()));
        groups.insert("b".to_string(), Selection::Range("50%..100%".into()));
        FaultFile {
            groups,
            flap: vec![Flap { groups: ["a".into(), "b".into()], at: start, until: end, down, up }],
            ..FaultFile::default()
        }
    }

    /// Compiles the file for `n` peers; actions after `end` are dropped (every cut still
    /// open is restored at the end of the run by the caller).
    pub(crate) fn compile(&self, n: usize, end: f64) -> Result<Schedule, FaultsError> {
        let inv = |m: String| FaultsError::Invalid(m);
        let mut groups = BTreeMap::new();
        for (name, sel) in &self.groups {
            let g = select(sel, n).map_err(|m| inv(format!("group {name}: {m}")))?;
            if g.is_empty() {
                return Err(inv(format!("group {name} is empty with {n} nodes")));
            }
            groups.insert(name.as_str(), g);
        }
        let group = |name: &str| {
            groups.get(name).cloned().ok_or_else(|| inv(format!("no group named {name:?}")))
        };
        let time = |what: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(v)
            } else {
                Err(inv(format!("{what} must be a finite number ≥ 0, not {v}")))
            }
        };
        let mut out: Schedule = Vec::new();
        for p in &self.partition {
            let (a, b) = (group(&p.groups[0])?, group(&p.groups[1])?);
            let at = time("partition.at", p.at)?;
            let d = time("partition.duration", p.duration)?;
            out.push((at, Action::Cut(a.clone(), b.clone())));
            out.push((at + d, Action::Restore(a, b)));
        }
        for f in &self.flap {
            let (a, b) = (group(&f.groups[0])?, group(&f.groups[1])?);
            let (down, up) = (time("flap.down", f.down)?, time("flap.up", f.up)?);
            if down + up < 0.5 {
                return Err(inv("flap.down + flap.up must be at least 0.5 s".into()));
            }
            let mut t = time("flap.at", f.at)?;
            // Bounded: at most 100 000 cycles.
            for _ in 0..100_000 {
                if t > f.until.min(end) {
                    break;
                }
                out.push((t, Action::Cut(a.clone(), b.clone())));
                out.push((t + down, Action::Restore(a.clone(), b.clone())));
                t += down + up;
            }
        }
        for (j, k) in self.kill.iter().enumerate() {
            let at = time("kill.at", k.at)?;
            let back = at + time("kill.down", k.down)?;
            if matches!(&k.node, NodeRef::Share(s) if s.trim() == "custodian") {
                out.push((at, Action::KillCustodian(j)));
                out.push((back, Action::RestartCustodian(j)));
                continue;
            }
            let i = match &k.node {
                NodeRef::Index(i) => *i,
                NodeRef::Share(s) => share(s, n).map_err(|m| inv(format!("kill.node: {m}")))?,
            };
            if i >= n {
                return Err(inv(format!("kill.node {i} is not below --nodes {n}")));
            }
            out.push((at, Action::Kill(i)));
            out.push((back, Action::Restart(i)));
        }
        out.sort_by(|x, y| x.0.total_cmp(&y.0));
        out.retain(|(t, _)| *t <= end);
        Ok(out)
    }
}

fn share(s: &str, n: usize) -> Result<usize, String> {
    let s = s.trim();
    match s.strip_suffix('%') {
        Some(p) => {
            let p: f64 = p.trim().parse().map_err(|_| format!("bad share {s:?}"))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(format!("share {s:?} out of 0..100 %"));
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok(((p / 100.0) * n as f64).round() as usize)
        }
        None => s.parse().map_err(|_| format!("bad index {s:?}")),
    }
}

fn select(sel: &Selection, n: usize) -> Result<Vec<usize>, String> {
    let v: Vec<usize> = match sel {
        Selection::List(v) => v.clone(),
        Selection::Range(r) => {
            let (a, b) = r.split_once("..").ok_or_else(|| format!("bad range {r:?}"))?;
            (share(a, n)?..share(b, n)?.min(n)).collect()
        }
    };
    if let Some(bad) = v.iter().find(|&&i| i >= n) {
        return Err(format!("node {bad} is not below --nodes {n}"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_compiles_to_ordered_actions() {
        let f: FaultFile = toml::from_str(
            "[groups]\na = \"0%..50%\"\nb = [2, 3]\n\
             [[partition]]\nat = 10.0\nduration = 5.0\ngroups = [\"a\", \"b\"]\n\
             [[flap]]\ngroups = [\"a\", \"b\"]\nat = 20.0\nuntil = 31.0\ndown = 2.0\nup = 3.0\n\
             [[kill]]\nnode = \"75%\"\nat = 1.0\ndown = 4.0\n",
        )
        .unwrap();
        let s = f.compile(4, 100.0).unwrap();
        let a = vec![0, 1];
        let b = vec![2, 3];
        assert_eq!(s[0], (1.0, Action::Kill(3)));
        assert_eq!(s[1], (5.0, Action::Restart(3)));
        assert_eq!(s[2], (10.0, Action::Cut(a.clone(), b.clone())));
        assert_eq!(s[3], (15.0, Action::Restore(a.clone(), b.clone())));
        // Flap downs at 20, 25, 30.
        let cuts = s.iter().filter(|(_, x)| matches!(x, Action::Cut(..))).count();
        assert_eq!(cuts, 4);
        assert_eq!(intervals(&s).len(), 5);
        assert!(f.compile(2, 100.0).is_err(), "b names nodes 2 and 3");
        let f: FaultFile =
            toml::from_str("[[kill]]\nnode = \"custodian\"\nat = 3.0\ndown = 2.0\n").unwrap();
        let s = f.compile(4, 100.0).unwrap();
        assert_eq!(s, vec![(3.0, Action::KillCustodian(0)), (5.0, Action::RestartCustodian(0))]);
        assert_eq!(intervals(&s), vec![(3.0, 5.0)]);
        let bad: Result<FaultFile, _> = toml::from_str("[[partition]]\nat = 1.0\nfor = 2.0\n");
        assert!(bad.is_err());
    }
}
