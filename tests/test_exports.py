from __future__ import annotations

import wisegate


def test_public_names() -> None:
    assert wisegate.__all__ == [
        "Backend",
        "Capabilities",
        "ModelRoute",
        "Settings",
        "__version__",
        "create_app",
    ]
    for name in wisegate.__all__:
        assert hasattr(wisegate, name)
