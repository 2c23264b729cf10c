//! `--lang js`: an npm project whose first type is the JavaScript SDK's
//! template (`sdk/js/template`, renamed), with the SDK vendored into
//! `warden-sdk/` and the build tools pinned by the SDK's own lock file, so
//! that `npm ci && npm run build` builds it without a checkout of Warden.

use std::path::Path;

use super::{Language, ProjectFile, TypeName};

/// A resource type in JavaScript over the SDK in `sdk/js`.
pub(super) struct Js;

/// The SDK's modules, embedded when this binary was built and written out
/// as `warden-sdk/`. The unit test `every_sdk_module_is_vendored` fails
/// when a file of `sdk/js/src` is missing here.
const SDK_SOURCES: &[(&str, &str)] = &[
    (
        "checks.js",
        include_str!("../../../../sdk/js/src/checks.js"),
    ),
    (
        "contract.js",
        include_str!("../../../../sdk/js/src/contract.js"),
    ),
    ("index.js", include_str!("../../../../sdk/js/src/index.js")),
    (
        "properties.js",
        include_str!("../../../../sdk/js/src/properties.js"),
    ),
    (
        "resource.js",
        include_str!("../../../../sdk/js/src/resource.js"),
    ),
    (
        "service.js",
        include_str!("../../../../sdk/js/src/service.js"),
    ),
];

/// The template's code and manifest: the project's first type, renamed.
const TEMPLATE_TYPE_JS: &str = include_str!("../../../../sdk/js/template/src/tcp-service.js");
const TEMPLATE_PACKAGE_JSON: &str = include_str!("../../../../sdk/js/template/package.json");
/// The pinned tools' lock (sdk/js/toolchain), the project's lock once its
/// name is the project's: `npm ci` installs exactly these versions.
const TOOLCHAIN_LOCK: &str = include_str!("../../../../sdk/js/toolchain/package-lock.json");
/// The toolchain's package name, replaced in the lock.
const TOOLCHAIN_PACKAGE: &str = "warden-js-toolchain";
/// The template's type name, replaced in its code and manifest.
const TEMPLATE_TYPE: &str = "tcp-service";

impl Language for Js {
    fn name(&self) -> &'static str {
        "js"
    }

    fn check_name(&self, name: &TypeName) -> Result<(), String> {
        // npm refuses a package named after a core module or its own
        // folder names.
        if ["node_modules", "favicon-ico"].contains(&name.as_str()) {
            return Err(format!(
                "{:?} is not a valid npm package name; choose another name",
                name.as_str()
            ));
        }
        Ok(())
    }

    fn files(&self, name: &TypeName) -> Vec<ProjectFile> {
        let mut files = vec![
            ProjectFile::new(
                "package.json",
                TEMPLATE_PACKAGE_JSON.replace(TEMPLATE_TYPE, name.as_str()),
            ),
            ProjectFile::new("package-lock.json", package_lock(name)),
            ProjectFile::new(
                format!("src/{}.js", name.as_str()),
                TEMPLATE_TYPE_JS
                    .replace(
                        "The template for a new resource type in JavaScript.",
                        "Written by `warden plugin new` from Warden's template (see README.md).",
                    )
                    .replace(TEMPLATE_TYPE, name.as_str()),
            ),
            ProjectFile::new("README.md", readme(name)),
            ProjectFile::new(".gitignore", "/node_modules\n*.wasm\n"),
        ];
        for (file, text) in SDK_SOURCES {
            files.push(ProjectFile::new(format!("warden-sdk/{file}"), *text));
        }
        files
    }

    fn next_steps(&self, name: &TypeName, dir: &Path) -> Vec<String> {
        vec![
            format!("cd {}", dir.display()),
            "npm ci            # the pinned componentize-js, once".to_string(),
            "npm run build".to_string(),
            format!("warden plugin check {}.wasm", name.as_str()),
            format!("{}   # README.md says more", plugin_test_line(name)),
        ]
    }
}

/// The toolchain's lock under the project's name (its root entries).
fn package_lock(name: &TypeName) -> String {
    TOOLCHAIN_LOCK
        .replacen(
            &format!("\"name\": \"{TOOLCHAIN_PACKAGE}\""),
            &format!("\"name\": \"{}\"", name.as_str()),
            2,
        )
        .replacen("\"version\": \"1.0.0\"", "\"version\": \"0.1.0\"", 2)
}

/// A `warden plugin test` of the first type against a real service:
/// Python's HTTP server, which listens where it is told.
fn plugin_test_line(name: &TypeName) -> String {
    format!(
        "warden plugin test {}.wasm --grant-program /usr/bin/python3 \
         --prop program=/usr/bin/python3 \
         --prop 'args=-m http.server --bind {{address.host}} {{address.port}}' \
         --prop address=127.0.0.1:8099",
        name.as_str()
    )
}

fn readme(name: &TypeName) -> String {
    format!(
        r#"# {name}: a Warden resource type in JavaScript

Written by `warden plugin new {name} --lang js`. The first type in
`src/{name}.js` runs any program that listens on a TCP port and calls it
healthy while the port accepts connections; make it yours from there
(Warden's docs/sdk.md is the guide).

| path | what |
|---|---|
| `src/{name}.js` | the type: its name, properties, health check |
| `wit/resource.wit` | the contract the agent that wrote this project speaks |
| `warden-sdk/` | Warden's SDK for JavaScript, vendored |
| `package.json`, `package-lock.json` | the build command and the pinned componentize-js |

## Build

You need Node.js 20 or newer with npm:

```sh
npm ci            # once: componentize-js 0.23.0, as the lock pins it
npm run build
```

The plugin is one file, `{name}.wasm` (about 12 MB: it carries a whole
JavaScript engine, SpiderMonkey). Only relative imports inside this
directory are resolved; there is no `node_modules` at run time, no
sockets (the checks go through the agent: `warden-sdk/checks.js`) and no
`fetch`.

## Check and test

```sh
warden plugin check {name}.wasm
{test}
```

## Install

Copy the file into the agent's `plugins_dir` as `{name}.wasm` (to a
temporary name first, then rename), and grant the type its program in the
node configuration:

```toml
[plugins.{name}]
allow_programs = ["/usr/bin/python3"]
```
"#,
        name = name.as_str(),
        test = plugin_test_line(name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sdk_module_is_vendored() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/js/src");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .expect("sdk/js/src")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let vendored: Vec<String> = SDK_SOURCES.iter().map(|(f, _)| f.to_string()).collect();
        assert_eq!(
            vendored, on_disk,
            "SDK_SOURCES must list every file of sdk/js/src"
        );
    }

    #[test]
    fn the_first_type_and_the_lock_carry_the_projects_name() {
        let name = TypeName::parse("my-cache").expect("valid");
        let files = Js.files(&name);
        let file = |path: &str| {
            files
                .iter()
                .find(|f| f.path == path)
                .unwrap_or_else(|| panic!("no {path}"))
                .text
                .to_string()
        };
        let code = file("src/my-cache.js");
        assert!(code.contains("name: 'my-cache',"), "{code}");
        assert!(!code.contains(TEMPLATE_TYPE), "{code}");
        let manifest: serde_json::Value =
            serde_json::from_str(&file("package.json")).expect("package.json");
        assert_eq!(manifest["name"], "my-cache");
        assert!(
            manifest["scripts"]["build"]
                .as_str()
                .is_some_and(|b| b.contains("-o my-cache.wasm src/my-cache.js")),
            "{manifest}"
        );
        let lock: serde_json::Value =
            serde_json::from_str(&file("package-lock.json")).expect("package-lock.json");
        assert_eq!(lock["name"], "my-cache");
        assert_eq!(lock["packages"][""]["name"], "my-cache");
        assert_eq!(
            lock["packages"]["node_modules/@bytecodealliance/componentize-js"]["version"],
            "0.23.0"
        );
        // The same tools in the manifest as in the lock.
        assert_eq!(
            lock["packages"][""]["devDependencies"], manifest["devDependencies"],
            "sdk/js/template/package.json and sdk/js/toolchain/package.json pin the same tools"
        );
    }
}
