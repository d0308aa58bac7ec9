"""Root pytest configuration: plugins must be declared here, at the rootdir."""

pytest_plugins = ["pytester"]
