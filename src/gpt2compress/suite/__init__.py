"""The pytest side: the plugin (options, parametrization, case outcomes) and the bench's fixtures."""
