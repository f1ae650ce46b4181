"""The kernel side, one module per concern (as cilium/ebpf: program, link, maps, features).

program (XdpProgram: compile, load, attach, close), attach (XDP modes, detach_iface), maps (layout and
access), guards (allowlist, rate cap, watchdog), liveness (death notice, consumers, heartbeat), pins,
state (state file, status), features (root, CPUs, kprobes), netdev (interface facts), programs (BPF C).
"""
