"""The imperative shell: command-line parsing, printing, exit codes."""
