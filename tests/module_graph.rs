//! The top-level modules of `src/` import each other in one direction only (DESIGN.md
//! section 9): no cycle, test modules included. A cycle is how a module ends up owning
//! half of another's concept; this test names it the day it appears.
//!
//! The graph is the one `crate::` paths draw: a file under `src/<top>/` (or
//! `src/<top>.rs`) that writes `crate::<other>` depends on `<other>`. `lib.rs` and
//! `main.rs` wire everything together and are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Edges `from -> to`, each with the first file that draws it.
type Graph = BTreeMap<String, BTreeMap<String, PathBuf>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("read src").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text without `//` comments (doc comments name other modules freely). A `//`
/// inside a string literal cuts the rest of that line too, which can only hide edges
/// drawn on the same line after a URL: none in practice.
fn without_comments(text: &str) -> String {
    text.lines().map(|line| line.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

fn ident_at(text: &str) -> &str {
    let end = text.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(text.len());
    &text[..end]
}

/// The first path segment of every item a `crate::` path names: `crate::pool::X` is
/// `pool`; `crate::{pool::X, config::{self, Y}}` is `pool` and `config`.
fn crate_roots(text: &str) -> Vec<&str> {
    let mut roots = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let preceded_by_ident = rest[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if preceded_by_ident {
            continue;
        }
        let Some(group) = rest.strip_prefix('{') else {
            roots.push(ident_at(rest));
            continue;
        };
        // One use-tree group: the first identifier of each element at depth one.
        let mut depth = 1;
        let mut element_start = true;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ',' if depth == 1 => element_start = true,
                c if depth == 1 && element_start && (c.is_ascii_alphabetic() || c == '_') => {
                    roots.push(ident_at(&group[i..]));
                    element_start = false;
                }
                _ => {}
            }
        }
    }
    roots
}

fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let top_of = |path: &Path| -> String {
        let first = path.strip_prefix(src).expect("under src").components().next().expect("a component");
        let name = first.as_os_str().to_string_lossy();
        name.strip_suffix(".rs").unwrap_or(&name).to_owned()
    };
    let tops: BTreeSet<String> = files.iter().map(|f| top_of(f)).filter(|t| t != "lib" && t != "main").collect();
    let mut graph = Graph::new();
    for file in &files {
        let from = top_of(file);
        if !tops.contains(&from) {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("read a source file");
        for to in crate_roots(&without_comments(&text)) {
            if to != from && tops.contains(to) {
                graph.entry(from.clone()).or_default().entry(to.to_owned()).or_insert_with(|| file.clone());
            }
        }
    }
    graph
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, v: &'g str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flat_map(|e| e.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: Vec::new() };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&src);
    let found = cycles(&graph);
    let mut report = String::new();
    for component in &found {
        report.push_str(&format!("cycle through {}:\n", component.join(", ")));
        for from in component {
            for (to, file) in graph.get(from).into_iter().flatten().filter(|(to, _)| component.contains(to)) {
                let shown = file.strip_prefix(&src).unwrap_or(file).display();
                report.push_str(&format!("  {from} -> {to} (first in src/{shown})\n"));
            }
        }
    }
    assert!(found.is_empty(), "top-level modules import each other in a circle:\n{report}");
}

#[test]
fn the_parser_sees_grouped_and_nested_paths() {
    let text = "use crate::{pool::{self, Snapshot}, config::Secret};\nlet x = crate::http::full(b);\n";
    assert_eq!(crate_roots(text), ["pool", "config", "http"]);
    assert!(crate_roots("use keyrelay_crate::pool;").is_empty());
    assert_eq!(crate_roots(&without_comments("// crate::admin\nuse crate::cost;")), ["cost"]);
}

#[test]
fn a_cycle_is_found_and_named() {
    let mut graph = Graph::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        graph.entry(from.into()).or_default().insert(to.into(), PathBuf::from("x.rs"));
    }
    assert_eq!(cycles(&graph), [["a", "b", "c"]]);
}
