"""Hypothesis: valid random specs check with consistent numbers; mutated ones give a located
SpecError — never another exception."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import specc
from specc.emit import to_yaml
from specc.errors import SpecError
from specc.spec import load_graph_text


@st.composite
def valid_specs(draw):
    """A conv/pool/bn/dropout stack that always reaches `classes` scores; returns (text, expected)."""
    size = draw(st.integers(8, 24))
    channels = draw(st.sampled_from([1, 3]))
    classes = draw(st.integers(2, 12))
    layers, c, h, params = [], channels, size, 0
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["conv", "pool", "bn", "dropout", "relu"]))
        if kind == "conv":
            k = draw(st.sampled_from([1, 3]))
            s = draw(st.sampled_from([1, 2]))
            f = draw(st.integers(1, 8))
            pad = draw(st.sampled_from(["same", "valid"]))
            p = k // 2 if pad == "same" else 0
            out = (h + 2 * p - k) // s + 1
            if out < 1:
                continue
            layers.append({"type": "conv", "filters": f, "kernel": k, "stride": s, "padding": pad})
            params += f * c * k * k + f
            c, h = f, out
        elif kind == "pool" and h >= 2:
            layers.append({"type": "max_pool", "kernel": 2})
            h //= 2
        elif kind == "bn":
            layers.append({"type": "batch_norm"})
            params += 2 * c
        elif kind == "dropout":
            layers.append({"type": "dropout", "rate": draw(st.floats(0, 0.9))})
        elif kind == "relu":
            layers.append({"type": "relu"})
    head = draw(st.sampled_from(["conv_gap", "flatten_linear"]))
    if head == "conv_gap":
        layers += [{"type": "conv", "filters": classes, "kernel": 1}, {"type": "global_avg_pool"}]
        params += classes * c + classes
    else:
        layers += [{"type": "flatten"}, {"type": "linear", "units": classes}]
        params += c * h * h * classes + classes
    layers.append({"type": "softmax"})
    spec = {"name": "random", "input": {"channels": channels, "size": size}, "classes": classes, "layers": layers}
    return yaml.safe_dump(spec, sort_keys=False), params


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs())
def test_valid_specs_pass_with_consistent_numbers(case):
    text, params = case
    result = specc.check(text)
    report = result.report
    assert report.total_params == params
    assert report.output_shape == (result.graph.classes,)
    assert report.total_params == sum(i.params for i in report.layers)
    assert load_graph_text(to_yaml(result.graph), "<fmt>") == result.graph


JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True),
    st.text(max_size=6),
    st.lists(st.integers(-2, 40), max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@st.composite
def mutated_specs(draw):
    text, _ = draw(valid_specs())
    spec = yaml.safe_load(text)
    target = draw(st.sampled_from(["top", "layer"]))
    if target == "top":
        key = draw(st.sampled_from(["name", "input", "classes", "layers", "bogus", "labels"]))
        if draw(st.booleans()) and key in spec:
            del spec[key]
        else:
            spec[key] = draw(JUNK)
    else:
        layer = draw(st.sampled_from(spec["layers"]))
        key = draw(st.sampled_from(sorted(layer) + ["inputs", "name", "kernal"]))
        if draw(st.booleans()) and key in layer:
            del layer[key]
        else:
            layer[key] = draw(JUNK)
    return yaml.safe_dump(spec, sort_keys=False)


def _assert_located(exc: SpecError) -> None:
    assert exc.diagnostics
    for d in exc.diagnostics:
        assert d.pos.line >= 1 and d.pos.col >= 1, d.format()
        assert d.message


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_specs())
def test_mutated_specs_fail_with_a_located_spec_error(text):
    try:
        specc.check(text)
    except SpecError as exc:
        _assert_located(exc)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_specs(), st.data())
def test_corrupted_text_fails_with_a_located_spec_error(case, data):
    text, _ = case
    i = data.draw(st.integers(0, len(text) - 1))
    junk = data.draw(st.sampled_from(["{", "}", ":", "- ", "\t", "&a", "*b", "!!python/name:os.system ", "'", "\n  x"]))
    try:
        specc.check(text[:i] + junk + text[i:])
    except SpecError as exc:
        _assert_located(exc)
