"""Commands that use an exported model: `python entrypoint.py predict ...`."""
