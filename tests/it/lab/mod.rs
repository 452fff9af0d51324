//! Stand-ins for the outside world the integration tests cannot have on this machine: `api` is a
//! Kubernetes API server that the production kube-rs client talks to through a kubeconfig;
//! `nodes` are network namespaces with their own cgroup subtrees, and pods processes in them;
//! `kubelet` runs what the API server is asked to run (the agent DaemonSet) on those nodes.
//! `claude` is the Anthropic Messages API that `egressor ask` talks to, checking every request;
//! `http` is the HTTP/1.1 request reading both servers share.

pub mod api;
pub mod claude;
pub mod http;
pub mod kubelet;
pub mod nodes;
