"""The command line: parses, calls the core, renders. No analysis happens here."""
