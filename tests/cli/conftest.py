import pytest


@pytest.fixture(autouse=True)
def _own_data_env(monkeypatch):
    """`--data` sets LPULAB_DATA in this process: each test gets it back as it was."""
    monkeypatch.setenv("LPULAB_DATA", "")
    monkeypatch.delenv("LPULAB_DATA")
