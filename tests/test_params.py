"""params.yaml is the one source of values: complete, type- and range-checked, and it holds every dvc.yaml params key."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from params_helpers import default_params, with_params
from protalign.cli import main
from protalign.params import Params, ParamsError, load_params, parse_params

REPO = Path(__file__).resolve().parents[1]
PARAMS_FILES = [REPO / "params.yaml", REPO / "tests" / "pipeline_params.yaml"]


def raw(path: Path = REPO / "params.yaml") -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


# ---- dvc.yaml params keys ------------------------------------------------------------------------------------------


def _lookup(data: Any, dotted: str) -> Any:
    """The value at a dotted key path, or KeyError naming the first missing part."""
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            raise KeyError(dotted)
        data = data[part]
    return data


def _interpolate(text: str, item: Any, params: dict[str, Any]) -> str:
    """DVC's `${...}` in a params entry: `${item}`, `${item.<name>}` (matrix) or a params value."""

    def value(m: re.Match) -> str:
        expr = m.group(1).strip()
        if expr == "item":
            return str(item)
        if expr.startswith("item."):
            return str(item[expr[len("item.") :]])
        return str(_lookup(params, expr))

    return re.sub(r"\$\{([^}]+)\}", value, text)


def _items(spec: Any, params: dict[str, Any]) -> list[Any]:
    """The values a `foreach` iterates over (a list, a mapping's keys, or `${params.key}`)."""
    if isinstance(spec, str):
        spec = _lookup(params, re.fullmatch(r"\$\{([^}]+)\}", spec.strip()).group(1).strip())
    return list(spec)


def dvc_params_keys(dvc: dict[str, Any], params: dict[str, Any]) -> list[tuple[str, str]]:
    """(stage@item, key) for every params key of every stage, foreach/matrix templates expanded per item."""
    out = []
    for name, stage in dvc["stages"].items():
        if "foreach" in stage:
            items, body = _items(stage["foreach"], params), stage["do"]
        elif "matrix" in stage:
            axes = {axis: _items(spec, params) for axis, spec in stage["matrix"].items()}
            items = [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
            body = stage
        else:
            items, body = [None], stage
        for item in items:
            for entry in body.get("params", []):
                keys = entry if isinstance(entry, str) else entry.get("params.yaml", [])
                for key in [keys] if isinstance(keys, str) else keys:
                    out.append((f"{name}@{item}", _interpolate(key, item, params)))
    return out


def missing_dvc_params(dvc: dict[str, Any], params: dict[str, Any]) -> list[tuple[str, str]]:
    missing = []
    for stage, key in dvc_params_keys(dvc, params):
        try:
            _lookup(params, key)
        except KeyError:
            missing.append((stage, key))
    return missing


@pytest.mark.parametrize("params_file", PARAMS_FILES, ids=lambda p: p.name)
def test_every_dvc_yaml_params_key_exists(params_file):
    dvc, params = yaml.safe_load((REPO / "dvc.yaml").read_text()), raw(params_file)
    keys = {key for _, key in dvc_params_keys(dvc, params)}
    assert {f"structure.{gdm}" for gdm in params["structure"]["gdms"]} <= keys  # foreach template expanded
    assert {"align.epochs", "prepare", "analysis"} <= keys
    assert missing_dvc_params(dvc, params) == []


def test_dvc_params_check_catches_a_wrong_key_and_a_gdm_without_settings():
    dvc, params = yaml.safe_load((REPO / "dvc.yaml").read_text()), raw()
    wrong = yaml.safe_load((REPO / "dvc.yaml").read_text().replace("- align.epochs", "- align.epochz"))
    missing = missing_dvc_params(wrong, params)
    n_pairs = len(params["align"]["llms"]) * len(params["structure"]["gdms"])
    assert len(missing) == 3 * n_pairs and {k for _, k in missing} == {"align.epochz"}
    assert {s.split("@")[0] for s, _ in missing} == {"align", "crossval", "head_depth"}
    params["structure"]["gdms"].append("egnn")
    assert {k for _, k in missing_dvc_params(dvc, params)} == {"structure.egnn"}
    assert {s for s, _ in missing_dvc_params(dvc, params)} == {"train_structure@egnn", "embed_structure@egnn"}


# ---- complete, typed params ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("params_file", PARAMS_FILES, ids=lambda p: p.name)
def test_params_files_load_and_hold_every_key(params_file):
    p = load_params(params_file)
    assert sum(p.split.fractions) == pytest.approx(1.0)
    assert isinstance(p.prepare.max_file_mb, float) and isinstance(p.split.fractions, tuple)
    assert p.to_dict().keys() == {f.name for f in dataclasses.fields(Params)}


@pytest.mark.parametrize("params_file", PARAMS_FILES, ids=lambda p: p.name)
def test_every_yaml_value_reaches_the_dataclasses_unchanged(params_file):
    def as_lists(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: as_lists(v) for k, v in x.items()}
        return [as_lists(v) for v in x] if isinstance(x, tuple | list) else x

    p = load_params(params_file)
    assert as_lists(p.to_dict()) == raw(params_file)  # 100 == 100.0: ints stand in for floats
    assert p.pair_llms() == (p.align.llms or p.embed_text.llms)


def test_dataclasses_have_no_defaults():
    def with_default(obj: Any) -> list[str]:
        out = []
        for f in dataclasses.fields(obj):
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                out.append(f"{type(obj).__name__}.{f.name}")
            if dataclasses.is_dataclass(getattr(obj, f.name)):
                out += with_default(getattr(obj, f.name))
        return out

    assert with_default(default_params()) == []
    with pytest.raises(TypeError):
        Params()  # type: ignore[call-arg]


def bad(mutate) -> ParamsError:
    """The ParamsError that params.yaml raises after `mutate(data)`."""
    data = copy.deepcopy(raw())
    mutate(data)
    with pytest.raises(ParamsError) as info:
        parse_params(data, "params.yaml")
    return info.value


def test_unknown_key_names_its_path_and_the_allowed_keys():
    err = bad(lambda d: d["align"].update(lrr=0.1))
    assert err.key == "align.lrr" and "unknown key" in str(err) and "temperature" in str(err)
    assert bad(lambda d: d.update(aling={})).key == "aling"
    assert bad(lambda d: d["structure"]["train"].update(epoch=3)).key == "structure.train.epoch"


def test_missing_key_or_section_is_an_error():
    err = bad(lambda d: d["align"].pop("epochs"))
    assert err.key == "align.epochs" and "missing" in str(err)
    assert bad(lambda d: d.pop("evaluate")).key == "evaluate"
    assert bad(lambda d: d["summarize"]["chat"].pop("timeout")).key == "summarize.chat.timeout"
    assert bad(lambda d: d.update(prepare=None)).key == "prepare"


def test_wrong_type_names_path_value_and_allowed():
    err = bad(lambda d: d["align"].update(epochs="forty"))
    assert str(err) == "params.yaml: align.epochs: 'forty' has the wrong type; allowed: an integer >= 1"
    assert bad(lambda d: d["align"].update(lr="fast")).key == "align.lr"
    assert "2.0e-4" in str(bad(lambda d: d["align"].update(lr="2e-4")))  # YAML 1.1 reads 2e-4 as a string
    assert bad(lambda d: d["analysis"].update(methods="random")).key == "analysis.methods"
    assert bad(lambda d: d["evaluate"].update(ks=[1, "5"])).key == "evaluate.ks[1]"
    assert "or null" in str(bad(lambda d: d["align"].update(patience="ten")))


def test_bool_and_int_do_not_stand_in_for_each_other():
    assert bad(lambda d: d["align"].update(epochs=True)).key == "align.epochs"
    assert bad(lambda d: d["embed_text"].update(quantize_4bit=1)).key == "embed_text.quantize_4bit"
    assert bad(lambda d: d["align"].update(lr=True)).key == "align.lr"


def test_int_is_accepted_where_a_float_is_annotated():
    data = raw()
    data["align"]["temperature"] = 1
    assert parse_params(data).align.temperature == 1.0 and isinstance(
        parse_params(data).align.temperature, float
    )


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("align.epochs", 0, ">= 1"),
        ("align.lr", 0.0, "> 0"),
        ("align.lr", float("nan"), "> 0"),
        ("align.temperature", -0.1, "> 0"),
        ("align.structure_layers", 4, "in [1, 3]"),
        ("analysis.ci", 1.0, "in (0, 1)"),
        ("analysis.folds", 1, ">= 2"),
        ("structure.gat.dropout", 1.0, "in [0, 1)"),
        ("structure.train.mask_rate", -0.1, "in [0, 1)"),
        ("cluster.coverage", 0.0, "in (0, 1]"),
        ("seed", -1, ">= 0"),
        ("finetune.lora.r", 0, ">= 1"),
    ],
)
def test_out_of_range_names_path_and_range(key, value, allowed):
    def mutate(d):
        *parents, last = key.split(".")
        for part in parents:
            d = d[part]
        d[last] = value

    err = bad(mutate)
    assert err.key == key and "out of range" in str(err) and allowed in str(err) and repr(value) in str(err)


def test_choices_lengths_and_cross_field_rules():
    assert "'study', 'clip'" in str(bad(lambda d: d["align"].update(loss="triplet")))
    assert (
        bad(lambda d: d["structure"]["train"].update(tasks=["residue_type", "cmap"])).key
        == "structure.train.tasks[1]"
    )
    err = bad(lambda d: d["split"].update(fractions=[0.5, 0.5]))
    assert err.key == "split.fractions" and "exactly 3" in str(err)
    assert bad(lambda d: d["analysis"].update(seeds=[])).key == "analysis.seeds"
    assert "sum to 1" in str(bad(lambda d: d["split"].update(fractions=[0.5, 0.3, 0.1])))
    assert bad(lambda d: d["split"].update(cluster_identity=0.4)).key == "split.cluster_identity"
    assert bad(lambda d: d["structure"].update(gdms=["gat", "train"])).key == "structure.gdms"
    assert bad(lambda d: d["align"].update(llms=["gpt2"])).key == "align.llms"
    assert bad(lambda d: d["embed_text"].update(llms=["minilm-l6", "minilm-l6"])).key == "embed_text.llms"


def test_load_params_names_the_file_and_needs_it(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text((REPO / "params.yaml").read_text().replace("epochs: 40", "epochs: forty"))
    with pytest.raises(ParamsError, match=r"params\.yaml: align\.epochs: 'forty'"):
        load_params(f)
    with pytest.raises(ParamsError, match="no params file"):
        load_params(tmp_path / "absent.yaml")


def test_cli_fails_before_any_work_with_the_key_path(tmp_path, monkeypatch, capsys):
    (tmp_path / "params.yaml").write_text(
        (REPO / "params.yaml").read_text().replace("epochs: 40", "epochs: forty")
    )
    monkeypatch.chdir(tmp_path)
    assert main(["split"]) == 2
    assert "align.epochs" in capsys.readouterr().err and sorted(p.name for p in tmp_path.iterdir()) == [
        "params.yaml"
    ]


def test_helpers_override_nested_keys_without_touching_the_rest():
    p = default_params(align={"epochs": 3}, structure={"train": {"epochs": 1}, "gdms": ["gat"]})
    assert (p.align.epochs, p.structure.train.epochs, p.structure.gdms) == (3, 1, ("gat",))
    assert p.align.lr == load_params(REPO / "params.yaml").align.lr
    assert with_params(p, "structure.train.lr", 0.5).structure.train.lr == 0.5
    with pytest.raises(KeyError, match="align.epochz"):
        default_params(align={"epochz": 3})
