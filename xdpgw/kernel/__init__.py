"""The kernel side: the XDP program (compile, load, attach, guards, liveness, pins, state) and netdev facts."""
