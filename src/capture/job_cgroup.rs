//! A cgroup of its own for one command (`egressor run`): created empty, the command started inside it
//! (so every process it forks is inside too, and nothing else is), emptied and removed at the end.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::Error;

#[derive(Debug)]
pub struct JobCgroup {
    path: PathBuf,
}

impl JobCgroup {
    /// Creates `parent/name`; it must not exist (another run's cgroup is not ours to reuse).
    pub fn create(parent: &Path, name: &str) -> Result<JobCgroup, Error> {
        let path = parent.join(name);
        std::fs::create_dir(&path).map_err(|source| match source.kind() {
            io::ErrorKind::PermissionDenied => {
                Error::PermissionDenied { action: format!("creating cgroup {}", path.display()) }
            }
            _ => Error::Cgroup { path: path.clone(), source },
        })?;
        Ok(JobCgroup { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts `cmd` inside the cgroup: the child moves itself in between fork and exec, so not one
    /// instruction of the command runs outside it.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<Child> {
        let procs = CString::new(self.path.join("cgroup.procs").as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "cgroup path contains a NUL byte"))?;
        // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
        // calls (open, write, close) on memory allocated before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // "0" moves the writing process.
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                let err = io::Error::last_os_error();
                libc::close(fd);
                if written != 1 {
                    return Err(err);
                }
                Ok(())
            });
        }
        cmd.spawn()
    }

    /// Processes still in the cgroup or below it.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        collect_pids(&self.path, &mut pids);
        pids
    }

    /// Kills every process left in the cgroup (`cgroup.kill`, Linux >= 5.14; SIGKILL each one on older
    /// kernels) and waits up to `timeout` for them to be gone. Returns how many there were.
    pub fn stop_all(&self, timeout: Duration) -> usize {
        let left = self.pids();
        if left.is_empty() {
            return 0;
        }
        if std::fs::write(self.path.join("cgroup.kill"), "1").is_err() {
            for pid in &left {
                // SAFETY: plain syscall; a pid that is already gone returns ESRCH, which is fine.
                unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
            }
        }
        let deadline = Instant::now() + timeout;
        while !self.pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        left.len()
    }
}

fn collect_pids(dir: &Path, pids: &mut Vec<u32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_pids(&e.path(), pids);
            }
        }
    }
}

/// Deepest first: a cgroup with children cannot be removed.
fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

impl Drop for JobCgroup {
    fn drop(&mut self) {
        self.stop_all(Duration::from_secs(2));
        remove_tree(&self.path);
    }
}
