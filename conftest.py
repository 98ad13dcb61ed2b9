"""Repository-root conftest: makes `bench`, `models` and `tasks` importable in tests without install,
and registers the command-line options of the test suite (only a root conftest can, for every path)."""


def pytest_addoption(parser):
    parser.addoption("--update-speed-baseline", action="store_true",
                     help="write measured normalised times to tests/benchmarks/speed_baseline.json")


# Whole modules of the slow lane: timing benchmarks and the accuracy-regression check (they train).
SLOW_MODULES = ("tests/benchmarks/", "tests/test_accuracy_check.py")


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        if any(part in item.nodeid for part in SLOW_MODULES):
            item.add_marker(pytest.mark.slow)
