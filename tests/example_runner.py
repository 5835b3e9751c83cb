"""Running an example of examples/ from a test: its ``main`` into a folder, its JSON and pictures checked."""

import importlib.util
import json
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name, tmp_path, seed=0) -> dict:
    """The numbers ``examples/NAME.py``'s ``main`` returns, after checking that its JSON holds the same."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    numbers = module.main(out_dir=tmp_path, seed=seed)
    assert json.loads((tmp_path / f"{name}.json").read_text()) == json.loads(json.dumps(numbers))
    return numbers


def assert_pictures(tmp_path, *names):
    """Each picture exists and is not empty."""
    for name in names:
        path = tmp_path / name
        assert path.is_file() and path.stat().st_size > 1000, f"{name} missing or empty"
