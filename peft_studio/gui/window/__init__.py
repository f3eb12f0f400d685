"""The main window and what hangs off it: actions, keys, file flows, presentation, session."""
