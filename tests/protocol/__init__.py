"""The sans-IO protocol core, tested without sockets."""
