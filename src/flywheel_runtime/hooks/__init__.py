"""Runner job hooks and the runner pod entrypoint."""
