"""Generated files stay in step with their sources (the model registry, the recipe dataclasses, the schema base).

scripts/gen-files.py regenerates them; here it runs in memory, so a stale file fails with the command that fixes
it, and a new registry entry is shown to reach every generated place without another edit.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from sqlmaster.models.registry import MODELS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_files", REPO / "scripts" / "gen-files.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_generated_file_is_stale(gen: ModuleType) -> None:
    stale = sorted(str(p.relative_to(REPO)) for p in gen.stale(REPO))
    assert not stale, f"stale generated files {stale}: run python scripts/gen-files.py"


def test_check_mode_exits_zero_when_current(gen: ModuleType) -> None:
    assert gen.main(["--check"]) == 0


def test_a_new_registry_entry_reaches_every_generated_place(gen: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """What adding a model to the registry changes, with no other edit: chart enums and validateValues' list,
    the workflow's choices, the README table and design.md's names."""
    new = dataclasses.replace(MODELS["mistral7b"], name="newmodel-9b", hub_id="org/NewModel-9B", description="New")
    monkeypatch.setattr(gen, "MODELS", {**MODELS, new.name: new})
    out = {str(p.relative_to(REPO)): text for p, text in gen.outputs(REPO).items()}
    for task in ("train", "eval"):
        schema = json.loads(out[f"charts/sqlmaster-{task}/values.schema.json"])
        assert schema["$defs"]["run"]["properties"]["model"]["enum"][-1] == "newmodel-9b"
        assert '"newmodel-9b"' in out[f"charts/sqlmaster-{task}/templates/_registry.tpl"]
    workflow = yaml.safe_load(out[".github/workflows/train.yml"])
    assert "newmodel-9b" in workflow[True]["workflow_dispatch"]["inputs"]["model"]["options"]  # YAML 1.1: on -> True
    assert "| `newmodel-9b` | `org/NewModel-9B` | New |" in out["README.md"]
    assert "`newmodel-9b`" in out["docs/design.md"]


def test_chart_recipe_is_the_recipes_own_schema(gen: ModuleType) -> None:
    """The charts embed sqlmaster.config.recipe_json_schema() as it is."""
    from sqlmaster.config import recipe_json_schema

    base = yaml.safe_load((REPO / gen.SCHEMA_BASE).read_text())
    for task in ("train", "eval"):
        assert gen.chart_schema(task, base)["$defs"]["recipe"] == recipe_json_schema()


def test_a_missing_region_marker_is_a_clear_error(gen: ModuleType) -> None:
    with pytest.raises(SystemExit, match="region 'models' markers not found"):
        gen.replace_region("no markers here\n", "models", "x\n", gen.HTML)


def test_readme_model_table_has_four_cells_per_row(gen: ModuleType) -> None:
    """Pad tokens such as <|fim_pad|> hold '|': escaped, or GitHub splits the row into more cells."""
    import re

    rows = [line for line in gen.model_table().splitlines() if line.startswith("| `")]
    assert len(rows) == len(MODELS)
    for row in rows:
        assert len(re.split(r"(?<!\\)\|", row.strip().strip("|"))) == 4, row


@pytest.mark.parametrize("name", [n for n, spec in MODELS.items() if not spec.is_tiny])
def test_each_7b_eval_file_rebuilds_its_training_split_and_prompt(name: str) -> None:
    """Evaluation must hold out exactly the rows training held out, with the template the adapter learned."""
    from sqlmaster.config import load_recipe

    train = load_recipe(REPO / "jobs" / "train" / f"{name}.yaml")
    evaluation = load_recipe(REPO / "jobs" / "eval" / f"{name}.yaml")
    assert evaluation.data == train.data
    assert evaluation.prompt == train.prompt
    values = yaml.safe_load((REPO / "jobs" / "eval" / f"{name}.yaml").read_text())
    assert values["runs"][0]["model"] == name
    if not MODELS[name].cpu_sized:  # the CPU-sized models' eval files are hand-written, for CPUs, like tiny's
        assert ("HF_TOKEN" in values["secrets"]["required"]) == MODELS[name].gated


def test_the_run_directory_layout_names_every_folder_and_eval_file() -> None:
    # docs/design.md's tree is generated from rundir.LAYOUT: every folder and every file of an evaluation is in it.
    from sqlmaster import rundir

    paths = [path for path, _ in rundir.LAYOUT]
    folders = [value for name, value in vars(rundir).items() if name.endswith("_DIR")]
    assert folders and all(any(p.startswith(f"{folder}/") for p in paths) for folder in folders)
    for name in (rundir.PREDICTIONS_FILE, rundir.RECORDS_FILE, rundir.METRICS_FILE):
        assert f"{rundir.EVAL_DIR}/<dataset>/{name}" in paths
    assert rundir.RUN_INFO_FILE in paths and rundir.RECIPE_FILE in paths
