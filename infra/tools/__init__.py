"""What the CLI's bench, demo and audit commands run: entry-point code, imported only by the CLI."""
