"""The command line: the `jayavatar` command and its groups (entry points, top of the stack)."""
