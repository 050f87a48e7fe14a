//! Files and directory entries that survive a crash whole.
//!
//! - [`write_atomic`]: replace a file's contents; after a crash the file holds the old contents
//!   or the new ones, never a mix, and once it returns `Ok` the new contents are on disk.
//! - [`rename`]: a rename that is on disk when it returns (both parent directories synced).
//! - [`create_dir_all`]: create missing directories, each one's entry synced in its parent.
//!
//! Errors are plain [`std::io::Error`]s: callers name the file in their own error type.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Replaces the contents of `path` with `bytes`, giving it permissions `mode` (exactly, whatever
/// the umask).
///
/// The bytes go to a temporary file with a unique name in the same directory (created readable by
/// the owner at most), which is given `mode`, synced, and renamed over `path`; then the directory
/// is synced. A reader sees the old file or the new one, never a partial one, and never the new
/// one with other permissions than `mode`. When a step up to the rename fails, the temporary file
/// is removed and `path` is untouched; when only the final directory sync fails, the new contents
/// are in place but may not survive a crash. The directory must exist (see [`create_dir_all`]).
///
/// A crash before the rename may leave a hidden `.<name>.<pid>-<n>.tmp` beside `path`; nothing
/// reads it.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{} does not name a file", path.display()))
    })?;
    let dir = parent(path);
    let (tmp, file) = create_temp(dir, name, mode)?;
    if let Err(e) = fill_and_rename(file, &tmp, path, bytes, mode) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fsync_dir(dir)
}

/// Renames `from` to `to` (a file or a directory, as [`std::fs::rename`] does) and syncs the
/// directories holding both names, so the rename is on disk when this returns.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    let (old_dir, new_dir) = (parent(from), parent(to));
    fsync_dir(new_dir)?;
    if old_dir != new_dir { fsync_dir(old_dir) } else { Ok(()) }
}

/// Creates `dir` and any missing ancestors, syncing the parent of each directory it creates so
/// the new entries are on disk. An existing directory is fine.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let up = parent(dir);
    create_dir_all(up)?;
    match fs::create_dir(dir) {
        Ok(()) => fsync_dir(up),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// The directory holding `path`'s entry (`.` for a bare name).
fn parent(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates a new temporary file for `name` in `dir` with a name no other writer uses (this
/// process's id and a counter; a leftover from a crashed process is skipped, not reused).
fn create_temp(dir: &Path, name: &OsStr, mode: u32) -> io::Result<(PathBuf, File)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{}.{}-{n}.tmp", name.to_string_lossy(), std::process::id()));
        match OpenOptions::new().write(true).create_new(true).mode(mode & 0o600).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

fn fill_and_rename(mut file: File, tmp: &Path, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    file.write_all(bytes)?;
    file.set_permissions(Permissions::from_mode(mode))?;
    file.sync_all()?;
    drop(file);
    fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rig::ScratchDir;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn contents_are_replaced_whole_and_no_temporary_file_is_left() {
        let d = ScratchDir::new();
        let p = d.path().join("state");
        write_atomic(&p, &[1; 10_000], 0o644).unwrap();
        write_atomic(&p, b"short", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"short");
        assert_eq!(names(d.path()), ["state"]);
    }

    #[test]
    fn the_mode_is_set_exactly_whatever_the_umask_and_the_old_mode() {
        let d = ScratchDir::new();
        let p = d.path().join("f");
        // 0666 would come out 0644 under the usual umask 022 if the umask applied.
        write_atomic(&p, b"a", 0o666).unwrap();
        assert_eq!(mode_of(&p), 0o666);
        write_atomic(&p, b"b", 0o600).unwrap();
        assert_eq!(mode_of(&p), 0o600);
        write_atomic(&p, b"c", 0o440).unwrap();
        assert_eq!((mode_of(&p), fs::read(&p).unwrap()), (0o440, b"c".to_vec()));
    }

    #[test]
    fn the_directory_of_a_bare_file_name_is_the_current_one() {
        assert_eq!(parent(Path::new("f")), Path::new("."));
        assert_eq!(parent(Path::new("/f")), Path::new("/"));
        assert_eq!(parent(Path::new("a/b/f")), Path::new("a/b"));
    }

    #[test]
    fn a_missing_directory_is_an_error_and_creates_nothing() {
        let d = ScratchDir::new();
        let e = write_atomic(&d.path().join("missing/f"), b"x", 0o644).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(names(d.path()).is_empty());
    }

    #[test]
    fn a_path_without_a_file_name_is_refused_with_the_path() {
        let e = write_atomic(Path::new("/"), b"x", 0o644).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("/ does not name a file"), "{e}");
    }

    #[test]
    fn a_failed_rename_removes_the_temporary_file_and_keeps_what_was_there() {
        let d = ScratchDir::new();
        let p = d.path().join("taken");
        fs::create_dir(&p).unwrap();
        fs::write(p.join("inside"), b"kept").unwrap();
        // A file cannot be renamed over a non-empty directory, even by root.
        write_atomic(&p, b"new", 0o644).unwrap_err();
        assert_eq!(names(d.path()), ["taken"]);
        assert_eq!(fs::read(p.join("inside")).unwrap(), b"kept");
    }

    /// Set in the child process of the test below: the file it must fail to overwrite.
    const FSIZE_CHILD: &str = "DURABLE_TEST_FSIZE_CHILD";

    #[test]
    fn a_failed_write_keeps_the_old_contents_and_removes_the_temporary_file() {
        if let Some(p) = std::env::var_os(FSIZE_CHILD) {
            // In the child: files are limited to 512 bytes, so the write fails half-way (EFBIG).
            let e = write_atomic(Path::new(&p), &[7; 4096], 0o644).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(27), "expected EFBIG, got {e}");
            return;
        }
        let d = ScratchDir::new();
        let p = d.path().join("history");
        write_atomic(&p, b"old contents", 0o600).unwrap();
        let name = "tests::a_failed_write_keeps_the_old_contents_and_removes_the_temporary_file";
        // The limit applies to this test alone: it runs again in a child process whose file size
        // limit is one 512-byte block, with SIGXFSZ ignored so the write returns an error.
        let out = std::process::Command::new("sh")
            .args(["-c", "trap '' XFSZ; ulimit -f 1 && exec \"$@\"", "sh"])
            .arg(std::env::current_exe().unwrap())
            .args([name, "--exact", "--test-threads=1"])
            .env(FSIZE_CHILD, &p)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child: {}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(fs::read(&p).unwrap(), b"old contents");
        assert_eq!(mode_of(&p), 0o600);
        assert_eq!(names(d.path()), ["history"]);
    }

    #[test]
    fn a_rename_moves_a_directory_across_parents() {
        let d = ScratchDir::new();
        let (from, to) = (d.path().join("a/new"), d.path().join("b/cur"));
        create_dir_all(&from).unwrap();
        create_dir_all(to.parent().unwrap()).unwrap();
        fs::write(from.join("cert"), b"pem").unwrap();
        rename(&from, &to).unwrap();
        assert_eq!(fs::read(to.join("cert")).unwrap(), b"pem");
        assert!(names(&d.path().join("a")).is_empty());
    }

    #[test]
    fn a_rename_of_a_missing_source_fails_and_changes_nothing() {
        let d = ScratchDir::new();
        fs::write(d.path().join("cur"), b"x").unwrap();
        let e = rename(&d.path().join("none"), &d.path().join("cur")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(fs::read(d.path().join("cur")).unwrap(), b"x");
    }

    #[test]
    fn missing_directories_are_created_and_existing_ones_accepted() {
        let d = ScratchDir::new();
        let deep = d.path().join("x/y/z");
        create_dir_all(&deep).unwrap();
        create_dir_all(&deep).unwrap();
        assert!(deep.is_dir());
        fs::write(d.path().join("file"), b"").unwrap();
        assert!(create_dir_all(&d.path().join("file/sub")).is_err());
    }
}
