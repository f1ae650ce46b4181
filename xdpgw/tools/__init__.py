"""Tools around the gateway: traffic synthesis and generators, replay, blast, bench, demo, the veth lab."""
