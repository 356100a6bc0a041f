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

/// The modules that `module`'s source names through `crate::` or `super::` paths.
fn imports(module: &str, text: &str, all: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let is_dir_module = all.keys().any(|m| m.starts_with(&format!("{module}::")));
    let parent = if is_dir_module { module.to_string() } else { module.rsplit_once("::").map_or(String::new(), |(p, _)| p.to_string()) };
    let mut out = BTreeSet::new();
    let code: String = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    for (prefix, base) in [("crate::", String::new()), ("super::", parent.rsplit_once("::").map_or(String::new(), |(p, _)| p.to_string()))] {
        // `super::` from a file of a folder module names that folder's siblings.
        let base = if prefix == "super::" {
            if is_dir_module {
                base
            } else {
                parent.clone()
            }
        } else {
            base
        };
        for (i, _) in code.match_indices(prefix) {
            let rest: String = code[i + prefix.len()..].chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            let mut path = base.clone();
            let mut target = None;
            for seg in rest.split("::").filter(|s| !s.is_empty()) {
                let candidate = if path.is_empty() { seg.to_string() } else { format!("{path}::{seg}") };
                if all.contains_key(&candidate) {
                    target = Some(candidate.clone());
                    path = candidate;
                } else {
                    break;
                }
            }
            // A name defined in the folder's own mod.rs.
            let target = target.or_else(|| (!base.is_empty() && all.contains_key(&base)).then(|| base.clone()));
            if let Some(t) = target.filter(|t| t != module) {
                out.insert(t);
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
