"""Engine tests use pytester (declared in the root conftest.py) to check that pack cases are collected."""
