//! `warden plugin new NAME --lang LANG [--dir PATH]`: write a ready project
//! for a new resource type, outside any checkout of Warden.
//!
//! Every project gets `wit/resource.wit`, the contract this agent speaks
//! (embedded in the binary when it was built, so the project and the agent
//! agree); a [`Language`] adds the rest: its build files, the SDK it
//! needs, a first type that passes `warden plugin test`, and a README with
//! the build command.
//!
//! # Adding a language
//! Write one module here with a unit struct that implements [`Language`]
//! (its `--lang` name, any naming rule of its own, its files, the steps
//! printed after writing), then list it in [`LANGUAGES`]. Nothing else
//! changes: the argument's accepted values, the checks of the name and
//! the directory, and the writing of the files are shared.

mod js;
mod py;
mod rust;

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Every language `--lang` accepts, in the order `--help` lists them.
pub static LANGUAGES: &[&dyn Language] = &[&rust::Rust, &py::Py, &js::Js];

/// The contract this agent speaks, written into every project as
/// `wit/resource.wit`.
pub const CONTRACT_WIT: &str = include_str!("../../../../wit/resource.wit");

/// One language a new type can be written in.
pub trait Language: Sync {
    /// Its `--lang` value, e.g. `rust`.
    fn name(&self) -> &'static str;

    /// Refuse a type name this language cannot use (a reserved word, a
    /// clash with its SDK), saying why. The rules every language shares
    /// are checked by [`TypeName::parse`] before.
    fn check_name(&self, _name: &TypeName) -> Result<(), String> {
        Ok(())
    }

    /// The project's files, paths relative to its directory; `wit/` is
    /// written for every language and must not be among them.
    fn files(&self, name: &TypeName) -> Vec<ProjectFile>;

    /// What to run next, printed after the files are written (`dir` is
    /// where they are).
    fn next_steps(&self, name: &TypeName, dir: &Path) -> Vec<String>;
}

/// One file of a new project.
pub struct ProjectFile {
    /// Where it goes, relative to the project's directory.
    pub path: String,
    /// Its text.
    pub text: Cow<'static, str>,
}

impl ProjectFile {
    /// A file at `path` holding `text`.
    pub fn new(path: impl Into<String>, text: impl Into<Cow<'static, str>>) -> ProjectFile {
        ProjectFile {
            path: path.into(),
            text: text.into(),
        }
    }
}

/// A resource type's name as the agent accepts it, and its spellings in
/// code: `my-cache` is `my_cache` (a module or file) and `MyCache` (a type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeName(String);

/// The longest type name the agent accepts.
const MAX_TYPE_NAME: usize = 64;

impl TypeName {
    /// Check `name` against the agent's rule for type names (1 to 64 of
    /// a-z, 0-9 and -) and what every language's identifiers need (a
    /// letter first, no `-` at the end or twice in a row), naming what is
    /// wrong.
    pub fn parse(name: &str) -> Result<TypeName, String> {
        let rule = "a type name is 1 to 64 characters of a-z, 0-9 and -, \
                    starting with a letter (e.g. memcache, my-cache)";
        if name.is_empty() {
            return Err(format!("the type name is empty: {rule}"));
        }
        if name.len() > MAX_TYPE_NAME {
            return Err(format!(
                "the type name {name:?} is {} characters long: {rule}",
                name.len()
            ));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(format!("the type name {name:?} holds {bad:?}: {rule}"));
        }
        if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(format!(
                "the type name {name:?} does not start with a letter: {rule}"
            ));
        }
        if name.ends_with('-') || name.contains("--") {
            return Err(format!(
                "the type name {name:?} has a - at its end or two in a row: {rule}"
            ));
        }
        Ok(TypeName(name.to_string()))
    }

    /// The name itself, as operators write it in `type = "..."`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `my-cache` as `my_cache`.
    pub fn snake(&self) -> String {
        self.0.replace('-', "_")
    }

    /// `my-cache` as `MyCache`.
    pub fn camel(&self) -> String {
        self.0
            .split('-')
            .map(|part| {
                let mut chars = part.chars();
                match chars.next() {
                    Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                    None => String::new(),
                }
            })
            .collect()
    }
}

/// What `warden plugin new` was asked.
pub struct NewArgs {
    /// The type's name.
    pub name: String,
    /// The `--lang` value (one of [`LANGUAGES`]).
    pub lang: String,
    /// Where to write the project; default `./NAME`.
    pub dir: Option<PathBuf>,
}

/// The `--lang` values, for clap.
pub fn language_parser() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(LANGUAGES.iter().map(|l| l.name()))
}

/// Run `warden plugin new`: check the name and the directory, write the
/// project, print what was written and what to do next.
pub fn run(args: &NewArgs) -> Result<()> {
    let language = LANGUAGES
        .iter()
        .find(|l| l.name() == args.lang)
        .with_context(|| {
            format!(
                "no language {:?} (known: {})",
                args.lang,
                LANGUAGES
                    .iter()
                    .map(|l| l.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let name = TypeName::parse(&args.name).map_err(anyhow::Error::msg)?;
    language
        .check_name(&name)
        .map_err(|why| anyhow::anyhow!("{why} ({} projects)", language.name()))?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(name.as_str()));
    let mut files = vec![ProjectFile::new("wit/resource.wit", CONTRACT_WIT)];
    files.extend(language.files(&name));
    write_project(&dir, &files)?;
    println!(
        "created the {} resource type {} in {}:",
        language.name(),
        name.as_str(),
        dir.display()
    );
    for file in &files {
        println!("  {}", file.path);
    }
    println!("next:");
    for step in language.next_steps(&name, &dir) {
        println!("  {step}");
    }
    Ok(())
}

/// Write `files` into `dir`, which must be missing or empty: a project is
/// never written over anything. Each file is created new, so a file that
/// appears meanwhile is not overwritten either.
pub fn write_project(dir: &Path, files: &[ProjectFile]) -> Result<()> {
    for file in files {
        let relative = Path::new(&file.path);
        if relative.as_os_str().is_empty()
            || relative
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            bail!("{:?} is not a path inside the project", file.path);
        }
    }
    refuse_occupied(dir)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for file in files {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        use std::io::Write;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut f| f.write_all(file.text.as_bytes()))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Refuse a `dir` that is a file, or a directory with anything in it,
/// naming what is there.
fn refuse_occupied(dir: &Path) -> Result<()> {
    let meta = match std::fs::metadata(dir) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err).with_context(|| format!("looking at {}", dir.display())),
    };
    if !meta.is_dir() {
        bail!(
            "{} exists and is not a directory; choose another --dir",
            dir.display()
        );
    }
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .take(4)
        .collect::<Vec<_>>();
    if !entries.is_empty() {
        entries.sort();
        bail!(
            "{} exists and is not empty (it holds {}{}); choose another --dir or empty it",
            dir.display(),
            entries
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            if entries.len() > 3 { ", ..." } else { "" }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_follow_the_agents_rule_and_name_what_is_wrong() {
        for good in ["memcache", "my-cache", "a", "tcp2", "x-1-y"] {
            assert!(TypeName::parse(good).is_ok(), "{good}");
        }
        for (bad, says) in [
            ("", "is empty"),
            ("Memcache", "holds 'M'"),
            ("my_cache", "holds '_'"),
            ("my cache", "holds ' '"),
            ("2cache", "does not start with a letter"),
            ("-cache", "does not start with a letter"),
            ("cache-", "at its end"),
            ("my--cache", "two in a row"),
            ("né", "holds 'é'"),
        ] {
            let err = TypeName::parse(bad).expect_err(bad);
            assert!(err.contains(says), "{bad:?}: {err}");
        }
        let long = "a".repeat(65);
        assert!(
            TypeName::parse(&long)
                .unwrap_err()
                .contains("65 characters")
        );
        assert!(TypeName::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn a_name_is_spelt_for_code() {
        let name = TypeName::parse("my-cache-2").expect("valid");
        assert_eq!(name.snake(), "my_cache_2");
        assert_eq!(name.camel(), "MyCache2");
    }

    #[test]
    fn languages_have_distinct_names() {
        let mut names: Vec<&str> = LANGUAGES.iter().map(|l| l.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), LANGUAGES.len());
    }

    #[test]
    fn nothing_is_written_over_an_occupied_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("project");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("notes.txt"), "mine").expect("write");
        let files = [ProjectFile::new("notes.txt", "theirs")];
        let err = write_project(&dir, &files).expect_err("occupied");
        assert!(
            format!("{err:#}").contains("is not empty (it holds notes.txt)"),
            "{err:#}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
            "mine"
        );

        let file = tmp.path().join("a-file");
        std::fs::write(&file, "").expect("write");
        let err = write_project(&file, &files).expect_err("a file");
        assert!(format!("{err:#}").contains("is not a directory"), "{err:#}");

        // An empty directory is fine; a path leaving the project is not.
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).expect("mkdir");
        write_project(&empty, &files).expect("an empty directory");
        let escape = [ProjectFile::new("../outside", "x")];
        let err = write_project(&tmp.path().join("other"), &escape).expect_err("escape");
        assert!(format!("{err:#}").contains("not a path inside"), "{err:#}");
        assert!(!tmp.path().join("outside").exists());
    }
}
