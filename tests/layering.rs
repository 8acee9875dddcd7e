//! The module tree's layering, checked: every `src/**/*.rs` file's imports of
//! the crate against [`LAYERS`] (bottom → top). A module may use its own
//! layer and the layers below it, never one above; top-level modules form no
//! cycle; inside one folder, its files and subfolders form no cycle; and
//! every module has a layer (a new top-level module is placed in the table).
//!
//! What counts as an import, read from the tokens with comments and string
//! literals left out: `crate::a::b` anywhere (a `use` tree, a path in code,
//! a macro's `$crate::`), `super::…` and `self::…` resolved against the
//! module they are written in (inline `mod x { … }` blocks and `#[path]`
//! included), and in the binary (`src/main.rs`, `src/cli/`) `livebucket::…`.
//! A path is taken as far as it names a module file; items re-exported by a
//! folder's `mod.rs` count as imports of the folder. Test code is left out
//! (`#[cfg(test)]` items and the files of `#[cfg(test)] mod x;`): a unit
//! test may build its inputs with whatever the crate offers.
//!
//! Today's exceptions are listed in [`KNOWN_VIOLATIONS`], each with the reason
//! and who removes it; an entry that no longer occurs fails the test too, so
//! the list only shrinks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The layers, bottom first. An entry is a module path (`llhls::ts`); a
/// module belongs to the entry that is the longest prefix of its path.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "pure formats and primitives",
        &[
            "clock",
            "logfmt",
            "metrics",
            "names",
            "sign",
            "layout",
            "nofollow",
            "hls",
            "llhls::ts",
            "llhls::cut",
            "llhls::playlist",
            "master",
        ],
    ),
    ("configuration", &["config"]),
    (
        "storage and state",
        &[
            "store", "outbound", "index", "snapshot", "channels", "cache",
        ],
    ),
    ("verification", &["auth"]),
    ("sessions", &["session"]),
    ("the live window and LL-HLS parts", &["live", "llhls"]),
    (
        "the data plane and its views",
        &["pipeline", "vod", "stat", "oss", "events"],
    ),
    (
        "coordination (implements the pipeline's fence)",
        &["cluster"],
    ),
    (
        "admission, sweeps and transcoders",
        &["admission", "retention", "transcode"],
    ),
    ("HTTP surface", &["http"]),
    ("wiring", &["app"]),
    ("the binary", &["main", "cli"]),
];

/// A violation tolerated for now, with why it exists and who removes it. The
/// list is empty: keep it so; a refactor in flight may list what it has yet
/// to remove, with its reason.
#[allow(
    dead_code,
    reason = "nothing is tolerated today; kept so a refactor in flight can list what it has yet to remove"
)]
enum Known {
    /// `file` imports `module`, which is in a layer above it.
    Up {
        file: &'static str,
        module: &'static str,
        why: &'static str,
    },
    /// These nodes (top-level modules, or the files/subfolders of one folder
    /// written `folder/child`) form a cycle.
    Cycle {
        nodes: &'static [&'static str],
        why: &'static str,
    },
}

const KNOWN_VIOLATIONS: &[Known] = &[];

#[test]
fn modules_import_only_their_layer_and_below() {
    let tree = Tree::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let mut found = Vec::new();
    for (file, imports) in &tree.imports {
        let Some(from) = tree.module_of_file(file) else {
            continue;
        };
        let Some(from_layer) = layer_of(&from) else {
            continue;
        };
        for (to, _) in imports {
            let Some(to_layer) = layer_of(to) else {
                continue;
            };
            if to_layer.0 > from_layer.0 {
                found.push(Violation::Up {
                    file: file.clone(),
                    module: to.join("::"),
                    from_layer: from_layer.1,
                    to_layer: to_layer.1,
                });
            }
        }
    }
    found.sort();
    found.dedup();
    report(found, |k| matches!(k, Known::Up { .. }));
}

#[test]
fn every_module_has_a_layer() {
    let tree = Tree::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let unplaced: Vec<String> = tree
        .file_modules
        .iter()
        .filter(|(_, m)| !m.is_empty() && layer_of(m).is_none())
        .map(|(file, m)| format!("{file} (crate::{})", m.join("::")))
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules in no layer of LAYERS (tests/layering.rs): place them:\n{}",
        unplaced.join("\n")
    );
}

#[test]
fn top_level_modules_form_no_cycle() {
    let tree = Tree::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let mut edges: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (file, imports) in &tree.imports {
        let Some(from) = tree.module_of_file(file) else {
            continue;
        };
        let Some(from_top) = from.first() else {
            continue;
        };
        for (to, _) in imports {
            let Some(to_top) = to.first() else { continue };
            if to_top != from_top {
                edges
                    .entry(from_top.clone())
                    .or_default()
                    .entry(to_top.clone())
                    .or_default()
                    .insert(file.clone());
            }
        }
    }
    report(
        cycles("", &edges),
        |k| matches!(k, Known::Cycle { nodes, .. } if !nodes[0].contains('/')),
    );
}

#[test]
fn files_of_one_folder_form_no_cycle() {
    let tree = Tree::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let mut found = Vec::new();
    for folder in &tree.folders {
        // Node = the folder's child (a file, or a subfolder as a whole) that
        // holds the importing file / the imported module. The folder's own
        // `mod.rs` is its face to the rest of the crate: it wires its
        // children and they use what it declares, so it is no node here.
        let child = |module: &[String]| -> Option<String> {
            (module.len() > folder.len() && module[..folder.len()] == folder[..])
                .then(|| module[folder.len()].clone())
        };
        let mut edges: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
        for (file, imports) in &tree.imports {
            let Some(from) = tree.module_of_file(file).as_deref().and_then(child) else {
                continue;
            };
            for (to, _) in imports {
                if let Some(to) = child(to)
                    && to != from
                {
                    edges
                        .entry(from.clone())
                        .or_default()
                        .entry(to)
                        .or_default()
                        .insert(file.clone());
                }
            }
        }
        found.extend(cycles(&format!("{}/", folder.join("/")), &edges));
    }
    report(
        found,
        |k| matches!(k, Known::Cycle { nodes, .. } if nodes[0].contains('/')),
    );
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Violation {
    Up {
        file: String,
        module: String,
        from_layer: &'static str,
        to_layer: &'static str,
    },
    Cycle {
        nodes: Vec<String>,
        /// `from -> to: files that import`, one line per edge.
        edges: Vec<String>,
    },
}

impl Violation {
    fn is_known(&self, known: &Known) -> bool {
        match (self, known) {
            (
                Violation::Up { file, module, .. },
                Known::Up {
                    file: f, module: m, ..
                },
            ) => file == f && module == m,
            // A known cycle that shrank as a refactor landed stays known.
            (Violation::Cycle { nodes, .. }, Known::Cycle { nodes: n, .. }) => {
                nodes.iter().all(|x| n.contains(&x.as_str()))
            }
            _ => false,
        }
    }
}

/// Fails with every violation not in [`KNOWN_VIOLATIONS`], and with every
/// entry of that list this test checks (`checks`) that no longer occurs.
fn report(found: Vec<Violation>, checks: impl Fn(&Known) -> bool) {
    let mut msg = String::new();
    for v in &found {
        if KNOWN_VIOLATIONS.iter().any(|k| v.is_known(k)) {
            continue;
        }
        match v {
            Violation::Up {
                file,
                module,
                from_layer,
                to_layer,
            } => writeln!(
                msg,
                "{file} imports crate::{module}, which is above it: layer \"{to_layer}\" is \
                 over \"{from_layer}\""
            ),
            Violation::Cycle { nodes, edges } => writeln!(
                msg,
                "cycle between {}:\n    {}",
                nodes.join(", "),
                edges.join("\n    ")
            ),
        }
        .unwrap();
    }
    for k in KNOWN_VIOLATIONS.iter().filter(|k| checks(k)) {
        if !found.iter().any(|v| v.is_known(k)) {
            let (what, why) = match k {
                Known::Up { file, module, why } => (format!("{file} imports crate::{module}"), why),
                Known::Cycle { nodes, why } => (format!("cycle between {}", nodes.join(", ")), why),
            };
            writeln!(
                msg,
                "KNOWN_VIOLATIONS lists \"{what}\" ({why}), which no longer occurs: remove the \
                 entry"
            )
            .unwrap();
        }
    }
    assert!(
        msg.is_empty(),
        "layering (tests/layering.rs; the layers are its LAYERS table, bottom first; a \
         violation tolerated for now goes to KNOWN_VIOLATIONS with its reason):\n{msg}"
    );
}

/// Index and name of the layer `module` belongs to, or `None` for the crate
/// root and modules no entry covers (a new top-level module must be placed).
fn layer_of(module: &[String]) -> Option<(usize, &'static str)> {
    let mut best: Option<(usize, usize, &'static str)> = None;
    for (i, (name, entries)) in LAYERS.iter().enumerate() {
        for entry in *entries {
            let parts: Vec<&str> = entry.split("::").collect();
            let matches = parts.len() <= module.len()
                && parts.iter().zip(module).all(|(p, m)| *p == m.as_str());
            if matches && best.is_none_or(|(len, ..)| parts.len() > len) {
                best = Some((parts.len(), i, name));
            }
        }
    }
    best.map(|(_, i, name)| (i, name))
}

/// Strongly connected components of more than one node (Tarjan), each with
/// the edges inside it.
fn cycles(
    prefix: &str,
    edges: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
) -> Vec<Violation> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flat_map(|m| m.keys()) {
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
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                scc.push(w);
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                s.out.push(scc);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
        .into_iter()
        .map(|scc| {
            let mut lines = Vec::new();
            for from in &scc {
                for (to, files) in &edges[*from] {
                    if scc.contains(&to.as_str()) {
                        let files: Vec<&str> = files.iter().map(String::as_str).collect();
                        lines.push(format!(
                            "{prefix}{from} -> {prefix}{to}: {}",
                            files.join(", ")
                        ));
                    }
                }
            }
            Violation::Cycle {
                nodes: scc.iter().map(|n| format!("{prefix}{n}")).collect(),
                edges: lines,
            }
        })
        .collect()
}

/// The source tree as the test sees it.
struct Tree {
    /// File (relative to the repository, `src/x/y.rs`) → its module path.
    file_modules: BTreeMap<String, Vec<String>>,
    /// File → the modules it imports (resolved to a module with a file),
    /// with the path as written, for messages.
    imports: BTreeMap<String, BTreeSet<(Vec<String>, String)>>,
    /// Module paths of folders (`src/pipeline/`, `src/pipeline/machine/`).
    folders: BTreeSet<Vec<String>>,
}

impl Tree {
    fn read(src: &Path) -> Tree {
        let mut files = Vec::new();
        walk(src, &mut files);
        files.sort();
        let rel = |p: &Path| -> String {
            format!(
                "src/{}",
                p.strip_prefix(src)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/")
            )
        };
        let tokens: BTreeMap<PathBuf, Vec<Tok>> = files
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(f)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", f.display()));
                (f.clone(), tokenize(&text))
            })
            .collect();

        // Module paths: from the file's place, unless a `#[path]` declares it.
        let mut file_modules: BTreeMap<PathBuf, Vec<String>> = files
            .iter()
            .map(|f| (f.clone(), module_from_place(src, f)))
            .collect();
        for (f, toks) in &tokens {
            for (target, name) in path_attributes(toks) {
                let target = normalize(&f.parent().unwrap().join(target));
                if file_modules.contains_key(&target) {
                    let mut m = module_from_place(src, f);
                    m.push(name);
                    file_modules.insert(target, m);
                }
            }
        }
        let modules: BTreeSet<Vec<String>> = file_modules.values().cloned().collect();
        // Test code is left out: `#[cfg(test)]` items, and the files of
        // `#[cfg(test)] mod x;` declarations.
        let mut test_modules = BTreeSet::new();
        let tokens: BTreeMap<PathBuf, Vec<Tok>> = tokens
            .into_iter()
            .map(|(f, toks)| {
                let (kept, test_mods) = without_test_code(&toks);
                for name in test_mods {
                    let mut m = file_modules[&f].clone();
                    m.push(name);
                    test_modules.insert(m);
                }
                (f, kept)
            })
            .collect();
        let is_test = |m: &Vec<String>| test_modules.iter().any(|t| m.starts_with(t));
        let folders = files
            .iter()
            .filter(|f| f.file_name().is_some_and(|n| n == "mod.rs"))
            .map(|f| module_from_place(src, f))
            .chain(
                // A folder beside `x.rs` (src/channels/ next to channels.rs).
                files
                    .iter()
                    .filter(|f| f.with_extension("").is_dir())
                    .map(|f| module_from_place(src, f)),
            )
            .filter(|m| !m.is_empty())
            .collect();

        let mut imports = BTreeMap::new();
        for (f, toks) in &tokens {
            let module = &file_modules[f];
            if is_test(module) {
                continue;
            }
            let binary = module.first().is_some_and(|m| m == "main" || m == "cli");
            let mut found = BTreeSet::new();
            for path in crate_paths(toks, module, binary) {
                if let Some(m) = resolve(&modules, &path)
                    && m != *module
                {
                    found.insert((m, path.join("::")));
                }
            }
            imports.insert(rel(f), found);
        }
        Tree {
            file_modules: file_modules
                .into_iter()
                .map(|(f, m)| (rel(&f), m))
                .collect(),
            imports,
            folders,
        }
    }

    fn module_of_file(&self, file: &str) -> Option<Vec<String>> {
        self.file_modules.get(file).cloned()
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// `src/a/b.rs` → `a::b`; `src/a/mod.rs` → `a`; `src/lib.rs` → the root;
/// `src/main.rs` → `main` (the binary's root, which holds `cli`).
fn module_from_place(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") || parts == ["lib"] {
        parts.pop();
    }
    parts
}

/// The longest prefix of `path` that is a module with a file.
fn resolve(modules: &BTreeSet<Vec<String>>, path: &[String]) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains(p))
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Punct(char),
    /// `::`
    PathSep,
}

/// Rust source → identifiers, string literals and punctuation, without
/// comments, numbers, lifetimes or character literals.
fn tokenize(text: &str) -> Vec<Tok> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let ident_start = |ch: char| ch == '_' || ch.is_alphabetic();
    let ident_cont = |ch: char| ch == '_' || ch.is_alphanumeric();
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if ch == '"' {
            let (s, end) = quoted(&c, i + 1);
            out.push(Tok::Str(s));
            i = end;
        } else if (ch == 'r' || ch == 'b' || ch == 'c') && raw_or_byte_string(&c, i).is_some() {
            let (s, end) = raw_or_byte_string(&c, i).unwrap();
            out.push(Tok::Str(s));
            i = end;
        } else if ch == '\'' {
            // A character literal ('a', '\n', '\u{1F}', b'x' handled by the
            // ident branch then here) or a lifetime ('a).
            if next == Some('\\') {
                i += 3;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
                while i < c.len() && ident_cont(c[i]) {
                    i += 1;
                }
            }
        } else if ch == 'r' && next == Some('#') && c.get(i + 2).is_some_and(|&x| ident_start(x)) {
            // A raw identifier: r#type.
            let start = i + 2;
            i = start;
            while i < c.len() && ident_cont(c[i]) {
                i += 1;
            }
            out.push(Tok::Ident(c[start..i].iter().collect()));
        } else if ident_start(ch) {
            let start = i;
            while i < c.len() && ident_cont(c[i]) {
                i += 1;
            }
            out.push(Tok::Ident(c[start..i].iter().collect()));
        } else if ch.is_ascii_digit() {
            while i < c.len()
                && (ident_cont(c[i])
                    || c[i] == '.' && c.get(i + 1).is_some_and(char::is_ascii_digit))
            {
                i += 1;
            }
        } else if ch == ':' && next == Some(':') {
            out.push(Tok::PathSep);
            i += 2;
        } else {
            if !ch.is_whitespace() {
                out.push(Tok::Punct(ch));
            }
            i += 1;
        }
    }
    out
}

/// The body of a `"…"` literal starting at `start` (after the quote), and
/// the index after its closing quote.
fn quoted(c: &[char], start: usize) -> (String, usize) {
    let mut i = start;
    let mut s = String::new();
    while i < c.len() && c[i] != '"' {
        if c[i] == '\\' {
            i += 1;
        }
        if let Some(&ch) = c.get(i) {
            s.push(ch);
        }
        i += 1;
    }
    (s, i + 1)
}

/// `r"…"`, `r#"…"#`, `b"…"`, `br#"…"#`, `c"…"`, `cr"…"` at `i`.
fn raw_or_byte_string(c: &[char], i: usize) -> Option<(String, usize)> {
    let mut j = i;
    if matches!(c[j], 'b' | 'c') {
        j += 1;
    }
    let raw = c.get(j) == Some(&'r');
    if raw {
        j += 1;
    }
    if j == i {
        return None;
    }
    if !raw {
        return (c.get(j) == Some(&'"')).then(|| quoted(c, j + 1));
    }
    let hashes = c[j..].iter().take_while(|&&x| x == '#').count();
    j += hashes;
    if c.get(j) != Some(&'"') {
        return None;
    }
    let body = j + 1;
    let mut k = body;
    while k < c.len() {
        if c[k] == '"'
            && c[k + 1..]
                .iter()
                .take(hashes)
                .filter(|&&x| x == '#')
                .count()
                == hashes
        {
            return Some((c[body..k].iter().collect(), k + 1 + hashes));
        }
        k += 1;
    }
    Some((c[body..].iter().collect(), c.len()))
}

/// The tokens without `#[cfg(test)]` items, and the names of the modules
/// declared `#[cfg(test)] mod name;` (whose files are test code).
fn without_test_code(toks: &[Tok]) -> (Vec<Tok>, Vec<String>) {
    let cfg_test = [
        Tok::Punct('#'),
        Tok::Punct('['),
        Tok::Ident("cfg".into()),
        Tok::Punct('('),
        Tok::Ident("test".into()),
        Tok::Punct(')'),
        Tok::Punct(']'),
    ];
    let mut kept = Vec::new();
    let mut test_mods = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if !toks[i..].starts_with(&cfg_test) {
            kept.push(toks[i].clone());
            i += 1;
            continue;
        }
        i += cfg_test.len();
        // Further attributes.
        while toks.get(i) == Some(&Tok::Punct('#')) && toks.get(i + 1) == Some(&Tok::Punct('[')) {
            let mut depth = 0;
            i += 1;
            while let Some(t) = toks.get(i) {
                i += 1;
                match t {
                    Tok::Punct('[') => depth += 1,
                    Tok::Punct(']') => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
            }
        }
        // `[pub[(…)]] mod name;`
        let mut j = i;
        if toks.get(j) == Some(&Tok::Ident("pub".into())) {
            j += 1;
            if toks.get(j) == Some(&Tok::Punct('(')) {
                while toks.get(j).is_some_and(|t| *t != Tok::Punct(')')) {
                    j += 1;
                }
                j += 1;
            }
        }
        if let (Some(Tok::Ident(m)), Some(Tok::Ident(name)), Some(Tok::Punct(';'))) =
            (toks.get(j), toks.get(j + 1), toks.get(j + 2))
            && m == "mod"
        {
            test_mods.push(name.clone());
        }
        // The item: up to a `;` outside brackets, or its closing brace.
        let mut depth = 0i32;
        while let Some(t) = toks.get(i) {
            i += 1;
            match t {
                Tok::Punct('(' | '[' | '{') => depth += 1,
                Tok::Punct(')' | ']') => depth -= 1,
                Tok::Punct('}') => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                Tok::Punct(';') if depth == 0 => break,
                _ => {}
            }
        }
    }
    (kept, test_mods)
}

/// `#[path = "p"] … mod name;` declarations: (p, name).
fn path_attributes(toks: &[Tok]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, w) in toks.windows(6).enumerate() {
        if let [
            Tok::Punct('#'),
            Tok::Punct('['),
            Tok::Ident(path),
            Tok::Punct('='),
            Tok::Str(p),
            Tok::Punct(']'),
        ] = w
            && path == "path"
        {
            // Skip further attributes and a visibility to the `mod`.
            let rest = &toks[i + 6..];
            if let Some(m) = rest.iter().position(|t| *t == Tok::Ident("mod".into()))
                && let Some(Tok::Ident(name)) = rest.get(m + 1)
                && rest[..m]
                    .iter()
                    .all(|t| !matches!(t, Tok::Punct(';' | '{')))
            {
                out.push((p.clone(), name.clone()));
            }
        }
    }
    out
}

/// Every path into the crate the tokens name, made absolute: `crate::…`,
/// `$crate::…`, `super::…`, `self::…` (and `livebucket::…` in the binary),
/// with `use` groups expanded. `module` is the file's module; inline
/// `mod x { … }` blocks are followed for `super`/`self`.
fn crate_paths(toks: &[Tok], module: &[String], binary: bool) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // Inline modules open at these brace depths.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
                continue;
            }
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d == depth + 1) {
                    inline.pop();
                }
                i += 1;
                continue;
            }
            Tok::Ident(kw) if kw == "mod" => {
                if let (Some(Tok::Ident(name)), Some(Tok::Punct('{'))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    inline.push((name.clone(), depth + 1));
                }
                i += 1;
                continue;
            }
            _ => {}
        }
        let here: Vec<String> = module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(n, _)| n.clone()))
            .collect();
        let after_sep = i > 0 && toks[i - 1] == Tok::PathSep;
        // `pub(in crate::x)` names an ancestor for visibility: no import.
        let in_visibility = i > 0 && toks[i - 1] == Tok::Ident("in".into());
        let base: Option<(Vec<String>, usize)> = match &toks[i] {
            Tok::Ident(w)
                if !after_sep && !in_visibility && toks.get(i + 1) == Some(&Tok::PathSep) =>
            {
                match w.as_str() {
                    // The binary's `crate` is main.rs: its own modules.
                    "crate" if binary => Some((vec![], i + 2)),
                    "crate" => Some((vec![], i + 2)),
                    "livebucket" if binary => Some((vec![], i + 2)),
                    "self" => Some((here.clone(), i + 2)),
                    "super" => {
                        let mut up = here.clone();
                        let mut j = i;
                        while toks.get(j) == Some(&Tok::Ident("super".into()))
                            && toks.get(j + 1) == Some(&Tok::PathSep)
                        {
                            up.pop();
                            j += 2;
                        }
                        Some((up, j))
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        let Some((base, start)) = base else {
            i += 1;
            continue;
        };
        let (paths, end) = use_tree(toks, start);
        for p in paths {
            let mut full = base.clone();
            full.extend(p);
            // In the binary, `crate::x` is main.rs's module `x` (cli); the
            // library is reached as `livebucket::x`.
            if binary
                && toks[i] == Tok::Ident("crate".into())
                && full.first().is_some_and(|f| f != "main")
            {
                if full.first().is_some_and(|f| f == "cli") {
                    out.push(full);
                }
                continue;
            }
            out.push(full);
        }
        i = end.max(i + 1);
    }
    out
}

/// A use tree (or a plain path) at `i`: `a::b::c`, `a::{b, c::d}`, `*`.
/// Returns the paths it names (segments only, `*` and `self` dropped) and
/// the index after it.
fn use_tree(toks: &[Tok], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix = Vec::new();
    loop {
        match toks.get(i) {
            Some(Tok::Ident(seg)) => {
                if seg != "self" {
                    prefix.push(seg.clone());
                }
                i += 1;
                if toks.get(i) == Some(&Tok::PathSep) {
                    i += 1;
                    continue;
                }
                return (vec![prefix], i);
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                let mut out = Vec::new();
                while i < toks.len() && toks[i] != Tok::Punct('}') {
                    if toks[i] == Tok::Punct(',') {
                        i += 1;
                        continue;
                    }
                    let (inner, end) = use_tree(toks, i);
                    for p in inner {
                        out.push(prefix.iter().cloned().chain(p).collect());
                    }
                    // `as name` and anything else up to the next item.
                    i = end;
                    while i < toks.len() && !matches!(toks[i], Tok::Punct(',' | '}' | '{')) {
                        i += 1;
                    }
                }
                if out.is_empty() {
                    out.push(prefix);
                }
                return (out, i + 1);
            }
            _ => return (vec![prefix], i),
        }
    }
}

#[test]
fn the_scanner_reads_imports_and_skips_comments_and_strings() {
    let src = r##"
        //! crate::doc::comment is no import
        use crate::{config::Config, store::{self, Store as S}};
        use super::live::Window;
        /* crate::block::comment /* nested */ crate::still::comment */
        fn f<'a>(x: &'a str) -> char {
            let _ = "crate::string::literal";
            let _ = r#"crate::raw "string" literal"#;
            let _ = crate::metrics::count();
            pub(in crate::pipeline) struct V;
            'c'
        }
        mod inline {
            use super::*;
            use super::super::machine;
        }
        #[cfg(test)]
        mod tests {
            use crate::http::Router;
        }
        #[cfg(test)]
        fn helper() -> crate::app::App { crate::app::App::new() }
    "##;
    let module = vec!["pipeline".to_string(), "fence".to_string()];
    let (toks, test_mods) = without_test_code(&tokenize(src));
    assert!(test_mods.is_empty());
    let paths: Vec<String> = crate_paths(&toks, &module, false)
        .into_iter()
        .map(|p| p.join("::"))
        .collect();
    assert_eq!(
        paths,
        [
            "config::Config",
            "store",
            "store::Store",
            "pipeline::live::Window",
            "metrics::count",
            "pipeline::fence",
            "pipeline::machine",
        ]
    );
}
