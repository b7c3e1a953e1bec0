//! Permissions of what phasetop writes, set explicitly: the umask only ever removes
//! bits, so under `umask 000` a plain `create` gives 0666 files and 0777 directories,
//! and on a shared machine another user could rename, append to or replace them.
//!
//! A run directory is 0700 (0750 with `[run] group_readable`), every file in it 0600
//! (0640); a file's mode follows its directory's, so writers need no setting passed
//! down. `runs/` (any directory made above a run) is 0755, never world-writable; one that
//! already is, without the sticky bit, is warned about.

use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// A run directory's mode.
pub fn dir_mode(group_readable: bool) -> u32 {
    if group_readable { 0o750 } else { 0o700 }
}

/// The mode of a file written into `dir`: 0640 when the directory lets its group read
/// (a `group_readable` run), else 0600.
pub fn file_mode_in(dir: &Path) -> u32 {
    let group = std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o050 == 0o050);
    if group { 0o640 } else { 0o600 }
}

/// The mode for `path`, a file in a run directory.
pub fn file_mode_for(path: &Path) -> u32 {
    file_mode_in(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
}

/// Sets `mode` on an open file (what was created under any umask).
pub fn set(file: &File, mode: u32) -> io::Result<()> {
    file.set_permissions(std::fs::Permissions::from_mode(mode))
}

/// Creates (or truncates) `path` with its run directory's file mode, whatever the umask.
pub fn create_file(path: &Path) -> io::Result<File> {
    let mode = file_mode_for(path);
    let f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(path)?;
    set(&f, mode)?;
    Ok(f)
}

/// Opens `path` for appending, creating it with its run directory's file mode.
pub fn append_file(path: &Path) -> io::Result<File> {
    let mode = file_mode_for(path);
    let f = std::fs::OpenOptions::new().create(true).append(true).mode(mode).open(path)?;
    set(&f, mode)?;
    Ok(f)
}

/// A directory made inside the run directory `dir` (`checkpoints/`): the run's mode.
pub fn dir_mode_in(dir: &Path) -> u32 {
    dir_mode(file_mode_in(dir) == 0o640)
}

/// Creates `dir` (mode `mode`, set explicitly, also when it exists) and the directories
/// above it that are missing (0755: `runs/` is listed by others, never written by them).
/// A parent that exists world-writable without the sticky bit is warned about on stderr:
/// anyone could rename or replace the runs in it.
pub fn create_dir(dir: &Path, mode: u32) -> io::Result<()> {
    create_dir_under(dir, mode, 0o755)
}

/// [`create_dir`] with missing parents made `parents` (0700 for a private cache).
pub fn create_dir_under(dir: &Path, mode: u32, parents: u32) -> io::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        if parent.exists() {
            warn_if_world_writable(parent);
        } else {
            std::fs::DirBuilder::new().recursive(true).mode(parents).create(parent)?;
        }
    }
    match std::fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(e),
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

/// The warning [`create_dir`] prints, or None.
pub fn world_writable_warning(dir: &Path) -> Option<String> {
    let mode = std::fs::metadata(dir).ok()?.permissions().mode();
    (mode & 0o002 != 0 && mode & 0o1000 == 0).then(|| {
        format!(
            "phasetop: warning: {} is writable by every user (mode {:o}, no sticky bit): others can rename or \
             replace the runs in it; `chmod 755` (or `chmod +t`) it",
            dir.display(),
            mode & 0o7777
        )
    })
}

fn warn_if_world_writable(dir: &Path) {
    if let Some(w) = world_writable_warning(dir) {
        eprintln!("{w}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    /// Under the test's umask (umask is process-wide, so it is left alone here: the
    /// binary is run under `umask 000` by tests/reliability.rs).
    #[test]
    fn modes_are_explicit() {
        let tmp = tempfile::tempdir().unwrap();
        let runs = tmp.path().join("runs");
        let (private, shared) = (runs.join("a"), runs.join("b"));
        create_dir(&private, dir_mode(false)).unwrap();
        create_dir(&shared, dir_mode(true)).unwrap();
        create_file(&private.join("run.json")).unwrap();
        append_file(&shared.join("host.log")).unwrap();
        assert_eq!(mode(&runs) & 0o022, 0, "runs/ is writable by others");
        assert_eq!((mode(&private), mode(&shared)), (0o700, 0o750));
        assert_eq!(mode(&private.join("run.json")), 0o600);
        assert_eq!(mode(&shared.join("host.log")), 0o640);
        std::fs::set_permissions(&runs, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(world_writable_warning(&runs).is_some_and(|w| w.contains("writable by every user")));
        std::fs::set_permissions(&runs, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(world_writable_warning(&runs), None);
    }
}
