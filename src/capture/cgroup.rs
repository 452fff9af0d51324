//! cgroup v2 helpers: where the hierarchy is mounted, and cgroup id -> directory.
//!
//! A cgroup v2 id (what `bpf_skb_cgroup_id` returns) is the inode number of the cgroup's
//! directory in cgroupfs (kernfs node id), so an id is resolved by walking the tree and
//! comparing inode numbers. Ids are never reused while the kernel runs.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::Error;

/// Mount point of the cgroup v2 hierarchy (fstype `cgroup2` in `/proc/mounts`): on a
/// unified host `/sys/fs/cgroup`, on a hybrid one usually `/sys/fs/cgroup/unified`.
pub fn cgroup2_root() -> Result<PathBuf, Error> {
    let mounts = std::fs::read_to_string("/proc/mounts")
        .map_err(|source| Error::Io { context: "reading /proc/mounts".to_owned(), source })?;
    cgroup2_root_from(&mounts).ok_or(Error::NoCgroup2)
}

/// Whether `dir` is itself a cgroup2 mount point: in the agent's container the host's hierarchy is
/// mounted at `/host/sys/fs/cgroup`, and cgroup ids resolve to pod paths only from there (the
/// container's own `/sys/fs/cgroup` shows its own cgroup namespace).
pub fn is_cgroup2_mount(dir: &std::path::Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else { return false };
    mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_dev, mount_point, fstype) = (fields.next(), fields.next(), fields.next());
        fstype == Some("cgroup2")
            && mount_point.is_some_and(|m| std::path::Path::new(&unescape_mount(m)) == dir)
    })
}

/// The first cgroup2 mount point in a `/proc/mounts` text.
pub(crate) fn cgroup2_root_from(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_dev, mount_point, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(unescape_mount(mount_point)))
    })
}

/// /proc/mounts escapes space, tab, newline and backslash as octal (`\040`).
fn unescape_mount(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 4 <= bytes.len()
            && let Some(v) =
                std::str::from_utf8(&bytes[i + 1..i + 4]).ok().and_then(|oct| u8::from_str_radix(oct, 8).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The directory of cgroup `id` under `root`, by a walk of the tree (no cache: see
/// [`CgroupResolver`] for repeated lookups).
pub fn cgroup_path_for_id(root: &Path, id: u64) -> Option<PathBuf> {
    let mut found = None;
    walk(root, &mut |path, ino| {
        if ino == id {
            found = Some(path.to_path_buf());
            false
        } else {
            true
        }
    });
    found
}

/// Walks directories under `root` (root included); `visit` returns false to stop.
fn walk(root: &Path, visit: &mut dyn FnMut(&Path, u64) -> bool) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        if !visit(&dir, meta.ino()) {
            return;
        }
        // A cgroup can vanish while we walk: skip what cannot be read.
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
}

/// Cached cgroup id -> path resolution. A miss rescans the whole tree once (new cgroups
/// appear as pods start) and remembers every directory it saw; ids that are still
/// unknown after a rescan are remembered as such until [`CgroupResolver::forget`].
#[derive(Debug)]
pub struct CgroupResolver {
    root: PathBuf,
    known: HashMap<u64, Option<PathBuf>>,
}

impl CgroupResolver {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        CgroupResolver { root: root.into(), known: HashMap::new() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of cgroup `id`, or None if it is not (or no longer) under the root.
    pub fn resolve(&mut self, id: u64) -> Option<&Path> {
        if !self.known.contains_key(&id) {
            self.rescan();
            self.known.entry(id).or_insert(None);
        }
        self.known.get(&id).and_then(|p| p.as_deref())
    }

    /// Forgets everything (e.g. periodically, so removed cgroups do not pile up).
    pub fn forget(&mut self) {
        self.known.clear();
    }

    fn rescan(&mut self) {
        let known = &mut self.known;
        walk(&self.root, &mut |path, ino| {
            known.insert(ino, Some(path.to_path_buf()));
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_in_hybrid_mounts() {
        let mounts = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";
        assert_eq!(cgroup2_root_from(mounts), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(cgroup2_root_from("proc /proc proc rw 0 0\n"), None);
        assert_eq!(
            cgroup2_root_from("none /mnt/my\\040cg cgroup2 rw 0 0\n"),
            Some(PathBuf::from("/mnt/my cg"))
        );
    }

    #[test]
    fn resolves_ids_to_directories_by_inode() {
        let dir = std::env::temp_dir().join(format!("egr-cg-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        let ino = std::fs::metadata(dir.join("a/b")).unwrap().ino();
        assert_eq!(cgroup_path_for_id(&dir, ino), Some(dir.join("a/b")));
        let mut r = CgroupResolver::new(&dir);
        assert_eq!(r.resolve(ino), Some(dir.join("a/b").as_path()));
        assert_eq!(r.resolve(u64::MAX), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
