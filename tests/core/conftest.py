from plugin_shift import shift_method  # noqa: F401 - the fixture, shared with the GUI tests
