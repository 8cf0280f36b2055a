"""The command layer: parse, validate before Ray starts, run the jobs, print."""
