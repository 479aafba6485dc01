import mambaad


def test_version() -> None:
    assert mambaad.__version__.count(".") == 2
