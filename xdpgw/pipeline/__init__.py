"""The receive pipeline: options and assembly, feed handler, gateway loop, typed summary, histogram, workers,
flight recorder."""
