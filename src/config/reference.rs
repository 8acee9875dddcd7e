//! Keeps the two documents that list every configuration field,
//! `docs/configuration.md` and `deploy/livebucket.toml.example`, in step with
//! the structs in this module.
//!
//! The field list comes from the structs themselves, through serde: a derived
//! `Deserialize` hands `deserialize_struct` the names of its fields (the very
//! list `deny_unknown_fields` checks a file against). [`Tracer`] is a
//! `Deserializer` that records those lists and follows one field at a time
//! into nested structs (`Option<T>`, `Vec<T>` and newtypes included), so
//! nothing is hand-maintained and no struct needs a derive of its own.
//! Anything that is not a struct (a string, a number, a map such as
//! `api.custom_domains`, an enum) is a leaf: the tracer refuses it and the
//! field is recorded as a setting.
//!
//! Then, for each direction:
//! - every traced setting has a row in `docs/configuration.md` (a table row
//!   whose first cell is `` `field` ``, under the heading of its section:
//!   ``## `[section]` ``, ``## `[[keys]]` ``, ``## `[[a.b]]` `` for a nested
//!   one, `## Top level` for fields outside any section) and a line, set or
//!   commented out, in the example; every row and every line names a traced
//!   setting, and every section has its heading;
//! - the example with every commented-out setting switched on parses into
//!   [`RawConfig`], whose `deny_unknown_fields` proves each line names a
//!   real field with a value of the right type.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use super::RawConfig;

const REFERENCE: &str = include_str!("../../docs/configuration.md");
const EXAMPLE: &str = include_str!("../../deploy/livebucket.toml.example");

/// The tracer's only error: it stops at every leaf.
#[derive(Debug)]
struct Leaf;

impl fmt::Display for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("leaf")
    }
}

impl std::error::Error for Leaf {}

impl de::Error for Leaf {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Leaf
    }
}

/// Struct paths (`""` for the file itself, `"cluster"`, `"keys"`) and the
/// fields serde's derive declares for each.
type Structs = RefCell<BTreeMap<String, &'static [&'static str]>>;

/// Follows `route` (field names) from the struct at `path`, recording each
/// struct it meets.
struct Tracer<'a> {
    route: &'a [&'static str],
    path: String,
    found: &'a Structs,
}

impl<'a> Tracer<'a> {
    fn step(&self, field: &'static str) -> Tracer<'a> {
        let path = if self.path.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.path)
        };
        Tracer {
            route: &self.route[1..],
            path,
            found: self.found,
        }
    }
}

impl<'de> de::Deserializer<'de> for Tracer<'_> {
    type Error = Leaf;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Leaf> {
        Err(Leaf)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Leaf> {
        self.found.borrow_mut().insert(self.path.clone(), fields);
        match self.route.first() {
            Some(&next) if fields.contains(&next) => visitor.visit_map(OneField {
                key: Some(next),
                value: Some(self.step(next)),
            }),
            _ => Err(Leaf),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Leaf> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Leaf> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Leaf> {
        visitor.visit_seq(OneElement(Some(self)))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// A map holding one field: the next step of the route.
struct OneField<'a> {
    key: Option<&'static str>,
    value: Option<Tracer<'a>>,
}

impl<'de> MapAccess<'de> for OneField<'_> {
    type Error = Leaf;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Leaf> {
        match self.key.take() {
            Some(key) => seed.deserialize(key.into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Leaf> {
        seed.deserialize(self.value.take().ok_or(Leaf)?)
    }
}

/// A sequence of one element, so `Vec<Struct>` is followed into `Struct`.
struct OneElement<'a>(Option<Tracer<'a>>);

impl<'de> SeqAccess<'de> for OneElement<'_> {
    type Error = Leaf;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Leaf> {
        match self.0.take() {
            Some(tracer) => seed.deserialize(tracer).map(Some),
            None => Ok(None),
        }
    }
}

/// Every struct in the configuration, by path, with its fields.
fn structs() -> BTreeMap<String, &'static [&'static str]> {
    let found = Structs::default();
    let mut routes: Vec<Vec<&'static str>> = vec![vec![]];
    let mut seen = BTreeSet::new();
    while let Some(route) = routes.pop() {
        // Every trace ends at a leaf or at the end of its route: the error
        // is how it stops, and what it recorded is the result.
        let _ = RawConfig::deserialize(Tracer {
            route: &route,
            path: String::new(),
            found: &found,
        });
        let path = route.join(".");
        // A route that ended at a leaf recorded no struct at its path.
        if !found.borrow().contains_key(&path) || !seen.insert(path.clone()) {
            continue;
        }
        let fields = found.borrow().get(&path).copied().unwrap_or_default();
        for field in fields {
            let mut next = route.clone();
            next.push(field);
            routes.push(next);
        }
    }
    found.into_inner()
}

/// Settings (fields that are not sections) as `section.field`, and the
/// sections (`""` for the top level).
fn settings() -> (BTreeSet<String>, BTreeSet<String>) {
    let structs = structs();
    let mut settings = BTreeSet::new();
    for (path, fields) in &structs {
        for field in *fields {
            let full = if path.is_empty() {
                (*field).to_owned()
            } else {
                format!("{path}.{field}")
            };
            if !structs.contains_key(&full) {
                settings.insert(full);
            }
        }
    }
    (settings, structs.into_keys().collect())
}

/// The rows of `docs/configuration.md`: under a heading ``## `[section]` ``
/// (or ``## `[[keys]]` ``; "## Top level" for fields outside any section),
/// each table row whose first cell is `` `field` `` names `section.field`.
fn reference_rows(text: &str) -> Result<(BTreeSet<String>, BTreeSet<String>), String> {
    let mut section: Option<String> = None;
    let mut rows = BTreeSet::new();
    let mut sections = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        if let Some(heading) = line.strip_prefix("## ") {
            section = if heading == "Top level" {
                Some(String::new())
            } else {
                heading
                    .strip_prefix('`')
                    .and_then(|h| h.strip_suffix('`'))
                    .map(|h| h.trim_matches(['[', ']']).to_owned())
            };
            if let Some(s) = &section {
                sections.insert(s.clone());
            }
            continue;
        }
        let Some(cell) = line.strip_prefix("| `") else {
            continue;
        };
        let Some((field, _)) = cell.split_once('`') else {
            continue;
        };
        let Some(section) = &section else {
            return Err(format!(
                "docs/configuration.md line {}: row `{field}` under no section heading",
                n + 1
            ));
        };
        let full = if section.is_empty() {
            field.to_owned()
        } else {
            format!("{section}.{field}")
        };
        if !rows.insert(full.clone()) {
            return Err(format!(
                "docs/configuration.md line {}: `{full}` twice",
                n + 1
            ));
        }
    }
    Ok((rows, sections))
}

/// The example with every commented-out setting (`#name = …`, `#[section]`)
/// switched on. Prose comments start with `# ` and stay comments.
fn example_switched_on(text: &str) -> String {
    text.lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest)
                if rest.starts_with('[')
                    || rest
                        .split_once(" = ")
                        .is_some_and(|(name, _)| is_bare_key(name)) =>
            {
                rest
            }
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_bare_key(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The settings a TOML document sets, as `section.field`: the keys of each
/// table that is a configuration section (array elements and nested
/// sections such as `[[a.b]]` included), not the keys inside a map-valued
/// setting.
fn example_settings(doc: &toml::Table, sections: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    collect_settings("", doc, sections, &mut out);
    out
}

fn collect_settings(
    path: &str,
    table: &toml::Table,
    sections: &BTreeSet<String>,
    out: &mut BTreeSet<String>,
) {
    for (key, value) in table {
        let full = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match value {
            toml::Value::Table(t) if sections.contains(&full) => {
                collect_settings(&full, t, sections, out);
            }
            toml::Value::Array(a) if sections.contains(&full) => {
                for t in a.iter().filter_map(toml::Value::as_table) {
                    collect_settings(&full, t, sections, out);
                }
            }
            _ => {
                out.insert(full);
            }
        }
    }
}

fn differences(what: &str, want: &BTreeSet<String>, have: &BTreeSet<String>) -> Vec<String> {
    let mut out: Vec<String> = want
        .difference(have)
        .map(|f| format!("{what} lacks `{f}`"))
        .collect();
    out.extend(
        have.difference(want)
            .map(|f| format!("{what} has `{f}`, which is no configuration field")),
    );
    out
}

#[test]
fn the_tracer_finds_sections_settings_and_nested_structs() {
    let (settings, sections) = settings();
    // Sections through a plain field, an Option (cluster) and a Vec (keys).
    for s in ["", "listen", "s3", "cluster", "keys"] {
        assert!(
            sections.contains(s),
            "section {s:?} not traced: {sections:?}"
        );
    }
    // Leaves of every kind: path, string, map, enum, newtype, list.
    for f in [
        "state_dir",
        "s3.endpoint",
        "api.custom_domains",
        "channels.unknown",
        "cluster.password",
        "keys.buckets",
        "hooks.allow",
    ] {
        assert!(
            settings.contains(f),
            "setting {f:?} not traced: {settings:?}"
        );
    }
    assert!(!settings.contains("listen"), "a section is no setting");
}

#[test]
fn docs_configuration_lists_every_field_and_no_other() {
    let (settings, sections) = settings();
    let (rows, headings) = reference_rows(REFERENCE).unwrap();
    let mut problems = differences("docs/configuration.md", &settings, &rows);
    problems.extend(differences(
        "docs/configuration.md's headings",
        &sections,
        &headings,
    ));
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn the_example_shows_every_field_and_parses_with_all_of_them_on() {
    let (settings, sections) = settings();
    let on = example_switched_on(EXAMPLE);
    // deny_unknown_fields: every line names a field, with a value of its type.
    let parsed: Result<RawConfig, _> = toml::from_str(&on);
    if let Err(e) = parsed {
        panic!("the example with every setting on does not parse: {e}");
    }
    let doc: toml::Table = toml::from_str(&on).unwrap();
    let problems = differences(
        "deploy/livebucket.toml.example",
        &settings,
        &example_settings(&doc, &sections),
    );
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

#[test]
fn a_missing_or_unknown_row_is_reported() {
    let text =
        "## Top level\n| `state_dir` | path |\n## `[s3]`\n| `endpoint` | x |\n| `nope` | x |\n";
    let (rows, headings) = reference_rows(text).unwrap();
    let want: BTreeSet<String> = ["state_dir", "s3.endpoint", "s3.region"]
        .map(String::from)
        .into();
    let problems = differences("doc", &want, &rows);
    assert_eq!(
        problems,
        [
            "doc lacks `s3.region`",
            "doc has `s3.nope`, which is no configuration field"
        ]
    );
    assert_eq!(headings, ["".to_owned(), "s3".to_owned()].into());
    assert!(reference_rows("| `orphan` | x |\n").is_err());
}

#[test]
fn example_settings_follow_nested_sections_and_stop_at_maps() {
    let doc: toml::Table =
        toml::from_str("top = 1\n[a]\nx = 1\nm = { k = 1 }\n[[a.b]]\ny = 2\n[[a.b]]\nz = 3\n")
            .unwrap();
    let sections: BTreeSet<String> = ["", "a", "a.b"].map(String::from).into();
    let want: BTreeSet<String> = ["top", "a.x", "a.m", "a.b.y", "a.b.z"]
        .map(String::from)
        .into();
    assert_eq!(example_settings(&doc, &sections), want);
}

#[test]
fn reference_headings_name_nested_sections() {
    let (rows, headings) =
        reference_rows("## `[a]`\n| `x` | t |\n## `[[a.b]]`\n| `y` | t |\n").unwrap();
    assert_eq!(rows, ["a.x".to_owned(), "a.b.y".to_owned()].into());
    assert_eq!(headings, ["a".to_owned(), "a.b".to_owned()].into());
}
