"""The receive pipeline: gateway loop, fast lane, accounting, queues, sessions."""
