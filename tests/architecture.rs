//! The crate's architecture (README, "Architecture"), checked on the source text: clap stays in
//! the CLI, each folder imports only the folders below it, no two files import each other in a
//! cycle, and files and functions stay short enough to read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 100;

/// What each top-level module of `src/` may import from the crate (besides itself). The crate
/// root files (`lib.rs`, `main.rs`) and `cli/` may import everything.
const MAY_IMPORT: &[(&str, &[&str])] = &[
    ("io", &[]),
    ("names", &[]),
    ("rng", &[]),
    ("toy", &[]),
    ("weights", &["io"]),
    ("backend", &["names"]),
    ("sampling", &["names", "rng"]),
    ("models", &["names", "rng", "io", "weights", "backend"]),
    ("metrics", &["names", "rng", "backend"]),
    (
        "pipeline",
        &[
            "io", "names", "rng", "toy", "weights", "backend", "sampling", "models", "metrics",
        ],
    ),
    (
        "bench",
        &[
            "io", "names", "rng", "weights", "backend", "sampling", "models", "metrics",
        ],
    ),
    ("report", &["io", "names", "metrics", "pipeline"]),
];

/// A source file with comments, string and character literals blanked out (newlines kept) and
/// its `#[cfg(test)]` tail cut off.
struct Source {
    /// Relative to `src/`, with `/` separators.
    path: String,
    /// Lines of the whole file, tests included.
    lines: usize,
    /// Its module path (`pipeline::sweep::spec`; `pipeline::sweep` for its `mod.rs`; empty for
    /// the crate roots).
    module: Vec<String>,
    code: String,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let rel = p
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                let mut module: Vec<String> = rel
                    .trim_end_matches(".rs")
                    .split('/')
                    .map(String::from)
                    .collect();
                if module.last().is_some_and(|m| m == "mod") {
                    module.pop();
                }
                if module == ["lib"] || module == ["main"] {
                    module.clear();
                }
                let text = std::fs::read_to_string(&p).unwrap();
                let mut code = blank_literals(&text);
                if let Some(i) = code.find("#[cfg(test)]") {
                    code.truncate(i);
                }
                out.push(Source {
                    path: rel,
                    lines: text.lines().count(),
                    module,
                    code,
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// Replaces comments, strings and char literals by spaces, keeping newlines, so that braces and
/// paths are only those of code.
fn blank_literals(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let prev_ident = i > 0 && is_ident(c[i - 1]);
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            loop {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    blank(&mut out, c[i]);
                    i += 1;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    blank(&mut out, c[i]);
                    i += 1;
                }
                blank(&mut out, c[i]);
                i += 1;
                if depth == 0 {
                    break;
                }
            }
        } else if c[i] == 'r' && !prev_ident && matches!(c.get(i + 1), Some('"' | '#')) {
            // r"…" or r#"…"#
            let mut j = i + 1;
            while c.get(j) == Some(&'#') {
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            let hashes = j - i - 1;
            let close: Vec<char> = std::iter::once('"').chain(vec!['#'; hashes]).collect();
            j += 1;
            while !c[j..].starts_with(&close) {
                j += 1;
            }
            for &ch in &c[i..j + close.len()] {
                blank(&mut out, ch);
            }
            i = j + close.len();
        } else if c[i] == '"' {
            blank(&mut out, c[i]);
            i += 1;
            while c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
            blank(&mut out, c[i]);
            i += 1;
        } else if c[i] == '\'' && (c.get(i + 1) == Some(&'\\') || c.get(i + 2) == Some(&'\'')) {
            // A char literal ('x', '\n', '\''), not a lifetime.
            let mut j = i + 1;
            if c[j] == '\\' {
                j += 2;
            } else {
                j += 1;
            }
            while c[j] != '\'' {
                j += 1;
            }
            for &ch in &c[i..=j] {
                blank(&mut out, ch);
            }
            i = j + 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Every crate path a file names (`crate::a::b`, `super::c`, `self::d`, `sitdiv::e`, a child
/// module's `f::g`, and each item of a `{…}` group), as paths from the crate root.
fn imported_paths(s: &Source, modules: &BTreeMap<Vec<String>, String>) -> Vec<Vec<String>> {
    let code: Vec<char> = s.code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let boundary =
            i == 0 || !(is_ident(code[i - 1]) || code[i - 1] == '$' || code[i - 1] == ':');
        let rest: String = code[i..code.len().min(i + 8)].iter().collect();
        let kw = ["crate::", "super::", "self::", "sitdiv::"]
            .into_iter()
            .find(|k| rest.starts_with(k));
        // `super` from a/b.rs is a, from a/mod.rs the parent of a; a bare `child::` is relative.
        let base: Vec<String> = match kw {
            Some("super::") => s.module[..s.module.len().saturating_sub(1)].to_vec(),
            Some("self::") => s.module.clone(),
            Some(_) => Vec::new(),
            None => s.module.clone(),
        };
        if !boundary || (kw.is_none() && !is_child_path(&code, i, &s.module, modules)) {
            i += 1;
            continue;
        }
        i += kw.map_or(0, str::len);
        let (segments, group, next) = path_at(&code, i);
        i = next;
        let mut full = base.clone();
        for seg in &segments {
            if seg == "super" {
                full.pop();
            } else {
                full.push(seg.clone());
            }
        }
        out.push(full.clone());
        for item in group {
            let mut p = full.clone();
            p.extend(item);
            out.push(p);
        }
    }
    out
}

/// Whether the identifier at `i` is followed by `::` and names a child module of `module`.
fn is_child_path(
    code: &[char],
    i: usize,
    module: &[String],
    modules: &BTreeMap<Vec<String>, String>,
) -> bool {
    let mut j = i;
    while j < code.len() && is_ident(code[j]) {
        j += 1;
    }
    if j == i || code.get(j) != Some(&':') || code.get(j + 1) != Some(&':') {
        return false;
    }
    let mut child = module.to_vec();
    child.push(code[i..j].iter().collect());
    modules.contains_key(&child)
}

/// The path segments starting at `i` (`a::b::c`), the leading segments of each item of a
/// following `{…}` group, and where the path ends.
fn path_at(code: &[char], mut i: usize) -> (Vec<String>, Vec<Vec<String>>, usize) {
    let mut segments = Vec::new();
    let mut group = Vec::new();
    loop {
        let start = i;
        while i < code.len() && is_ident(code[i]) {
            i += 1;
        }
        if i > start {
            segments.push(code[start..i].iter().collect());
        }
        if code.get(i) == Some(&':') && code.get(i + 1) == Some(&':') {
            i += 2;
            if code.get(i) == Some(&'{') {
                let mut depth = 0;
                let mut item_start = i + 1;
                loop {
                    match code[i] {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 1 => {
                            group.push(path_at(code, skip_ws(code, item_start)).0);
                            item_start = i + 1;
                        }
                        _ => {}
                    }
                    i += 1;
                    if depth == 0 {
                        break;
                    }
                }
                group.push(path_at(code, skip_ws(code, item_start)).0);
                break;
            }
        } else {
            break;
        }
    }
    group.retain(|g: &Vec<String>| !g.is_empty() && g[0] != "self");
    (segments, group, i)
}

fn skip_ws(code: &[char], mut i: usize) -> usize {
    while i < code.len() && code[i].is_whitespace() {
        i += 1;
    }
    i
}

/// The file a module path lands in: its longest prefix that is a module of the crate.
/// The crate root itself is no target: it only declares the modules.
fn resolve<'a>(modules: &'a BTreeMap<Vec<String>, String>, path: &[String]) -> Option<&'a String> {
    (1..=path.len())
        .rev()
        .find_map(|k| modules.get(&path[..k].to_vec()))
}

/// Module path → file.
fn module_files(files: &[Source]) -> BTreeMap<Vec<String>, String> {
    files
        .iter()
        .filter(|s| s.path != "main.rs")
        .map(|s| (s.module.clone(), s.path.clone()))
        .collect()
}

/// File-level import edges (a file to each other file it names).
fn import_graph(files: &[Source]) -> BTreeMap<String, BTreeSet<String>> {
    let modules = module_files(files);
    files
        .iter()
        .map(|s| {
            let targets = imported_paths(s, &modules)
                .iter()
                .filter_map(|p| resolve(&modules, p))
                .filter(|t| **t != s.path)
                .cloned()
                .collect();
            (s.path.clone(), targets)
        })
        .collect()
}

/// Strongly connected components of more than one file (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in &self.graph[v] {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.stack.contains(&w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                loop {
                    let w = self.stack.pop().unwrap();
                    component.push(w.to_string());
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
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.found
}

/// Each function's name, first line and length in lines (outermost functions only).
fn function_lengths(s: &Source) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = s.code.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(name) = fn_name(lines[i]) else {
            i += 1;
            continue;
        };
        let (mut depth, mut started, mut j) = (0i32, false, i);
        'scan: while j < lines.len() {
            for ch in lines[j].chars() {
                match ch {
                    '{' => {
                        depth += 1;
                        started = true;
                    }
                    '}' => depth -= 1,
                    ';' if !started => break 'scan,
                    _ => {}
                }
                if started && depth == 0 {
                    break 'scan;
                }
            }
            j += 1;
        }
        if started {
            out.push((name, i + 1, j - i + 1));
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out
}

/// The name of a function declared on this line (`pub(crate) unsafe fn name…`).
fn fn_name(line: &str) -> Option<String> {
    let mut words = line.split_whitespace().peekable();
    while let Some(w) = words.next() {
        match w {
            "pub" | "const" | "unsafe" | "async" | "extern" | "default" => {}
            w if w.starts_with("pub(") || w.starts_with('"') => {}
            "fn" => {
                let rest = words.next()?;
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                return (!name.is_empty()).then_some(name);
            }
            _ => return None,
        }
    }
    None
}

#[test]
fn clap_is_confined_to_the_command_line() {
    let outside: Vec<String> = sources()
        .into_iter()
        .filter(|s| !(s.path.starts_with("cli/") || s.path == "main.rs"))
        .filter(|s| s.code.contains("clap"))
        .map(|s| s.path)
        .collect();
    assert!(outside.is_empty(), "clap outside src/cli: {outside:?}");
}

#[test]
fn each_folder_imports_only_the_folders_below_it() {
    let allowed: BTreeMap<&str, &[&str]> = MAY_IMPORT.iter().copied().collect();
    let files = sources();
    let modules = module_files(&files);
    let mut wrong = Vec::new();
    for s in files {
        let Some(top) = s.module.first().map(String::as_str) else {
            continue;
        };
        if top == "cli" {
            continue;
        }
        let may = allowed
            .get(top)
            .unwrap_or_else(|| panic!("src/{}: add its folder to MAY_IMPORT", s.path));
        for p in imported_paths(&s, &modules) {
            // `named!` is exported at the crate root from names.rs.
            let Some(target) = p.first().map(|t| if t == "named" { "names" } else { t }) else {
                continue;
            };
            if target != top && !may.contains(&target) {
                wrong.push(format!("src/{} imports {}", s.path, p.join("::")));
            }
        }
    }
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_two_files_import_each_other_in_a_cycle() {
    let files = sources();
    let graph = import_graph(&files);
    // The check itself sees imports: a few known edges.
    assert!(graph["pipeline/sample.rs"].contains("pipeline/unit.rs"));
    assert!(graph["weights/mod.rs"].contains("io/mod.rs"));
    let found = cycles(&graph);
    assert!(found.is_empty(), "import cycles between files: {found:?}");
}

#[test]
fn files_and_functions_stay_short() {
    let mut long = Vec::new();
    let mut all = Vec::new();
    for s in sources() {
        if s.lines > MAX_FILE_LINES {
            long.push(format!("src/{}: {} lines", s.path, s.lines));
        }
        for (name, line, len) in function_lengths(&s) {
            all.push((len, format!("src/{}:{line} {name}", s.path)));
        }
    }
    all.sort_by(|a, b| b.cmp(a));
    for (len, f) in all.iter().take(5) {
        println!("{len:4} lines  {f}");
    }
    assert!(
        all.len() > 500,
        "the scan found only {} functions",
        all.len()
    );
    long.extend(
        all.iter()
            .filter(|(len, _)| *len > MAX_FN_LINES)
            .map(|(len, f)| format!("{f}: {len} lines")),
    );
    assert!(long.is_empty(), "too long:\n{}", long.join("\n"));
}

#[test]
fn the_scanner_sees_through_literals_and_groups() {
    let code = blank_literals(
        "let s = \"crate::x {\"; // crate::y\nlet c = '{'; use crate::a::{b, c::d};",
    );
    assert!(!code.contains("crate::x") && !code.contains("crate::y") && !code.contains("'{'"));
    let s = Source {
        path: "p/q.rs".into(),
        lines: 0,
        module: vec!["p".into(), "q".into()],
        code: code + "\nuse super::r::{self, t};\nuse u::v; w::x();",
    };
    let modules: BTreeMap<Vec<String>, String> = [vec!["p", "q", "u"]]
        .iter()
        .map(|m| (m.iter().map(|s| s.to_string()).collect(), String::new()))
        .collect();
    let paths = imported_paths(&s, &modules);
    let want = [
        vec!["a"],
        vec!["a", "b"],
        vec!["a", "c", "d"],
        vec!["p", "r"],
        vec!["p", "r", "t"],
        vec!["p", "q", "u", "v"],
    ];
    let want: Vec<Vec<String>> = want
        .iter()
        .map(|v| v.iter().map(|s| s.to_string()).collect())
        .collect();
    assert_eq!(paths, want);
}
