"""The house's rules, checked on the code itself: one direction between the API and the worker,
shared parts below both, test doubles out of the product."""

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("models", "prompts", "services", "after_call", "call_queue", "simulator", "control_api", "voice_worker")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def files_importing(package: str, prefix: str) -> list[str]:
    return sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / package).rglob("*.py")
        if any(name == prefix or name.startswith(prefix + ".") for name in imported_modules(path))
    )


def test_control_api_meets_the_worker_only_where_it_mounts_the_media_stream():
    assert files_importing("control_api", "voice_worker") == ["control_api/main.py"]


def test_the_worker_never_reaches_into_the_control_api():
    assert files_importing("voice_worker", "control_api") == []


@pytest.mark.parametrize("shared", ["models", "prompts", "services", "after_call", "call_queue"])
def test_shared_parts_import_neither_side(shared):
    assert files_importing(shared, "control_api") == []
    assert files_importing(shared, "voice_worker") == []


def test_product_code_never_imports_tests_or_scripts():
    for package in PRODUCT:
        assert files_importing(package, "tests") == [], package
        assert files_importing(package, "scripts") == [], package


def test_tests_share_helpers_through_the_support_module_only():
    for path in (ROOT / "tests").glob("test_*.py"):
        names = imported_modules(path)
        assert "tests.conftest" not in names, path.name
        assert not any(name.startswith("tests.test_") for name in names), path.name


def test_the_wheel_holds_the_product_and_no_test_doubles(tmp_path):
    # Built from a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "data", "artifacts", "__pycache__", "*.egg-info")
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(source)],
        check=True,
        capture_output=True,
    )
    [wheel] = (tmp_path / "dist").glob("voice_caller-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names if "/" in name and ".dist-info" not in name}
    assert top == set(PRODUCT)
    assert not [name for name in names if "emulator" in name or name.startswith(("tests/", "scripts/"))]
    assert "simulator/callee.py" in names and "prompts/templates/goal_book_meeting.md" in names
