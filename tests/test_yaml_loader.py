"""The project and its tests read YAML with libyaml's loader (config/sources.py safe_loader, load_yaml): every YAML text
they read gives the same value with it as with PyYAML's pure-Python SafeLoader, so the swap changes no result and no
check. Compared strictly (repr: 1, 1.0 and True differ, and so does the order of keys)."""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_docs import DOCS, split_markdown

import versions
from config.sources import load_yaml, load_yaml_all, safe_loader

ROOT = Path(__file__).resolve().parent.parent
SHARED_REFERENCE = Path("/work/shared/reference")  # upstream data the tests read (README there); absent: skipped
TRACKED = subprocess.run(
    ["git", "ls-files", "*.yaml", "*.yml"], cwd=ROOT, capture_output=True, text=True, check=False
).stdout.split()


def read(text: str, loader: type[yaml.SafeLoader]) -> str:
    """Every document of `text` as `loader` constructs it, or that it is not YAML to it."""
    try:
        return repr(list(yaml.load_all(text, Loader=loader)))
    except yaml.YAMLError:
        return "not YAML"


def assert_same(text: str, where: str) -> None:
    assert read(text, safe_loader()) == read(text, yaml.SafeLoader), where


def test_the_project_reads_with_libyaml_where_pyyaml_has_it() -> None:
    if not yaml.__with_libyaml__:
        pytest.skip("this PyYAML was built without libyaml: both loaders are the pure-Python one")
    assert safe_loader() is yaml.CSafeLoader


def test_the_repository_s_yaml_files_are_all_compared() -> None:
    assert {"Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.prod.yaml", "policies/PulumiPolicy.yaml"} <= set(TRACKED)
    assert any(p.startswith(".github/workflows/") for p in TRACKED) and any(p.startswith("tests/fixtures/") for p in TRACKED)


@pytest.mark.parametrize("name", TRACKED)
def test_each_yaml_file_of_the_repository_reads_the_same_with_libyaml(name: str) -> None:
    """Stack files, the teams fixture, workflows, the policy pack's: as written, and as the tests write them back after
    an edit (yaml.safe_dump, sorted or in order)."""
    text = (ROOT / name).read_text()
    assert_same(text, name)
    for document in yaml.safe_load_all(text):
        for sort_keys in (True, False):
            assert_same(yaml.safe_dump(document, sort_keys=sort_keys), f"{name} dumped, sort_keys={sort_keys}")


def test_the_docs_yaml_examples_read_the_same_with_libyaml() -> None:
    blocks = [block for path in DOCS for block in split_markdown(path.read_text(), path)[1] if block.language in ("yaml", "yml")]
    assert len(blocks) >= 10
    for block in blocks:
        assert_same(textwrap.dedent("\n".join(block.lines)), f"{block.path.relative_to(ROOT)}:{block.line}")


def test_the_reference_files_the_tests_read_are_the_same_with_libyaml() -> None:
    """The pinned charts' values.yaml (tests/test_addons.py, tests/test_kueue.py) and Kueue's CRDs (tests/crd_schema.py)."""
    if not SHARED_REFERENCE.is_dir():
        pytest.skip(f"no shared reference data at {SHARED_REFERENCE}")
    charts = [SHARED_REFERENCE / "helm-charts" / c.chart / c.version / "values.yaml" for c in versions.HELM_CHARTS.values()]
    crds = sorted((SHARED_REFERENCE / "crds" / "kueue" / f"v{versions.HELM_CHARTS['kueue'].version}").glob("*.yaml"))
    files = [path for path in [*charts, *crds] if path.is_file()]
    assert crds and files
    for path in files:
        assert_same(path.read_text(), str(path))


BROKEN = [
    "a: b: c",
    "a:\n  - b\n c: d",
    "a: [1, 2",
    "a: 'x",
    "\t a: 1",
    "a: *x",
    "a: !!python/object:os.system x",
    "a: \x07",
    "- a\n---\n- b\n  c: d",
]


@pytest.mark.parametrize("text", BROKEN, ids=range(len(BROKEN)))
@pytest.mark.parametrize(
    ("ours", "theirs"), [(load_yaml, yaml.safe_load), (load_yaml_all, lambda t: list(yaml.safe_load_all(t)))], ids=["one", "all"]
)
def test_a_yaml_error_is_the_one_the_pure_python_loader_raises(
    text: str, ours: Callable[[str], Any], theirs: Callable[[str], Any]
) -> None:
    """What the product shows of a broken Pulumi.yaml, kubeconfig or stack file read by the policy pack: PyYAML's own
    message, with the line and a caret under the spot."""
    with pytest.raises(yaml.YAMLError) as expected:
        theirs(text)
    with pytest.raises(type(expected.value)) as caught:
        ours(text)
    assert str(caught.value) == str(expected.value)


def test_documents_read_as_yaml_safe_load_reads_them() -> None:
    text = "a: 1\nb: [1.0, true, '1', ~, 2026-11-23]\n---\n- x\n---\n"
    assert repr(load_yaml_all(text)) == repr(list(yaml.safe_load_all(text)))
    assert repr(load_yaml("a: 1\nb: {c: 0o7}\n")) == repr(yaml.safe_load("a: 1\nb: {c: 0o7}\n"))


# Where libyaml and the pure-Python loader read a text differently (config/sources.py load_yaml: libyaml's value
# stands). Found by fuzzing both (helper review, 2026-12-08); none of the repository's files is such a text.
REFUSED_BY_THE_PURE_PYTHON_SCANNER = {
    "a:\tb": {"a": "b"},  # YAML allows a tab as the space after `key:`; go-yaml (pulumi, kubectl) reads it too
    "a: b\t": {"a": "b"},
    "a: b\tc": {"a": "b\tc"},
    "a\t: b": {"a": "b"},
    "{a:\t1}": {"a": 1},
    "a: |#\n x": {"a": "x"},
    "a: b\t# c": {"a": "b"},
}
READ_OTHERWISE = {  # text: (libyaml's value, the pure-Python loader's)
    "a: !\n": ({"a": ""}, {"a": None}),
    "- !\n- x": (["", "x"], [None, "x"]),
    "# c\n\ufeffa: 1": ({"a": 1}, {"\ufeffa": 1}),
    "---\n\ufeffa: 1": ({"a": 1}, {"\ufeffa": 1}),
}


@pytest.mark.parametrize("text", list(REFUSED_BY_THE_PURE_PYTHON_SCANNER))
def test_libyaml_reads_tabs_and_indicators_the_pure_python_scanner_refuses(text: str) -> None:
    if not yaml.__with_libyaml__:
        pytest.skip("this PyYAML was built without libyaml")
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(text)
    assert repr(load_yaml(text)) == repr(REFUSED_BY_THE_PURE_PYTHON_SCANNER[text])


@pytest.mark.parametrize("text", list(READ_OTHERWISE))
def test_where_both_read_a_text_differently_load_yaml_gives_libyaml_s_value(text: str) -> None:
    if not yaml.__with_libyaml__:
        pytest.skip("this PyYAML was built without libyaml")
    libyaml_value, pure_value = READ_OTHERWISE[text]
    assert repr(yaml.safe_load(text)) == repr(pure_value)
    assert repr(load_yaml(text)) == repr(libyaml_value)


@pytest.mark.parametrize("ours", [load_yaml, load_yaml_all], ids=["one", "all"])
def test_a_lone_surrogate_is_the_pure_python_loader_s_reader_error(ours: Callable[[str], Any]) -> None:
    # libyaml takes a str encoded to UTF-8, which a lone surrogate (os.environ's and argv's undecodable bytes under
    # surrogateescape) cannot be: UnicodeEncodeError, not a YAML error, escaped callers that catch yaml.YAMLError.
    with pytest.raises(yaml.reader.ReaderError) as expected:
        yaml.safe_load("a: \udcff")
    with pytest.raises(yaml.reader.ReaderError) as caught:
        ours("a: \udcff")
    assert str(caught.value) == str(expected.value)
