"""The command line: commands only (parse options, call the pipeline, format output)."""
