"""The composition root: builds the pipeline (`engine`) and the HTTP app (`http`) from their
parts. Imported by no one but the entry points (the CLI, the tools, the tests)."""
