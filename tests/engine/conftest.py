"""Engine tests use pytester to check that pack cases are collected."""

pytest_plugins = ["pytester"]
