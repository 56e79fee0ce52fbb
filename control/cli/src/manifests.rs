//! Reading `-f FILE|DIR|-` into objects, checked before anything is sent: one bad document
//! anywhere stops the whole command, so a half-applied set of manifests never happens.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _};
use skiff_api::{parse_manifests, Object};

/// The extensions read from a folder (kubectl's).
const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// One manifest text and where it came from (a path, or `-` for standard input).
#[derive(Debug)]
pub struct Source {
    pub label: String,
    pub text: String,
}

/// Reads every `-f` argument: a file, every manifest file of a folder (not its subfolders,
/// sorted by name, so the order is the same on every machine), or `-` for `stdin`.
pub fn collect(paths: &[PathBuf], stdin: &mut dyn Read) -> anyhow::Result<Vec<Source>> {
    let mut sources = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .context("reading manifests from standard input")?;
            sources.push(Source {
                label: "-".into(),
                text,
            });
        } else if path.is_dir() {
            let mut files = Vec::new();
            for entry in std::fs::read_dir(path)
                .with_context(|| format!("reading folder {}", path.display()))?
            {
                let file = entry?.path();
                let manifest = file
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| EXTENSIONS.contains(&e));
                if manifest && file.is_file() {
                    files.push(file);
                }
            }
            if files.is_empty() {
                bail!(
                    "{}: no manifest files (*.yaml, *.yml, *.json) in this folder",
                    path.display()
                );
            }
            files.sort();
            for file in files {
                sources.push(read(&file)?);
            }
        } else {
            sources.push(read(path)?);
        }
    }
    Ok(sources)
}

fn read(path: &Path) -> anyhow::Result<Source> {
    Ok(Source {
        label: path.display().to_string(),
        text: std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))?,
    })
}

/// Manifests that did not parse: every bad file, each with its first error.
#[derive(Debug)]
pub struct BadManifests {
    pub errors: Vec<String>,
    /// What did not happen because of them ("applied", "deleted").
    pub verb: &'static str,
}

impl std::fmt::Display for BadManifests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for e in &self.errors {
            writeln!(f, "{e}")?;
        }
        write!(f, "nothing was {}: fix the manifests first", self.verb)
    }
}

impl std::error::Error for BadManifests {}

/// Parses every source and places namespaced objects that name no namespace in
/// `namespace`. With `--namespace` given (`explicit`), an object naming another namespace is
/// an error, as in kubectl: the flag must not be silently ignored.
pub fn parse(
    sources: &[Source],
    namespace: &str,
    explicit: bool,
    verb: &'static str,
) -> Result<Vec<Object>, BadManifests> {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for source in sources {
        match parse_manifests(&source.text) {
            Ok(parsed) if parsed.is_empty() => {
                errors.push(format!("{}: no objects in it", source.label));
            }
            Ok(parsed) => {
                for mut object in parsed {
                    if !object.kind().namespaced() {
                        objects.push(object);
                        continue;
                    }
                    let kind = object.kind();
                    let meta = object.metadata_mut();
                    match &meta.namespace {
                        Some(ns) if explicit && ns != namespace => errors.push(format!(
                            "{}: {} {:?} is in namespace {ns:?}, not {namespace:?} as --namespace says: drop --namespace or pass --namespace {ns}",
                            source.label,
                            kind,
                            meta.name
                        )),
                        Some(_) => {}
                        None => meta.namespace = Some(namespace.to_string()),
                    }
                    objects.push(object);
                }
            }
            Err(e) => errors.push(format!("{}: {e}", source.label)),
        }
    }
    if errors.is_empty() {
        Ok(objects)
    } else {
        Err(BadManifests { errors, verb })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n";
    const SERVICE: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports:
  - port: 80
";

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn a_folder_gives_its_manifest_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b.yaml", SERVICE);
        write(dir.path(), "a.yml", NAMESPACE);
        write(
            dir.path(),
            "c.json",
            r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}}"#,
        );
        write(dir.path(), "README.md", "not a manifest");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        write(&dir.path().join("sub"), "d.yaml", NAMESPACE);
        let sources = collect(&[dir.path().to_path_buf()], &mut std::io::empty()).unwrap();
        let names: Vec<&str> = sources
            .iter()
            .map(|s| s.label.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(names, ["a.yml", "b.yaml", "c.json"]);
        let objects = parse(&sources, "default", false, "applied").unwrap();
        assert_eq!(objects.len(), 3);
        assert_eq!(objects[1].metadata().namespace.as_deref(), Some("default"));
    }

    #[test]
    fn dash_reads_standard_input_and_files_mix_in() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "ns.yaml", NAMESPACE);
        let paths = [PathBuf::from("-"), dir.path().join("ns.yaml")];
        let sources = collect(&paths, &mut SERVICE.as_bytes()).unwrap();
        assert_eq!(sources[0].label, "-");
        let objects = parse(&sources, "shop", true, "applied").unwrap();
        assert_eq!(objects[0].metadata().namespace.as_deref(), Some("shop"));
    }

    #[test]
    fn one_bad_file_stops_everything_and_names_file_document_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", NAMESPACE);
        let bad = format!("{NAMESPACE}---\n{}", SERVICE.replace("port: 80", "port: 0"));
        write(dir.path(), "b.yaml", &bad);
        write(dir.path(), "c.yaml", &SERVICE.replace("ports:", "portz:"));
        let sources = collect(&[dir.path().to_path_buf()], &mut std::io::empty()).unwrap();
        let e = parse(&sources, "default", false, "applied").unwrap_err();
        assert_eq!(e.errors.len(), 2, "{e}");
        assert!(
            e.errors[0].ends_with(
                "b.yaml: document 2 (line 12): Service web: spec.ports[0].port: 0: expected a port between 1 and 65535"
            ),
            "{e}"
        );
        assert!(e.errors[1].contains("c.yaml: document 1 (line 6)"), "{e}");
        assert!(e.errors[1].contains("unknown field `portz`"), "{e}");
        assert!(e
            .to_string()
            .ends_with("nothing was applied: fix the manifests first"));
    }

    #[test]
    fn empty_folders_files_and_foreign_namespaces_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let e = collect(&[dir.path().to_path_buf()], &mut std::io::empty()).unwrap_err();
        assert!(e.to_string().contains("no manifest files"), "{e}");
        write(dir.path(), "empty.yaml", "# nothing yet\n");
        let sources = collect(&[dir.path().join("empty.yaml")], &mut std::io::empty()).unwrap();
        let e = parse(&sources, "default", false, "applied").unwrap_err();
        assert!(e.errors[0].ends_with("empty.yaml: no objects in it"), "{e}");
        let placed = Source {
            label: "svc.yaml".into(),
            text: SERVICE.replace("name: web", "name: web\n  namespace: shop"),
        };
        assert!(parse(std::slice::from_ref(&placed), "default", false, "applied").is_ok());
        let e = parse(&[placed], "other", true, "deleted").unwrap_err();
        assert!(e.errors[0].contains("pass --namespace shop"), "{e}");
        assert!(e.to_string().contains("nothing was deleted"));
    }
}
