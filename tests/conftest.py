
import matplotlib
import pytest

matplotlib.use("Agg")


@pytest.fixture
def reports_dir(tmp_path, monkeypatch):
    """A private reports/ folder for a test, so tests never touch the user's reports."""
    d = tmp_path / "reports"
    monkeypatch.setenv("LPULAB_REPORTS", str(d))
    return d
