//! Packs a build context directory into the tar the Engine's `/build` endpoint takes,
//! leaving out what `.dockerignore` excludes.
//!
//! As with the Docker CLI, the Dockerfile is always sent (even when `.dockerignore` names
//! it); a Dockerfile outside the context is added under a private name. Symlinks are kept
//! as symlinks; an excluded directory is not walked unless a `!` line could re-include
//! something below it.

use super::ignore::{DockerIgnore, IgnoreError};
use std::path::{Path, PathBuf};

/// The name a Dockerfile from outside the context gets inside the tar.
pub const OUTSIDE_DOCKERFILE: &str = ".airflow-mesos.Dockerfile";

/// A packed context.
#[derive(Debug)]
pub struct PackedContext {
    /// The tar bytes.
    pub tar: Vec<u8>,
    /// The Dockerfile's path inside the tar (`/`-separated).
    pub dockerfile: String,
    /// Paths put into the tar (files, symlinks, directories), for tests and `--verbose`.
    pub entries: Vec<String>,
}

/// The context could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("build context {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("Dockerfile {0} not found")]
    NoDockerfile(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Ignore(#[from] IgnoreError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Packs `context` (with its `.dockerignore`, if any) and `dockerfile` into a tar. Blocking:
/// call it from `spawn_blocking` in async code.
pub fn pack(context: &Path, dockerfile: &Path) -> Result<PackedContext, ContextError> {
    if !context.is_dir() {
        return Err(ContextError::NotADirectory(context.to_path_buf()));
    }
    if !dockerfile.is_file() {
        return Err(ContextError::NoDockerfile(dockerfile.to_path_buf()));
    }
    let ignore_path = context.join(".dockerignore");
    let ignore = match std::fs::read_to_string(&ignore_path) {
        Ok(text) => DockerIgnore::parse(&text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DockerIgnore::default(),
        Err(e) => return Err(io_err(&ignore_path)(e)),
    };
    let ctx_abs = context.canonicalize().map_err(io_err(context))?;
    let df_abs = dockerfile.canonicalize().map_err(io_err(dockerfile))?;
    let inside = df_abs
        .strip_prefix(&ctx_abs)
        .ok()
        .map(|p| p.to_string_lossy().replace('\\', "/"));

    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    // Sparse files go in as plain files: the engine's tar reader refuses GNU sparse entries
    // ("unhandled tar header type 83"), and a copied binary is often sparse.
    builder.sparse(false);
    let mut entries = Vec::new();
    walk(&ctx_abs, "", &ignore, &mut builder, &mut entries)?;
    let dockerfile_name = match inside {
        Some(rel) => {
            if !entries.iter().any(|e| e == &rel) {
                builder
                    .append_path_with_name(&df_abs, &rel)
                    .map_err(io_err(&df_abs))?;
                entries.push(rel.clone());
            }
            rel
        }
        None => {
            builder
                .append_path_with_name(&df_abs, OUTSIDE_DOCKERFILE)
                .map_err(io_err(&df_abs))?;
            entries.push(OUTSIDE_DOCKERFILE.to_string());
            OUTSIDE_DOCKERFILE.to_string()
        }
    };
    let tar = builder.into_inner().map_err(io_err(context))?;
    Ok(PackedContext {
        tar,
        dockerfile: dockerfile_name,
        entries,
    })
}

fn walk(
    dir: &Path,
    rel: &str,
    ignore: &DockerIgnore,
    builder: &mut tar::Builder<Vec<u8>>,
    entries: &mut Vec<String>,
) -> Result<(), ContextError> {
    let mut children: Vec<_> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .collect::<Result<_, _>>()
        .map_err(io_err(dir))?;
    children.sort_by_key(|e| e.file_name());
    for child in children {
        let name = child.file_name().to_string_lossy().into_owned();
        let child_rel = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let path = child.path();
        let ft = child.file_type().map_err(io_err(&path))?;
        let excluded = ignore.is_excluded(&child_rel);
        if ft.is_dir() {
            if excluded && !ignore.has_exceptions() {
                continue;
            }
            if !excluded {
                builder
                    .append_dir(&child_rel, &path)
                    .map_err(io_err(&path))?;
                entries.push(child_rel.clone());
            }
            walk(&path, &child_rel, ignore, builder, entries)?;
        } else if !excluded {
            builder
                .append_path_with_name(&path, &child_rel)
                .map_err(io_err(&path))?;
            entries.push(child_rel);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparse_file_is_sent_as_a_plain_file() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
        // A hole of 4 MiB between two written bytes.
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = std::fs::File::create(root.join("holey.bin")).unwrap();
            f.write_all(b"a").unwrap();
            f.seek(SeekFrom::Start(4 << 20)).unwrap();
            f.write_all(b"z").unwrap();
        }
        let packed = pack(root, &root.join("Dockerfile")).unwrap();
        let mut ar = tar::Archive::new(packed.tar.as_slice());
        let mut seen = false;
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_string_lossy() != "holey.bin" {
                continue;
            }
            seen = true;
            assert_eq!(e.header().entry_type(), tar::EntryType::Regular);
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            assert_eq!(data.len(), (4 << 20) + 1);
            assert_eq!((data[0], data[4 << 20]), (b'a', b'z'));
            assert!(data[1..4 << 20].iter().all(|b| *b == 0));
        }
        assert!(seen, "holey.bin is in the context");
    }

    #[test]
    fn dockerignore_is_applied_and_dockerfile_always_sent() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        for f in [
            "Cargo.toml",
            "src/main.rs",
            "target/debug/big",
            "target/release/airflow-mesos",
            "secrets/key.pem",
            "deep/a/.env",
            "docker/Dockerfile",
        ] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, f).unwrap();
        }
        std::fs::write(
            root.join(".dockerignore"),
            "target\n!target/release/airflow-mesos\n**/*.pem\n**/.env\ndocker/Dockerfile\n",
        )
        .unwrap();
        let packed = pack(root, &root.join("docker/Dockerfile")).unwrap();
        assert_eq!(packed.dockerfile, "docker/Dockerfile");
        let mut names = Vec::new();
        let mut ar = tar::Archive::new(packed.tar.as_slice());
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            names.push(
                e.path()
                    .unwrap()
                    .to_string_lossy()
                    .trim_end_matches('/')
                    .to_string(),
            );
        }
        for want in [
            "Cargo.toml",
            "src/main.rs",
            "target/release/airflow-mesos",
            "docker/Dockerfile",
            ".dockerignore",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
        for gone in ["target/debug/big", "secrets/key.pem", "deep/a/.env"] {
            assert!(
                !names.iter().any(|n| n == gone),
                "{gone} leaked into {names:?}"
            );
        }
    }

    #[test]
    fn dockerfile_outside_the_context_gets_a_private_name() {
        let ctx = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        std::fs::write(ctx.path().join("a"), "a").unwrap();
        let df = other.path().join("Dockerfile");
        std::fs::write(&df, "FROM scratch\n").unwrap();
        let packed = pack(ctx.path(), &df).unwrap();
        assert_eq!(packed.dockerfile, OUTSIDE_DOCKERFILE);
        assert!(packed.entries.contains(&"a".to_string()));
        let e = pack(ctx.path(), &other.path().join("nope")).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }
}
