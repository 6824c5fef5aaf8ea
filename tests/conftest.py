"""The suite's shared fixtures live in tests/support/ and are loaded here as pytest plugins."""

pytest_plugins = ["tests.support.fixtures", "tests.support.scratch"]
