"""`sal` sub-commands: argument parsing only; each calls into a logic module of `sal_core`."""
