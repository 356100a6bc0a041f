//! The trainer's shape, as docs/design.md states it: no module imports a module that imports
//! it back (directly or around a circle), and none is longer than about 500 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every module of `src/` (the binary and the crate root aside) by path (`run`,
/// `recipes::clip`, `config`), with its file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "bin") {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("lib.rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src").with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            out.insert(parts.join("::"), path);
        }
    }
    out
}

/// The module that holds `module` (`""` for the crate root).
fn parent(module: &str) -> String {
    module.rsplit_once("::").map_or(String::new(), |(p, _)| p.to_string())
}

/// The modules that `module`'s source names: paths that start with `crate::`, `super::` (the
/// parent module) or, in a folder's mod.rs, one of its children, `{a, b}` groups included.
fn imports(module: &str, text: &str, all: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let code: String = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let mut starts: Vec<(String, String)> = vec![("crate::".into(), String::new()), ("super::".into(), parent(module))];
    for child in all.keys().filter_map(|m| m.strip_prefix(&format!("{module}::"))).filter(|c| !c.contains("::")) {
        starts.push((format!("{child}::"), format!("{module}::{child}")));
    }
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = BTreeSet::new();
    for (prefix, base) in &starts {
        for (i, _) in code.match_indices(prefix.as_str()) {
            // The start of a path, not the middle of one (`a::b::`) nor the end of a name.
            if code[..i].ends_with(':') || code[..i].chars().last().is_some_and(ident) {
                continue;
            }
            let tail = &code[i + prefix.len()..];
            let heads: Vec<String> = match tail.strip_prefix('{') {
                Some(group) => group.split('}').next().unwrap_or("").split(',').map(|h| h.trim().to_string()).collect(),
                None => vec![tail.chars().take_while(|&c| ident(c) || c == ':').collect()],
            };
            for head in heads {
                // The longest module named by `base::head...`, else `base` itself.
                let mut target = (!base.is_empty() && all.contains_key(base)).then(|| base.clone());
                let mut path = base.clone();
                for seg in head.split("::").filter(|s| !s.is_empty()) {
                    path = if path.is_empty() { seg.to_string() } else { format!("{path}::{seg}") };
                    if all.contains_key(&path) {
                        target = Some(path.clone());
                    } else {
                        break;
                    }
                }
                if let Some(t) = target.filter(|t| t != module) {
                    out.insert(t);
                }
            }
        }
    }
    out
}

#[test]
fn no_module_imports_one_that_imports_it_back_and_none_is_long() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let all = modules(&src);
    assert!(all.contains_key("run") && all.contains_key("recipes::clip"), "{:?}", all.keys());
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, path) in &all {
        let text = std::fs::read_to_string(path).expect("source");
        assert!(text.lines().count() <= 520, "{} has {} lines", path.display(), text.lines().count());
        edges.insert(m.clone(), imports(m, &text, &all));
    }
    // Depth-first search for a cycle.
    fn visit(m: &str, edges: &BTreeMap<String, BTreeSet<String>>, state: &mut BTreeMap<String, u8>, stack: &mut Vec<String>) -> Option<Vec<String>> {
        match state.get(m) {
            Some(2) => return None,
            Some(1) => {
                let start = stack.iter().position(|s| s == m).unwrap_or(0);
                return Some(stack[start..].iter().cloned().chain([m.to_string()]).collect());
            }
            _ => {}
        }
        state.insert(m.to_string(), 1);
        stack.push(m.to_string());
        for next in edges.get(m).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, state, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in edges.keys() {
        if let Some(cycle) = visit(m, &edges, &mut state, &mut Vec::new()) {
            panic!("modules import each other: {}", cycle.join(" -> "));
        }
    }
    // The run loop knows recipes only through the trait and the dispatch table.
    let run = &edges["run"];
    assert!(!run.iter().any(|m| m.starts_with("recipes::") && m != "recipes::recipe"), "run imports {run:?}");
}

#[test]
fn the_scanner_sees_every_form_of_import() {
    let all: BTreeMap<String, PathBuf> = ["a", "b", "f", "f::c", "f::d"].into_iter().map(|m| (m.to_string(), PathBuf::new())).collect();
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(imports("a", "use crate::{b, f::c};\nfn x() { crate::f::d::go() }", &all), set(&["b", "f::c", "f::d"]));
    assert_eq!(imports("f", "pub use c::X;\nfn y() { d::z() }", &all), set(&["f::c", "f::d"]));
    assert_eq!(imports("f::c", "use super::Y;\nuse super::d::Z;", &all), set(&["f", "f::d"]));
    assert_eq!(imports("b", "// use crate::a;\nlet s = \"x::y\";", &all), set(&[]));
}
