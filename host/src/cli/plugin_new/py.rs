//! `--lang python`: a Python project whose first type is the Python SDK's
//! template (`sdk/python/template`, renamed), with the SDK
//! (`sdk/python/warden_sdk` and its `resource_type` module) vendored in, so
//! that it builds with componentize-py alone, without a checkout of Warden.

use std::path::Path;

use super::{Language, ProjectFile, TypeName};

/// A resource type in Python over `warden_sdk`, built with componentize-py.
pub(super) struct Py;

/// The SDK's modules, embedded when this binary was built and written out
/// beside the type. The unit test `every_python_sdk_module_is_vendored`
/// fails when a module of `sdk/python/warden_sdk` is missing here.
const SDK_FILES: &[(&str, &str)] = &[
    (
        "resource_type.py",
        include_str!("../../../../sdk/python/resource_type.py"),
    ),
    (
        "warden_sdk/__init__.py",
        include_str!("../../../../sdk/python/warden_sdk/__init__.py"),
    ),
    (
        "warden_sdk/checks.py",
        include_str!("../../../../sdk/python/warden_sdk/checks.py"),
    ),
    (
        "warden_sdk/export.py",
        include_str!("../../../../sdk/python/warden_sdk/export.py"),
    ),
    (
        "warden_sdk/properties.py",
        include_str!("../../../../sdk/python/warden_sdk/properties.py"),
    ),
    (
        "warden_sdk/resource.py",
        include_str!("../../../../sdk/python/warden_sdk/resource.py"),
    ),
    (
        "warden_sdk/service.py",
        include_str!("../../../../sdk/python/warden_sdk/service.py"),
    ),
];

/// The template's files, renamed for the new type.
const TEMPLATE_APP: &str = include_str!("../../../../sdk/python/template/app.py");
const TEMPLATE_BUILD: &str = include_str!("../../../../sdk/python/template/build.sh");
const TEMPLATE_README: &str = include_str!("../../../../sdk/python/template/README.md");
/// The pinned componentize-py.
const REQUIREMENTS: &str = include_str!("../../../../sdk/python/template/requirements.txt");
/// The template's type name, class and component file, replaced.
const TEMPLATE_TYPE: &str = "tcp-service";
const TEMPLATE_CLASS: &str = "TcpService";
const TEMPLATE_WASM: &str = "tcp_service";

/// Names the template's code uses or Python reserves: a type of one of
/// these class names is written as `NameType` instead.
const TAKEN_IN_CODE: &[&str] = &[
    "False",
    "Failure",
    "None",
    "Property",
    "PropertyRefused",
    "Props",
    "ResourceType",
    "Service",
    "ServiceDefaults",
    "ServiceType",
    "Timing",
    "True",
];

/// The class the type is in `app.py`.
fn class_name(name: &TypeName) -> String {
    let camel = name.camel();
    if TAKEN_IN_CODE.contains(&camel.as_str()) {
        format!("{camel}Type")
    } else {
        camel
    }
}

/// `text` of the template with the new type's names.
fn renamed(text: &str, name: &TypeName) -> String {
    text.replace(
        "The template for a new resource type in Python (see README.md).",
        "Written by `warden plugin new` from Warden's template (see README.md).",
    )
    .replace(TEMPLATE_TYPE, name.as_str())
    .replace(TEMPLATE_CLASS, &class_name(name))
    .replace(TEMPLATE_WASM, &name.snake())
}

/// Where build.sh puts the component, relative to the project.
fn wasm_path(name: &TypeName) -> String {
    format!("build/{}.wasm", name.snake())
}

impl Language for Py {
    fn name(&self) -> &'static str {
        "python"
    }

    fn files(&self, name: &TypeName) -> Vec<ProjectFile> {
        let mut files = vec![
            ProjectFile::new("app.py", renamed(TEMPLATE_APP, name)),
            ProjectFile::new("build.sh", renamed(TEMPLATE_BUILD, name)),
            ProjectFile::new("requirements.txt", REQUIREMENTS),
            ProjectFile::new("README.md", renamed(TEMPLATE_README, name)),
            ProjectFile::new(".gitignore", "/build\n/.venv\n__pycache__/\n"),
        ];
        for (file, text) in SDK_FILES {
            files.push(ProjectFile::new(*file, *text));
        }
        files
    }

    fn next_steps(&self, name: &TypeName, dir: &Path) -> Vec<String> {
        vec![
            format!("cd {}", dir.display()),
            "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt   # once"
                .to_string(),
            "bash build.sh".to_string(),
            format!("warden plugin check {}", wasm_path(name)),
            "README.md says how to run it through warden plugin test".to_string(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_python_sdk_module_is_vendored() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/python/warden_sdk");
        for entry in std::fs::read_dir(&dir).expect("sdk/python/warden_sdk") {
            let file = entry.expect("entry").file_name();
            let file = file.to_string_lossy();
            if file.ends_with(".py") {
                let vendored = format!("warden_sdk/{file}");
                assert!(
                    SDK_FILES.iter().any(|(path, _)| *path == vendored),
                    "{vendored} is not in SDK_FILES"
                );
            }
        }
    }

    #[test]
    fn the_template_is_renamed_throughout() {
        let name = TypeName::parse("my-cache").expect("a good name");
        for file in Py.files(&name) {
            if file.path.starts_with("warden_sdk/") || file.path == "resource_type.py" {
                continue;
            }
            for old in [TEMPLATE_TYPE, TEMPLATE_CLASS, TEMPLATE_WASM] {
                assert!(!file.text.contains(old), "{} still says {old}", file.path);
            }
        }
        let none = TypeName::parse("none").expect("a good name");
        assert_eq!(class_name(&none), "NoneType");
    }
}
