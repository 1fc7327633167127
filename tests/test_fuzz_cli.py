"""The guard: structure-aware fuzzing of specs and flags through the CLI entry point.

Random mutations of the shipped specs — values of another type, keys dropped, duplicated or
misspelt, numbers replaced by extremes, deep nesting, tags, stray bytes — and random values of
the command-line flags, run in-process through `specc.cli.main`. Whatever the input, the
command ends with exit 0 or 2: never 1 (an internal error), never a traceback, never slower
than a bounded time. Derandomised, so a CI run is reproducible; a failure prints the input.
"""

from __future__ import annotations

import io
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specc.cli import main

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted(p for p in (ROOT / "specs").glob("*.yaml") if p.stem not in ("allcnn_large", "allcnn_imagenet")) + [
    ROOT / "specs" / "zoo" / f"{name}.yaml" for name in ("lenet5", "unet_small", "mobilenet_v2", "efficientnet_b0")
]  # the zoo's specs bring the newer layer types (activations, mul gates, upsampling, outputs without classes)
DOCS = {p.name: yaml.safe_load(p.read_text()) for p in SPECS}
SECONDS = 10.0

EXTREMES = [0, -1, 1, 2, 3, 10**9, 2**63, -(2**31), 1e-300, 1e300, 0.5, -0.0, "", "x", None, True, [], {}, [1, 2, 3]]
KEYS = ["type", "filters", "kernel", "stride", "padding", "rate", "inputs", "name", "units", "activation",
        "groups", "dilation", "repeat", "vars", "layers", "classes", "input", "size", "channels", "base",
        "defaults", "train", "labels", "slope", "ceil_mode", "momentum", "eps", "affine", "bias", "outputs"]  # fmt: skip


def run_cli(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    elapsed = time.perf_counter() - started
    text = err.getvalue()
    assert elapsed < SECONDS, f"{argv} took {elapsed:.1f} s"
    return code, text


def assert_clean(code: int, err: str, what: str) -> None:
    assert code in (0, 2), f"exit {code} for {what}:\n{err}"
    assert "internal error" not in err and "Traceback" not in err, f"{what}:\n{err}"


@st.composite
def mutated_doc(draw):
    """A shipped spec's document with a few structural mutations."""
    name = draw(st.sampled_from(sorted(DOCS)))
    doc = yaml.safe_load(yaml.safe_dump(DOCS[name]))  # a deep copy
    for _ in range(draw(st.integers(1, 4))):
        containers = _containers(doc)
        parent, key = draw(st.sampled_from(containers))
        action = draw(st.sampled_from(["extreme", "drop", "rename", "wrap", "swap_type", "add_key", "nest"]))
        if action == "extreme":
            parent[key] = draw(st.sampled_from(EXTREMES))
        elif action == "drop" and isinstance(parent, dict):
            del parent[key]
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS)) + draw(st.sampled_from(["", "s", "_", "x"]))] = parent.pop(key)
        elif action == "wrap":
            parent[key] = [parent[key]] if draw(st.booleans()) else {"type": parent[key]}
        elif action == "swap_type":
            value = parent[key]
            parent[key] = str(value) if not isinstance(value, str) else draw(st.sampled_from([3, [value], {value: 1}]))
        elif action == "add_key" and isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS))] = draw(st.sampled_from(EXTREMES))
        elif action == "nest":
            value = parent[key]
            for _ in range(draw(st.integers(1, 80))):
                value = [value]
            parent[key] = value
    return doc


def _containers(doc) -> list[tuple[object, object]]:
    """Every (container, key-or-index) pair of a document, the root's keys included."""
    found: list[tuple[object, object]] = []
    stack = [doc]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            found.append((node, key))
            if isinstance(value, (dict, list)):
                stack.append(value)
    return found or [(doc, "name")]


def text_mutation(draw, text: str) -> str:
    action = draw(st.sampled_from(["none", "bytes", "tag", "dup_key", "truncate", "indent"]))
    if action == "bytes":
        at = draw(st.integers(0, len(text)))
        junk = draw(st.sampled_from(["\x00", "\x07", "\ufeff", "\t", "\x1b[31m", "\\", "{", "]", "&a", "*a", "!!"]))
        return text[:at] + junk + text[at:]
    if action == "tag":
        return text.replace(": ", ": !!binary ", 1) if draw(st.booleans()) else text.replace(": ", ": !custom ", 1)
    if action == "dup_key":
        return text + text.splitlines()[0] + "\n"
    if action == "truncate":
        return text[: draw(st.integers(0, len(text)))]
    if action == "indent":
        lines = text.splitlines()
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        lines[i] = " " + lines[i] if lines else ""
        return "\n".join(lines) + "\n"
    return text


@settings(derandomize=True, max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_specs_end_in_exit_0_or_2(tmp_path_factory, data):
    doc = data.draw(mutated_doc())
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    text = text_mutation(data.draw, text)
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "spec.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    for command in (["check"], ["summary", "--json"], ["fmt"]):
        code, err = run_cli([command[0], str(path), *command[1:]])
        assert_clean(code, err, f"{command[0]} of:\n{text}")


FLAG_VALUES = ["0", "-1", "nan", "inf", "-inf", "1e400", "abc", "", "9" * 40, "1.5", "0x10", "1_000"]
SET_VALUES = ["0", "-5", "[]", "{}", "null", "nan", ".inf", "'x'", "[1, [2]]", "{a: 1}", "!!binary aGk=", "&a 1", "*a"]
SET_KEYS = ["classes", "input.size", "input.channels", "name", "layers.conv1.filters", "layers.conv1.kernel",
            "layers.conv1", "layers", "defaults.conv.padding", "train.epochs", "train.lr", "labels", "layers.nope.x",
            "input", "", ".", "layers..x", "layers.0.filters"]  # fmt: skip


@settings(derandomize=True, max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    spec=st.sampled_from(SPECS),
    flag=st.sampled_from(["--max-params", "--max-activation-gib", None]),
    flag_value=st.sampled_from(FLAG_VALUES),
    overrides=st.lists(st.tuples(st.sampled_from(SET_KEYS), st.sampled_from(SET_VALUES)), max_size=3),
    command=st.sampled_from(["check", "summary", "fmt"]),
)
def test_random_flag_values_end_in_exit_0_or_2(spec, flag, flag_value, overrides, command):
    argv = [command, str(spec)]
    if flag:
        argv += [flag, flag_value]
    for key, value in overrides:
        argv += ["--set", f"{key}={value}"]
    code, err = run_cli(argv)
    assert_clean(code, err, " ".join(argv))


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_shipped_specs_still_pass(spec):
    """The fuzzer's starting points are valid, so its mutations test the error paths."""
    code, err = run_cli(["check", str(spec)])
    assert code == 0, err
