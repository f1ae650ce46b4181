"""The XDP program on a real veth: guards, liveness, hostile input."""
