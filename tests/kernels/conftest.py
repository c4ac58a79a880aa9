def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running check (real model against llama.cpp); still runs in CI")
