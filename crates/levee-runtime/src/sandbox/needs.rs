//! What an isolated instance must see of the host to run its command.
//!
//! Resolved once per function at start: the program (a bare name found on
//! the server's PATH, a pyenv shim followed to the interpreter it runs), the
//! installation prefix of an interpreter outside `/usr`, a binary outside
//! `/usr` itself, and the interpreter a script's `#!` line names. Code
//! inside the function's `code` directory is reached at `/var/task`. Must
//! never widen what is shown beyond these: `/usr` and the code are shown
//! anyway, and everything else stays out.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest `#!` line read.
const SHEBANG_MAX: usize = 256;
/// Longest answer read from `pyenv which`.
const PYENV_ANSWER_MAX: u64 = 4096;
const PYENV_TIMEOUT: Duration = Duration::from_secs(10);
/// A script's interpreter may itself be a script, once.
const MAX_DEPTH: usize = 2;

/// The command as the instance runs it, and what it needs shown.
#[derive(Debug, Clone, Default)]
pub struct Needs {
    /// `command[0]` as seen inside the instance.
    pub program: String,
    /// Host paths shown read-only at the same place.
    pub paths: Vec<PathBuf>,
    /// Directories put first on the instance's PATH (interpreters outside
    /// `/usr` that a script's `#!/usr/bin/env NAME` must find).
    pub path_dirs: Vec<PathBuf>,
}

/// Resolves `program` (already looked up on the server's PATH) against the
/// function's `code` directory.
pub async fn resolve(program: &str, code: &Path) -> Needs {
    let mut needs = Needs {
        program: program.to_string(),
        ..Needs::default()
    };
    let program = follow_shim(Path::new(program)).await;
    needs.program = program.to_string_lossy().into_owned();
    let code = code.canonicalize().unwrap_or_else(|_| code.to_path_buf());
    let real = program.canonicalize().unwrap_or_else(|_| program.clone());
    if let Ok(rel) = real.strip_prefix(&code) {
        needs.program = Path::new("/var/task")
            .join(rel)
            .to_string_lossy()
            .into_owned();
    } else {
        show(&program, &mut needs);
    }
    interpreter_of(&real, &mut needs, 0).await;
    needs
}

/// Adds what running `path` (a host path outside the code) needs: the path
/// itself and, when it is a symlink, where it leads.
fn show(path: &Path, needs: &mut Needs) {
    let real = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    for p in [real_parent(path), real] {
        if p.starts_with("/usr") || !p.is_absolute() {
            continue;
        }
        let shown = install_prefix(&p).unwrap_or(p);
        if !needs.paths.iter().any(|known| shown.starts_with(known)) {
            needs.paths.push(shown);
        }
    }
}

/// `path` with its directory's symlinks resolved (`/bin/sh` is
/// `/usr/bin/sh` on merged-/usr machines) but not its own, so a symlink
/// is shown as a symlink, at a place the root can hold.
fn real_parent(path: &Path) -> PathBuf {
    match (
        path.parent().and_then(|p| p.canonicalize().ok()),
        path.file_name(),
    ) {
        (Some(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

/// `/opt/python/bin/python3` → `/opt/python`, when that looks like an
/// installation (it has `lib` beside `bin`); otherwise just the file.
fn install_prefix(program: &Path) -> Option<PathBuf> {
    let bin = program.parent()?;
    let prefix = bin.parent()?;
    (bin.file_name()? == "bin" && prefix.parent().is_some() && prefix.join("lib").is_dir())
        .then(|| prefix.to_path_buf())
}

/// Follows a script's `#!` interpreter (and `env NAME`) outside `/usr`.
fn interpreter_of<'a>(
    script: &'a Path,
    needs: &'a mut Needs,
    depth: usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        if depth >= MAX_DEPTH {
            return;
        }
        let Some(line) = shebang(script) else {
            return;
        };
        let mut words = line.split_whitespace();
        let Some(interpreter) = words.next() else {
            return;
        };
        let target = if interpreter.ends_with("/env") {
            match words.find(|w| !w.starts_with('-')) {
                Some(name) => PathBuf::from(super::resolve_program(name)),
                None => return,
            }
        } else {
            PathBuf::from(interpreter)
        };
        let target = follow_shim(&target).await;
        if !target.is_absolute() || target.starts_with("/usr") {
            return;
        }
        show(&target, needs);
        if let Some(dir) = target.parent() {
            needs.path_dirs.push(dir.to_path_buf());
        }
        let real = target.canonicalize().unwrap_or(target);
        interpreter_of(&real, needs, depth + 1).await;
    })
}

fn shebang(path: &Path) -> Option<String> {
    let mut head = Vec::with_capacity(SHEBANG_MAX);
    std::fs::File::open(path)
        .ok()?
        .take(SHEBANG_MAX as u64)
        .read_to_end(&mut head)
        .ok()?;
    let line = head.strip_prefix(b"#!")?;
    let end = line.iter().position(|&b| b == b'\n')?;
    String::from_utf8(line[..end].to_vec()).ok()
}

/// A pyenv shim is a bash script that asks pyenv which interpreter to run,
/// with pyenv's own tree and a home directory around it; the instance gets
/// the interpreter it would have run instead.
async fn follow_shim(program: &Path) -> PathBuf {
    let Some(pyenv) = pyenv_of_shim(program) else {
        return program.to_path_buf();
    };
    let Some(name) = program.file_name() else {
        return program.to_path_buf();
    };
    let run = tokio::process::Command::new(&pyenv)
        .arg("which")
        .arg(name)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let Ok(mut child) = run else {
        return program.to_path_buf();
    };
    let answer = async {
        use tokio::io::AsyncReadExt;
        let mut out = String::new();
        let stdout = child.stdout.take()?;
        stdout
            .take(PYENV_ANSWER_MAX)
            .read_to_string(&mut out)
            .await
            .ok()?;
        child.wait().await.ok()?.success().then_some(out)
    };
    match tokio::time::timeout(PYENV_TIMEOUT, answer).await {
        Ok(Some(out)) if Path::new(out.trim()).is_absolute() => PathBuf::from(out.trim()),
        _ => {
            tracing::warn!(shim = %program.display(), "pyenv did not say which interpreter it runs; the shim stays");
            program.to_path_buf()
        }
    }
}

/// The pyenv program a shim calls: its line `exec "/…/libexec/pyenv" exec …`.
fn pyenv_of_shim(program: &Path) -> Option<PathBuf> {
    let mut head = Vec::new();
    std::fs::File::open(program)
        .ok()?
        .take(4096)
        .read_to_end(&mut head)
        .ok()?;
    let text = std::str::from_utf8(&head).ok()?;
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("exec \"")?;
        let (pyenv, after) = rest.split_once('"')?;
        (pyenv.ends_with("/pyenv") && after.trim_start().starts_with("exec "))
            .then(|| PathBuf::from(pyenv))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_installation_prefix_needs_lib_beside_bin() {
        let base = std::env::temp_dir().join(format!("levee-needs-{}", std::process::id()));
        std::fs::create_dir_all(base.join("py/bin")).unwrap();
        std::fs::create_dir_all(base.join("py/lib")).unwrap();
        std::fs::create_dir_all(base.join("tools/bin")).unwrap();
        assert_eq!(
            install_prefix(&base.join("py/bin/python3")),
            Some(base.join("py"))
        );
        assert_eq!(install_prefix(&base.join("tools/bin/x")), None);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_pyenv_shim_names_its_pyenv() {
        let base = std::env::temp_dir().join(format!("levee-shim-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let shim = base.join("python3");
        std::fs::write(
            &shim,
            "#!/usr/bin/env bash\nset -e\nexec \"/root/.pyenv/libexec/pyenv\" exec \"$program\" \"$@\"\n",
        )
        .unwrap();
        assert_eq!(
            pyenv_of_shim(&shim),
            Some(PathBuf::from("/root/.pyenv/libexec/pyenv"))
        );
        std::fs::write(&shim, "#!/bin/sh\nexec \"/usr/bin/python3\" \"$@\"\n").unwrap();
        assert_eq!(pyenv_of_shim(&shim), None);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
