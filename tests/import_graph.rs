//! The library's modules import each other one way: no import circles.
//!
//! Reads every file under `src/` (main.rs excepted: the binary, not the library), collects the module
//! paths each one names (`crate::a::b`, `super::c`, `use child::x` in a mod.rs, brace groups
//! expanded, `crate::Name` re-exports of lib.rs followed to where they live) and looks for strongly
//! connected components in that graph. A circle names its modules in the failure message; the usual
//! mend is to move the shared piece down into the module both sides already depend on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`cpu::simd`, `` for lib.rs) of a file under src/.
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts.join("::")
}

/// Source text with `//` comments and string literals blanked, so doc links and messages are no edges.
fn code_only(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'"' && (i == 0 || b[i - 1] != b'\'') {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Paths spelled from byte `i` on (`a::b::{c, d::e}` gives `a::b::c` and `a::b::d::e`), with `prefix`.
fn read_paths(b: &[u8], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < b.len() && b[i] == b'{' {
            i += 1;
            loop {
                i = read_paths(b, i, path.clone(), out);
                while i < b.len() && b[i].is_ascii_whitespace() {
                    i += 1;
                }
                match b.get(i) {
                    Some(b',') => i += 1,
                    Some(b'}') => return i + 1,
                    _ => return i,
                }
                while i < b.len() && b[i].is_ascii_whitespace() {
                    i += 1;
                }
                if b.get(i) == Some(&b'}') {
                    return i + 1;
                }
            }
        }
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        if i > start {
            path.push(String::from_utf8_lossy(&b[start..i]).into_owned());
        }
        if b[i..].starts_with(b"::") {
            i += 2;
        } else {
            out.push(path);
            return i;
        }
    }
}

/// The module paths a file names, made absolute (segments from the crate root). Inline modules
/// (`mod tests { use super::*; }`) count as their file's, with `super` and `self` read from inside them.
fn named_paths(module: &str, is_dir_module: bool, code: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let b = code.as_bytes();
    let file: Vec<String> = if module.is_empty() { vec![] } else { module.split("::").map(String::from).collect() };
    // Inline modules open here: (name, brace depth outside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let here = |inline: &[(String, usize)]| -> Vec<String> {
        file.iter().cloned().chain(inline.iter().map(|(n, _)| n.clone())).collect()
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let boundary = i == 0 || !(is_ident(b[i - 1]) || b[i - 1] == b':');
        if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            i += 3; // a char literal such as '{'
        } else if b[i] == b'{' {
            depth += 1;
            i += 1;
        } else if b[i] == b'}' {
            depth = depth.saturating_sub(1);
            if inline.last().is_some_and(|(_, d)| *d == depth) {
                inline.pop();
            }
            i += 1;
        } else if boundary && b[i..].starts_with(b"mod ") {
            let j = i + 4;
            let end = (j..b.len()).find(|&k| !is_ident(b[k])).unwrap_or(b.len());
            let mut k = end;
            while k < b.len() && b[k].is_ascii_whitespace() {
                k += 1;
            }
            if b.get(k) == Some(&b'{') {
                inline.push((String::from_utf8_lossy(&b[j..end]).into_owned(), depth));
                depth += 1;
                i = k + 1;
            } else {
                i = end;
            }
        } else if boundary && b[i..].starts_with(b"crate::") {
            i = read_paths(b, i + 7, vec![], &mut out);
        } else if boundary && b[i..].starts_with(b"self::") {
            i = read_paths(b, i + 6, here(&inline), &mut out);
        } else if boundary && b[i..].starts_with(b"super::") {
            let mut up = here(&inline);
            let mut j = i;
            while b[j..].starts_with(b"super::") {
                up.pop();
                j += 7;
            }
            i = read_paths(b, j, up, &mut out);
        } else if boundary && b[i..].starts_with(b"use ") && is_dir_module && inline.is_empty() {
            // `use child::x;` inside a mod.rs or lib.rs names a child module.
            let j = i + 4;
            let end = (j..b.len()).find(|&k| !is_ident(b[k])).unwrap_or(b.len());
            let first = String::from_utf8_lossy(&b[j..end]).into_owned();
            if children.contains(&first) {
                let mut paths = Vec::new();
                i = read_paths(b, j, file.clone(), &mut paths);
                out.extend(paths);
            } else {
                i = j;
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Tarjan's strongly connected components; returns those with more than one module.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in &s.graph[v] {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.found.push(comp);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: vec![],
        on_stack: BTreeSet::new(),
        found: vec![],
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.found
}

/// The import graph of the library under `src`: module -> modules it names.
fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") && p != src.join("main.rs") {
                files.push(p);
            }
        }
    }
    let modules: BTreeMap<String, std::path::PathBuf> =
        files.iter().map(|p| (module_of(p.strip_prefix(src).unwrap()), p.clone())).collect();
    let children_of = |m: &str| -> BTreeSet<String> {
        modules
            .keys()
            .filter_map(|k| {
                let rest = if m.is_empty() { Some(k.as_str()) } else { k.strip_prefix(m)?.strip_prefix("::") };
                rest.filter(|r| !r.is_empty() && !r.contains("::")).map(String::from)
            })
            .collect()
    };
    // lib.rs's `pub use a::b::Name;` lets `crate::Name` stand for `crate::a::b::Name`.
    let lib_code = code_only(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let mut reexports: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in named_paths("", true, &lib_code, &children_of("")) {
        if let Some(last) = p.last() {
            reexports.insert(last.clone(), p.clone());
        }
    }
    let mut graph = BTreeMap::new();
    for (m, path) in &modules {
        let file_name = path.file_name().unwrap();
        let dir_module = file_name == "mod.rs" || file_name == "lib.rs";
        let code = code_only(&std::fs::read_to_string(path).unwrap());
        let mut to = BTreeSet::new();
        for mut p in named_paths(m, dir_module, &code, &children_of(m)) {
            if p.len() == 1 {
                if let Some(full) = reexports.get(&p[0]) {
                    p = full.clone();
                }
            }
            // The longest prefix that is a module is the one depended on.
            let target = (0..=p.len()).rev().map(|n| p[..n].join("::")).find(|c| modules.contains_key(c));
            if let Some(t) = target.filter(|t| t != m && !t.is_empty()) {
                to.insert(t);
            }
        }
        graph.insert(m.clone(), to);
    }
    graph
}

#[test]
fn the_library_has_no_import_circles() {
    let graph = import_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph.len() > 40, "the scan found only {} modules under src/", graph.len());
    assert!(
        graph["ops::conv2d"].contains("cpu::conv"),
        "the scan misses `use crate::` edges: {:?}",
        graph["ops::conv2d"]
    );
    assert!(graph["cpu::conv"].contains("cpu::gemm"), "the scan misses `super::` edges: {:?}", graph["cpu::conv"]);
    let found = circles(&graph);
    let lines: Vec<String> = found.iter().map(|c| c.join(", ")).collect();
    assert!(found.is_empty(), "import circles among the library's modules:\n{}", lines.join("\n"));
}

#[test]
fn the_scan_finds_a_circle_when_there_is_one() {
    let dir = std::env::temp_dir().join(format!("specnn-import-graph-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::write(dir.join("lib.rs"), "pub mod a;\npub mod b;\npub use a::Thing;\n").unwrap();
    std::fs::write(dir.join("a/mod.rs"), "pub mod inner;\nuse inner::X;\npub struct Thing;\n").unwrap();
    std::fs::write(dir.join("a/inner.rs"), "// crate::b::Y in a comment is no edge\npub struct X;\n").unwrap();
    std::fs::write(
        dir.join("b.rs"),
        "use crate::{Thing, a::{inner::X}};\npub struct Y;\nmod tests {\n    use super::*;\n}\n",
    )
    .unwrap();
    let graph = import_graph(&dir);
    assert_eq!(graph["b"], ["a", "a::inner"].iter().map(|s| s.to_string()).collect());
    assert!(circles(&graph).is_empty(), "{graph:?}");
    std::fs::write(dir.join("a/inner.rs"), "pub struct X;\nfn f() -> super::super::b::Y { todo!() }\n").unwrap();
    let graph = import_graph(&dir);
    assert_eq!(circles(&graph), vec![vec!["a".to_string(), "a::inner".to_string(), "b".to_string()]]);
    std::fs::remove_dir_all(&dir).unwrap();
}
