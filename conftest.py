"""Repository-root conftest: makes `bench`, `models` and `tasks` importable in tests without install."""
