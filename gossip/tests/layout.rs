//! The engine's layout rules (`docs/ARCHITECTURE.md`), checked on the source: the file graph
//! of `gossip/src` (a file depends on the files whose items it names by `crate::`, `super::`
//! or `self::` paths, test modules aside) has no cycle; only the engine's own module holds
//! `impl Engine`; and no machine names `Engine`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, relative to `src`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a readable source folder") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.strip_prefix(src()).expect("under src").to_path_buf());
        }
    }
}

/// The module path of a file: `engine/mod.rs` → [engine], `links/link.rs` → [links, link].
fn module_of(file: &Path) -> Vec<String> {
    let mut parts: Vec<String> =
        file.with_extension("").iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The file that defines the longest prefix of `path` (a module path from the crate root).
fn file_of(path: &[String], known: &BTreeSet<PathBuf>) -> Option<PathBuf> {
    for n in (1..=path.len()).rev() {
        let stem: PathBuf = path[..n].iter().collect();
        for candidate in [stem.with_extension("rs"), stem.join("mod.rs")] {
            if known.contains(&candidate) {
                return Some(candidate);
            }
        }
    }
    None
}

/// The source without its test modules and comments.
fn production_code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]")
            && lines.peek().is_some_and(|next| next.trim_start().contains("mod "))
        {
            break; // test modules come last
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The module paths a file names: `crate::a::b`, `super::a`, `self::a`, expanded from `use`
/// groups (`use crate::a::{b, c::d}`) too.
fn named_paths(code: &str, module: &[String], is_mod_file: bool) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // `self` is the file's module; `super` its parent.
    let here: Vec<String> = module.to_vec();
    let parent: Vec<String> = module[..module.len().saturating_sub(1)].to_vec();
    let _ = is_mod_file;
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let rest: String = bytes[i..bytes.len().min(i + 7)].iter().collect();
        let (base, skip) = if rest.starts_with("crate::") {
            (Vec::new(), 7)
        } else if rest.starts_with("super::") {
            (parent.clone(), 7)
        } else if rest.starts_with("self::") {
            (here.clone(), 6)
        } else {
            i += 1;
            continue;
        };
        // Not part of a longer identifier.
        if i > 0 && (bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_') {
            i += 1;
            continue;
        }
        let mut path = base;
        let mut j = i + skip;
        loop {
            let start = j;
            while j < bytes.len() && (bytes[j].is_alphanumeric() || bytes[j] == '_') {
                j += 1;
            }
            if j > start {
                path.push(bytes[start..j].iter().collect());
            }
            if bytes[j..].starts_with(&[':', ':']) && bytes.get(j + 2) != Some(&'{') {
                j += 2;
                continue;
            }
            break;
        }
        out.push(path.clone());
        // A group: each member names a path below this one.
        if bytes[j..].starts_with(&[':', ':', '{']) {
            let mut depth = 0;
            let mut k = j + 2;
            let mut item = String::new();
            while k < bytes.len() {
                match bytes[k] {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                if depth == 1 && (bytes[k] == ',' || bytes[k] == '{') {
                    if !item.trim().is_empty() {
                        let mut p = path.clone();
                        p.extend(item.trim().split("::").map(str::to_owned));
                        out.push(p);
                    }
                    item.clear();
                } else if depth >= 1 {
                    item.push(bytes[k]);
                }
                k += 1;
            }
            if !item.trim().is_empty() {
                let mut p = path.clone();
                p.extend(item.trim().split("::").map(|s| s.trim_end_matches('}').to_owned()));
                out.push(p);
            }
            j = k;
        }
        i = j.max(i + 1);
    }
    out
}

fn graph() -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let mut all = Vec::new();
    files(&src(), &mut all);
    let known: BTreeSet<PathBuf> = all.iter().cloned().collect();
    let mut graph = BTreeMap::new();
    for file in &all {
        // The simulator is a host of the engine, and lib.rs its façade.
        if file.starts_with("sim") || file == Path::new("lib.rs") {
            continue;
        }
        let text = std::fs::read_to_string(src().join(file)).expect("a readable file");
        let module = module_of(file);
        let is_mod = file.ends_with("mod.rs");
        let mut deps = BTreeSet::new();
        for path in named_paths(&production_code(&text), &module, is_mod) {
            if let Some(dep) = file_of(&path, &known)
                && dep != *file
                && dep != Path::new("lib.rs")
            {
                deps.insert(dep);
            }
        }
        graph.insert(file.clone(), deps);
    }
    graph
}

/// A cycle in `graph`, if there is one.
fn cycle(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Option<Vec<PathBuf>> {
    fn visit(
        node: &PathBuf,
        graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        done: &mut BTreeSet<PathBuf>,
        stack: &mut Vec<PathBuf>,
    ) -> Option<Vec<PathBuf>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut c = stack[at..].to_vec();
            c.push(node.clone());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.clone());
        for dep in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(dep, graph, done, stack) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut done, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_file_graph_of_the_engine_has_no_cycle() {
    let graph = graph();
    for (file, deps) in &graph {
        let deps: Vec<String> = deps.iter().map(|d| d.display().to_string()).collect();
        eprintln!("{} <- {}", file.display(), deps.join(", "));
    }
    assert!(graph.len() > 20, "the engine's files were found: {}", graph.len());
    // The graph is what it claims to be: known edges are found.
    let core = Path::new("engine/core.rs");
    assert!(graph[Path::new("broadcast/mod.rs")].contains(core));
    assert!(graph[Path::new("links/link.rs")].contains(Path::new("broadcast/tree.rs")));
    if let Some(c) = cycle(&graph) {
        let shown: Vec<String> = c.iter().map(|p| p.display().to_string()).collect();
        panic!("a cycle of file imports: {}", shown.join(" -> "));
    }
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let mut g = BTreeMap::new();
    let (a, b, c) = (PathBuf::from("a.rs"), PathBuf::from("b.rs"), PathBuf::from("c.rs"));
    g.insert(a.clone(), BTreeSet::from([b.clone()]));
    g.insert(b.clone(), BTreeSet::from([c.clone()]));
    g.insert(c.clone(), BTreeSet::new());
    assert_eq!(cycle(&g), None);
    g.insert(c.clone(), BTreeSet::from([a.clone()]));
    assert_eq!(cycle(&g), Some(vec![a.clone(), b, c, a]));
}

#[test]
fn only_the_engine_module_holds_impl_engine_and_no_machine_names_it() {
    let mut all = Vec::new();
    files(&src(), &mut all);
    let mut impls = Vec::new();
    for file in &all {
        let text = std::fs::read_to_string(src().join(file)).expect("a readable file");
        let code = production_code(&text);
        let in_engine = file.starts_with("engine");
        let host = file.starts_with("sim") || file == Path::new("lib.rs");
        for line in code.lines() {
            let t = line.trim_start();
            if t.starts_with("impl") && t.contains("Engine<") && !t.contains("EngineStats") {
                impls.push(file.clone());
                assert!(in_engine || host && t.contains(" for "), "{}: {t}", file.display());
            }
            let names_engine =
                t.split(|c: char| !c.is_alphanumeric() && c != '_').any(|w| w == "Engine");
            assert!(
                in_engine || host || !names_engine,
                "{} names Engine (machines take the Core and their siblings): {t}",
                file.display()
            );
        }
    }
    assert!(impls.iter().any(|f| f.starts_with("engine")), "impl Engine was found");
}
