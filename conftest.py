"""Repository-root conftest: makes `bench`, `models` and `tasks` importable in tests without install,
and registers the command-line options of the test suite (only a root conftest can, for every path)."""


def pytest_addoption(parser):
    parser.addoption("--update-speed-baseline", action="store_true",
                     help="write measured normalised times to tests/benchmarks/speed_baseline.json")
