//! `--lang rust`: a cargo project whose first type is the SDK's template
//! (`sdk/template`, renamed), with the SDK vendored into `warden-sdk/` so
//! that it builds without a checkout of Warden.

use std::path::Path;

use super::{Language, ProjectFile, TypeName};

/// A resource type in Rust over `warden-sdk`.
pub(super) struct Rust;

/// The SDK's sources, embedded when this binary was built and written out
/// as `warden-sdk/src/`. The unit test `every_sdk_source_is_vendored`
/// fails when a file of `sdk/src` is missing here.
const SDK_SOURCES: &[(&str, &str)] = &[
    ("lib.rs", include_str!("../../../../sdk/src/lib.rs")),
    ("net.rs", include_str!("../../../../sdk/src/net.rs")),
    (
        "properties.rs",
        include_str!("../../../../sdk/src/properties.rs"),
    ),
    (
        "resource.rs",
        include_str!("../../../../sdk/src/resource.rs"),
    ),
    ("service.rs", include_str!("../../../../sdk/src/service.rs")),
];

/// The template's code: the project's first type, renamed.
const TEMPLATE_LIB: &str = include_str!("../../../../sdk/template/src/lib.rs");
/// The versions the template builds with, so a new project resolves the
/// same crates (and builds offline where they are in cargo's cache).
const TEMPLATE_LOCK: &str = include_str!("../../../../sdk/template/Cargo.lock");
/// The template's package name, replaced in its lock file and code.
const TEMPLATE_PACKAGE: &str = "tcp-service-type";
/// The template's type name and struct, replaced in its code.
const TEMPLATE_TYPE: &str = "tcp-service";
const TEMPLATE_STRUCT: &str = "TcpService";

/// The wit-bindgen the SDK is built with (the workspace's; the unit test
/// `the_vendored_sdk_uses_the_workspaces_wit_bindgen` holds them equal).
const WIT_BINDGEN: &str = "0.61";

/// Names a cargo package cannot take: Rust's keywords and its own crates,
/// and the SDK the project depends on.
const RESERVED: &[&str] = &[
    "abstract",
    "alloc",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "core",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "proc-macro",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "std",
    "struct",
    "super",
    "test",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "warden-sdk",
    "where",
    "while",
    "yield",
];

/// Names the template's code uses: a type of one of these names is
/// written as `NameType` instead.
const TAKEN_IN_CODE: &[&str] = &[
    "Box",
    "Deadline",
    "Default",
    "Duration",
    "Err",
    "Managed",
    "None",
    "Ok",
    "Option",
    "Property",
    "PropertyError",
    "Props",
    "Result",
    "ServiceDefaults",
    "ServiceType",
    "Some",
    "String",
    "Vec",
];

/// The struct the type is in `src/lib.rs`.
fn struct_name(name: &TypeName) -> String {
    let camel = name.camel();
    if TAKEN_IN_CODE.contains(&camel.as_str()) {
        format!("{camel}Type")
    } else {
        camel
    }
}

impl Language for Rust {
    fn name(&self) -> &'static str {
        "rust"
    }

    fn check_name(&self, name: &TypeName) -> Result<(), String> {
        if RESERVED.contains(&name.as_str()) {
            return Err(format!(
                "{:?} is reserved in Rust (a keyword, one of its crates, or the SDK's name); \
                 choose another name",
                name.as_str()
            ));
        }
        Ok(())
    }

    fn files(&self, name: &TypeName) -> Vec<ProjectFile> {
        let mut files = vec![
            ProjectFile::new("Cargo.toml", cargo_toml(name)),
            ProjectFile::new(
                "Cargo.lock",
                TEMPLATE_LOCK.replace(
                    &format!("name = \"{TEMPLATE_PACKAGE}\""),
                    &format!("name = \"{}\"", name.as_str()),
                ),
            ),
            ProjectFile::new("src/lib.rs", lib_rs(name)),
            ProjectFile::new("README.md", readme(name)),
            ProjectFile::new(".gitignore", "/target\n"),
            ProjectFile::new("warden-sdk/Cargo.toml", sdk_cargo_toml()),
        ];
        for (file, text) in SDK_SOURCES {
            files.push(ProjectFile::new(format!("warden-sdk/src/{file}"), *text));
        }
        files
    }

    fn next_steps(&self, name: &TypeName, dir: &Path) -> Vec<String> {
        vec![
            format!("cd {}", dir.display()),
            "rustup target add wasm32-wasip2   # once".to_string(),
            "cargo build --release --target wasm32-wasip2".to_string(),
            format!("warden plugin check {}", wasm_path(name)),
            format!("{}   # README.md says more", plugin_test_line(name)),
        ]
    }
}

/// Where cargo puts the built component, relative to the project.
fn wasm_path(name: &TypeName) -> String {
    format!("target/wasm32-wasip2/release/{}.wasm", name.snake())
}

/// A `warden plugin test` of the first type against a real service:
/// Python's HTTP server, which listens where it is told.
fn plugin_test_line(name: &TypeName) -> String {
    format!(
        "warden plugin test {} --grant-program /usr/bin/python3 \
         --prop program=/usr/bin/python3 \
         --prop 'args=-m http.server --bind {{address.host}} {{address.port}}' \
         --prop address=127.0.0.1:8099",
        wasm_path(name)
    )
}

fn cargo_toml(name: &TypeName) -> String {
    format!(
        r#"# The Warden resource type `{name}`: a WebAssembly component.
# Build it (README.md says more):
#   rustup target add wasm32-wasip2   # once
#   cargo build --release --target wasm32-wasip2
[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# A plugin is a WebAssembly component: a C-style dynamic library.
crate-type = ["cdylib"]

[dependencies]
# Warden's SDK, vendored into this project by `warden plugin new`: the
# bindings of the contract in wit/ and the helpers. The only dependency a
# plugin needs.
warden-sdk = {{ path = "warden-sdk" }}

# A workspace of its own.
[workspace]

# Small, fast plugins; a panic aborts (the agent discards the instance).
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = "debuginfo"
panic = "abort"
"#,
        name = name.as_str()
    )
}

fn sdk_cargo_toml() -> String {
    format!(
        r#"# warden-sdk as Warden {version} ships it, written here by `warden plugin new`.
# Its bindings are generated from ../wit/resource.wit, the contract of the
# agent that wrote this project. Take a newer SDK (and contract) by running
# `warden plugin new` of a newer agent and copying its warden-sdk/ and wit/.
[package]
name = "warden-sdk"
description = "Write Warden resource types: the bindings to the warden:resource contract and helpers."
version = "{version}"
edition = "2024"
license = "Apache-2.0"
publish = false

[dependencies]
wit-bindgen = "{WIT_BINDGEN}"
"#,
        version = env!("CARGO_PKG_VERSION"),
    )
}

fn lib_rs(name: &TypeName) -> String {
    TEMPLATE_LIB
        .replace(
            "The template for a new resource type (see `README.md`).",
            "Written by `warden plugin new` from Warden's template (see `README.md`).",
        )
        .replace(TEMPLATE_TYPE, name.as_str())
        .replace(TEMPLATE_STRUCT, &struct_name(name))
}

fn readme(name: &TypeName) -> String {
    format!(
        r#"# {name}: a Warden resource type

Written by `warden plugin new {name} --lang rust`. The first type in
`src/lib.rs` runs any program that listens on a TCP port and calls it
healthy while the port accepts connections; make it yours from there
(Warden's docs/sdk.md is the guide).

| path | what |
|---|---|
| `src/lib.rs` | the type: its name, properties, health check |
| `wit/resource.wit` | the contract the agent that wrote this project speaks |
| `warden-sdk/` | Warden's SDK for Rust, vendored: the bindings of `wit/` and the helpers |

## Build

You need Rust 1.85 or newer with the WebAssembly target:

```sh
rustup target add wasm32-wasip2   # once
cargo build --release --target wasm32-wasip2
```

The plugin is one file, `{wasm}`.

## Check and test

```sh
warden plugin check {wasm}
{test}
```

`plugin check` loads the file as the agent would and prints its
description; `plugin test` takes one resource through its whole life cycle
(online, health checks, a kill -9 of the service, recovery, offline)
against the real program, granted with `--grant-program`.

## Install

Copy the file into the agent's `plugins_dir` as `{name}.wasm` (to a
temporary name first, then rename), and grant the type its program in the
node configuration:

```toml
[plugins.{name}]
allow_programs = ["/usr/bin/python3"]
```

Then `warden resource create NAME --type {name} --group GROUP --prop ...`.
"#,
        name = name.as_str(),
        wasm = wasm_path(name),
        test = plugin_test_line(name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdk_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk")
    }

    #[test]
    fn every_sdk_source_is_vendored() {
        let mut on_disk: Vec<String> = std::fs::read_dir(sdk_dir().join("src"))
            .expect("sdk/src")
            .map(|e| {
                let e = e.expect("entry");
                assert!(
                    e.file_type().expect("type").is_file(),
                    "sdk/src/{} is a directory: vendor it in SDK_SOURCES",
                    e.file_name().to_string_lossy()
                );
                e.file_name().to_string_lossy().into_owned()
            })
            .collect();
        on_disk.sort();
        let mut vendored: Vec<String> = SDK_SOURCES.iter().map(|(f, _)| f.to_string()).collect();
        vendored.sort();
        assert_eq!(
            vendored, on_disk,
            "SDK_SOURCES must list every file of sdk/src"
        );
    }

    #[test]
    fn the_vendored_sdk_uses_the_workspaces_wit_bindgen() {
        let root: toml::Table = std::fs::read_to_string(sdk_dir().join("../Cargo.toml"))
            .expect("Cargo.toml")
            .parse()
            .expect("toml");
        assert_eq!(
            root["workspace"]["dependencies"]["wit-bindgen"].as_str(),
            Some(WIT_BINDGEN)
        );
        let sdk: toml::Table = std::fs::read_to_string(sdk_dir().join("Cargo.toml"))
            .expect("sdk/Cargo.toml")
            .parse()
            .expect("toml");
        let deps: Vec<&String> = sdk["dependencies"]
            .as_table()
            .expect("deps")
            .keys()
            .collect();
        assert_eq!(deps, ["wit-bindgen"], "the vendored Cargo.toml lists these");
    }

    #[test]
    fn the_first_type_is_the_template_renamed() {
        let name = TypeName::parse("my-cache").expect("valid");
        let lib = lib_rs(&name);
        assert!(
            lib.contains("const NAME: &'static str = \"my-cache\";"),
            "{lib}"
        );
        assert!(lib.contains("impl ServiceType for MyCache"), "{lib}");
        assert!(lib.contains("Managed<MyCache>"), "{lib}");
        assert!(
            !lib.contains(TEMPLATE_TYPE) && !lib.contains(TEMPLATE_STRUCT),
            "{lib}"
        );
        let lock = Rust
            .files(&name)
            .into_iter()
            .find(|f| f.path == "Cargo.lock")
            .expect("a lock file");
        assert!(lock.text.contains("name = \"my-cache\""));
        assert!(!lock.text.contains(TEMPLATE_PACKAGE));
        // A name the code already uses is suffixed, not clashed with.
        let duration = TypeName::parse("duration").expect("valid");
        assert!(lib_rs(&duration).contains("impl ServiceType for DurationType"));
    }

    #[test]
    fn rust_refuses_its_reserved_names() {
        for reserved in ["fn", "std", "test", "warden-sdk", "type"] {
            let name = TypeName::parse(reserved).expect("a valid type name");
            let err = Rust.check_name(&name).expect_err(reserved);
            assert!(err.contains("reserved in Rust"), "{err}");
        }
        assert!(
            Rust.check_name(&TypeName::parse("memcache").unwrap())
                .is_ok()
        );
    }
}
