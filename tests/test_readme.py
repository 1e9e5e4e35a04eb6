"""The README's caching example runs exactly as written."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_caching_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    example = next(b for b in blocks if "cache_model(net" in b)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    cached = namespace["cached"]
    assert cached.stats.frames == 10
    assert any(d.reason == "camera cut" for d in cached.decisions)
