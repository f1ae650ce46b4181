"""The receive pipeline: feed handler, gateway loop, typed summary, histogram, workers, flight recorder."""
