#!/usr/bin/env python3
"""What an eBPF hook that does nothing costs iperf3 over a veth pair (ADR 0006).

Independent of egressor: per round, iperf3 between two network namespaces over a veth pair with
  none        no program,
  tc-nop      a sched_cls program returning TC_ACT_OK on ingress and egress of both veth ends,
  cgroup-nop  a cgroup_skb program returning 1 on egress and ingress of the cgroup v2 root,
interleaved round by round; prints the traffic's CPU (user+sys of iperf3 client and server, from
/usr/bin/time) per GB, medians, and each round against the same round's `none` (paired).

Run as root with clang, bpftool, tc, iperf3 and /usr/bin/time installed (`cargo xtask deps`):
    python3 docs/experiments/veth-hook-floor.py [ROUNDS]        # default 10 rounds of 8 s per mode
"""
import json, os, statistics, subprocess, sys, tempfile, time

TC_NOP = """#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
SEC("tc") int nop(struct __sk_buff *skb) { return TC_ACT_OK; }
char LICENSE[] SEC("license") = "GPL";
"""
CG_NOP = """#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("cgroup_skb/egress") int cg_nop(struct __sk_buff *skb) { return 1; }
char LICENSE[] SEC("license") = "GPL";
"""


def sh(cmd, check=True):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit(f"failed: {cmd}\n{r.stderr}")
    return r


def cgroup_root():
    for line in open("/proc/mounts"):
        f = line.split()
        if f[2] == "cgroup2":
            return f[1]
    sys.exit("no cgroup v2 mount in /proc/mounts")


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    if os.geteuid() != 0:
        sys.exit("run as root: it creates network namespaces and attaches eBPF programs")
    tmp = tempfile.mkdtemp(prefix="veth-hook-floor-")
    arch_inc = f"/usr/include/{os.uname().machine}-linux-gnu"
    for name, src in [("tc_nop", TC_NOP), ("cg_nop", CG_NOP)]:
        open(f"{tmp}/{name}.c", "w").write(src)
        sh(f"clang -O2 -g -target bpf -I{arch_inc} -c {tmp}/{name}.c -o {tmp}/{name}.o")
    if sh("mountpoint -q /sys/fs/bpf", check=False).returncode != 0:
        sh("mount -t bpf bpf /sys/fs/bpf")
    pin = f"/sys/fs/bpf/veth_hook_floor_{os.getpid()}"
    sh(f"bpftool prog load {tmp}/cg_nop.o {pin} type cgroup/skb")
    cg = cgroup_root()
    a, b = f"vhf-a-{os.getpid()}", f"vhf-b-{os.getpid()}"
    sh(f"ip netns add {a}")
    sh(f"ip netns add {b}")
    try:
        sh(f"ip link add va netns {a} type veth peer name vb netns {b}")
        sh(f"ip -n {a} addr add 198.19.0.1/24 dev va")
        sh(f"ip -n {b} addr add 198.19.0.2/24 dev vb")
        for ns, dev in [(a, "va"), (b, "vb")]:
            sh(f"ip -n {ns} link set {dev} up")
            sh(f"ip -n {ns} link set lo up")

        def setup(mode):
            if mode == "tc-nop":
                for ns, dev in [(a, "va"), (b, "vb")]:
                    sh(f"ip netns exec {ns} tc qdisc add dev {dev} clsact")
                    for d in ["ingress", "egress"]:
                        sh(f"ip netns exec {ns} tc filter add dev {dev} {d} bpf direct-action obj {tmp}/tc_nop.o sec tc")
            elif mode == "cgroup-nop":
                for d in ["egress", "ingress"]:
                    sh(f"bpftool cgroup attach {cg} {d} pinned {pin} multi")

        def teardown(mode):
            if mode == "tc-nop":
                for ns, dev in [(a, "va"), (b, "vb")]:
                    sh(f"ip netns exec {ns} tc qdisc del dev {dev} clsact", check=False)
            elif mode == "cgroup-nop":
                for d in ["egress", "ingress"]:
                    sh(f"bpftool cgroup detach {cg} {d} pinned {pin}", check=False)

        def run(secs=8):
            srv = subprocess.Popen(f"exec /usr/bin/time -f '%U %S' ip netns exec {b} iperf3 -s -1 -p 5302",
                                   shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            time.sleep(0.4)
            cli = sh(f"/usr/bin/time -f '%U %S' ip netns exec {a} iperf3 -c 198.19.0.2 -p 5302 -t {secs} -J")
            _, serr = srv.communicate()
            moved = json.loads(cli.stdout)["end"]["sum_received"]["bytes"]
            cpu = sum(map(float, cli.stderr.strip().split("\n")[-1].split()))
            cpu += sum(map(float, serr.strip().split("\n")[-1].split()))
            return cpu / (moved / 1e9), moved * 8 / secs / 1e9

        modes = ["none", "tc-nop", "cgroup-nop"]
        res = {m: [] for m in modes}
        for r in range(rounds):
            for m in modes:
                setup(m)
                try:
                    cpu, gbit = run()
                finally:
                    teardown(m)
                res[m].append(cpu)
                print(f"round {r} {m:11} {cpu:.4f} s/GB  {gbit:.1f} Gbit/s", flush=True)
        base = statistics.median(res["none"])
        for m in modes:
            paired = statistics.median([res[m][i] / res["none"][i] - 1 for i in range(rounds)])
            med = statistics.median(res[m])
            print(f"{m:11} median {med:.4f} s/GB  vs none {med / base - 1:+.1%}  paired {paired:+.1%}")
    finally:
        sh(f"ip netns del {a}", check=False)
        sh(f"ip netns del {b}", check=False)
        os.unlink(pin)


if __name__ == "__main__":
    main()
