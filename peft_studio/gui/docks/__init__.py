"""The docks beside the main window: compare, adapters, exercises, memory at scale."""
