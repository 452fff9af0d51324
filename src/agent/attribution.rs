//! cgroup path -> who: container id, pod UID, runtime; and pid -> process name.
//!
//! Kubelet lays out pod cgroups in two ways, and container runtimes name their scopes differently:
//!
//! ```text
//! systemd driver:  /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope
//!                  /kubepods.slice/kubepods-pod<uid>.slice/crio-<id>.scope          (guaranteed QoS)
//! cgroupfs driver: /kubepods/burstable/pod<uid>/<id>
//!                  /kubepods/pod<uid>/<id>
//! docker:          /system.slice/docker-<id>.scope   or   /docker/<id>
//! plain process:   /user.slice/user-0.slice/session-3.scope, /system.slice/nginx.service, ...
//! ```
//! The pod UID is what enrichment later joins with the Kubernetes API (pod -> workload -> namespace).

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CgroupIdentity {
    pub pod_uid: Option<String>,
    pub container_id: Option<String>,
    /// `containerd`, `crio`, `docker` or None.
    pub runtime: Option<&'static str>,
}

fn is_hex_id(s: &str) -> bool {
    s.len() >= 12 && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_uid(s: &str) -> bool {
    // 8-4-4-4-12 hex, with '-' or (systemd escaping) '_'.
    let parts: Vec<&str> = s.split(['-', '_']).collect();
    parts.len() == 5
        && [8, 4, 4, 4, 12]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Reads the pod UID and container id out of a cgroup v2 path (relative to the cgroup root).
pub fn identify(path: &str) -> CgroupIdentity {
    let mut id = CgroupIdentity::default();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        // systemd: kubepods-burstable-pod<uid>.slice / kubepods-pod<uid>.slice
        if let Some(rest) = seg.strip_suffix(".slice")
            && let Some(pos) = rest.rfind("-pod")
            && is_uid(&rest[pos + 4..])
        {
            id.pod_uid = Some(rest[pos + 4..].replace('_', "-"));
        }
        // cgroupfs: pod<uid>
        if let Some(uid) = seg.strip_prefix("pod")
            && is_uid(uid)
        {
            id.pod_uid = Some(uid.replace('_', "-"));
        }
        // systemd scopes: cri-containerd-<id>.scope, crio-<id>.scope, docker-<id>.scope
        if let Some(rest) = seg.strip_suffix(".scope") {
            for (prefix, runtime) in
                [("cri-containerd-", "containerd"), ("crio-", "crio"), ("docker-", "docker")]
            {
                if let Some(cid) = rest.strip_prefix(prefix)
                    && is_hex_id(cid)
                {
                    id.container_id = Some(cid.to_string());
                    id.runtime = Some(runtime);
                }
            }
        }
        // cgroupfs: a bare container id under a pod (or under /docker)
        if is_hex_id(seg) && seg.len() == 64 {
            id.container_id = Some(seg.to_string());
            if id.runtime.is_none() && path.contains("/docker/") {
                id.runtime = Some("docker");
            }
        }
    }
    id
}

/// The process name of a pid, from /proc (short-lived processes may be gone: None then).
pub fn comm_of(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|s| s.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

    #[test]
    fn systemd_layout() {
        let p = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b4e28ba_2fa1_11d2_883f_0016d3cca427.slice/cri-containerd-{CID}.scope"
        );
        let id = identify(&p);
        assert_eq!(id.pod_uid.as_deref(), Some("1b4e28ba-2fa1-11d2-883f-0016d3cca427"));
        assert_eq!(id.container_id.as_deref(), Some(CID));
        assert_eq!(id.runtime, Some("containerd"));
        let g = identify(&format!(
            "/kubepods.slice/kubepods-pod1b4e28ba_2fa1_11d2_883f_0016d3cca427.slice/crio-{CID}.scope"
        ));
        assert_eq!(g.runtime, Some("crio"));
        assert!(g.pod_uid.is_some());
    }

    #[test]
    fn cgroupfs_layout_docker_and_plain() {
        let id = identify(&format!("/kubepods/besteffort/pod1b4e28ba-2fa1-11d2-883f-0016d3cca427/{CID}"));
        assert_eq!(id.pod_uid.as_deref(), Some("1b4e28ba-2fa1-11d2-883f-0016d3cca427"));
        assert_eq!(id.container_id.as_deref(), Some(CID));
        let d = identify(&format!("/system.slice/docker-{CID}.scope"));
        assert_eq!((d.pod_uid, d.runtime), (None, Some("docker")));
        assert_eq!(identify("/user.slice/user-0.slice/session-3.scope"), CgroupIdentity::default());
        assert_eq!(identify("/system.slice/nginx.service"), CgroupIdentity::default());
    }
}
