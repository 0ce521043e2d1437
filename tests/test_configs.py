import dataclasses
import glob
import os

import pytest
from conftest import REPO, run_recipe

from slam_recipes.configs import DataArguments, EvalArguments, PreferenceDataArguments, parse_recipe_args, read_recipe
from slam_recipes.errors import ConfigError
from slam_recipes.training.arguments import ModelArguments, PretrainConfig, PretrainModelArguments, SlamDPOConfig

PRETRAIN = (PretrainModelArguments, DataArguments, PretrainConfig)
DPO = (ModelArguments, PreferenceDataArguments, SlamDPOConfig)
PRETRAIN_RECIPES = sorted(glob.glob(os.path.join(REPO, "recipes", "*", "pretrain.yaml")))
DPO_RECIPES = sorted(glob.glob(os.path.join(REPO, "recipes", "*", "dpo.yaml")))
EVAL_RECIPES = sorted(glob.glob(os.path.join(REPO, "recipes", "*", "eval.yaml")))
GENERATIVE_RECIPES = sorted(glob.glob(os.path.join(REPO, "recipes", "*", "eval_generative.yaml")))
TOKENIZE_RECIPES = sorted(glob.glob(os.path.join(REPO, "recipes", "*", "tokenize.yaml")))


def parse(*argv):
    """GPU recipes set bf16, which TrainingArguments refuses on a machine without a GPU unless use_cpu is set (on a CPU
    without native bf16 the run then falls back to float32: the request stays in `args.precision`)."""
    return parse_recipe_args(PRETRAIN, [*argv, "--use_cpu", "true"])


def parse_dpo(*argv):
    return parse_recipe_args(DPO, [*argv, "--use_cpu", "true"])


def test_every_recipe_yaml_is_checked():
    every = sorted(glob.glob(os.path.join(REPO, "recipes", "**", "*.yaml"), recursive=True))
    assert every == sorted(PRETRAIN_RECIPES + DPO_RECIPES + EVAL_RECIPES + GENERATIVE_RECIPES + TOKENIZE_RECIPES)
    assert {os.path.basename(os.path.dirname(p)) for p in EVAL_RECIPES} == {"slam", "demo", "demo-sims"}
    assert {os.path.basename(os.path.dirname(p)) for p in DPO_RECIPES} == {"slam", "slam_scaled", "demo"}
    assert {os.path.basename(os.path.dirname(p)) for p in PRETRAIN_RECIPES} >= {
        "slam",
        "slam_scaled",
        "demo",
        "opt-125m",
        "smollm2-360m",
        "pythia-410m",
    }


@pytest.mark.parametrize("path", PRETRAIN_RECIPES, ids=lambda p: os.path.relpath(p, REPO))
def test_recipe_parses(path):
    model_args, data_args, training_args = parse("--config", path)
    assert model_args.model_name_or_path and (data_args.dataset_name or data_args.datasets)
    if (
        data_args.interleaved and "demo" not in path
    ):  # SIMS trains one epoch over its tokens (slamkit), not to a budget
        assert training_args.num_train_epochs == 1 and training_args.time_budget_seconds is None
    else:
        assert training_args.time_budget_seconds > 0


def test_sims_recipes_have_slamkits_values():
    """recipes/sims: slamkit's train_inter_scale.yaml, scaling_interleaving.yaml and interleaved_hubert_25.yaml,
    value for value; the Qwen2.5-7B and Llama-3.2-3B children change only the base LM and the output folder."""
    model_args, data_args, training_args = parse("--config", os.path.join(REPO, "recipes", "sims", "pretrain.yaml"))
    assert (data_args.context_length, data_args.packing, data_args.interleave_mean_span) == (2048, "padding_free", 10)
    assert data_args.interleave_fraction == 0.3 and data_args.dataset_ratios == [
        0.2023584112,
        0.5433262899,
        0.2543152989,
    ]
    assert training_args.learning_rate == 5e-4  # min_lr 5e-5, kept as a rate of it:
    assert training_args.lr_scheduler_kwargs == {"min_lr_rate": pytest.approx(5e-5 / 5e-4)}
    assert (training_args.warmup_steps, training_args.max_grad_norm, training_args.weight_decay) == (0.01, 0.5, 0.0)
    assert (training_args.per_device_train_batch_size, training_args.gradient_accumulation_steps) == (8, 1)
    for child, base in (("sims-7b", "Qwen/Qwen2.5-7B"), ("sims-llama3.2-3b", "meta-llama/Llama-3.2-3B")):
        big, big_data, big_training = parse("--config", os.path.join(REPO, "recipes", child, "pretrain.yaml"))
        assert big.model_name_or_path == base and big_data == data_args
        assert big_training.output_dir == f"outputs/{child}-pretrain"
        fields = [f.name for f in dataclasses.fields(training_args) if "dir" not in f.name]  # output_dir, logging_dir
        assert [getattr(big_training, f) for f in fields] == [getattr(training_args, f) for f in fields]


@pytest.mark.parametrize("path", DPO_RECIPES, ids=lambda p: os.path.relpath(p, REPO))
def test_dpo_recipe_parses(path):
    model_args, data_args, training_args = parse_dpo("--config", path)
    assert model_args.model_name_or_path.startswith("outputs/") and data_args.dataset_name
    assert training_args.time_budget_seconds > 0


@pytest.mark.parametrize("path", EVAL_RECIPES, ids=lambda p: os.path.relpath(p, REPO))
def test_eval_recipe_parses(path):
    from slam_recipes.configs import parse_benchmark_specs

    (args,) = parse_recipe_args((EvalArguments,), ["--config", path])
    assert args.model_name_or_path and args.mean_nll is True
    benchmarks = parse_benchmark_specs(args.benchmarks)
    if "demo" in path:  # the demo's benchmarks ship with the repository
        assert all(os.path.isfile(os.path.join(REPO, p)) for p in benchmarks.values())
    else:  # the paper's Table 2 metrics
        assert {"sblimp", "ssc", "tsc"} <= set(benchmarks)


@pytest.mark.parametrize("path", GENERATIVE_RECIPES, ids=lambda p: os.path.relpath(p, REPO))
def test_generative_eval_recipe_has_the_papers_settings(path):
    (args,) = parse_recipe_args((EvalArguments,), ["--config", path])
    assert (args.temperature, args.top_k, args.max_new_tokens, args.repetition_penalty) == (0.8, 25, 150, 1.1)
    assert (args.num_prompts, args.prompt_seconds, args.auto_bleu_n) == (1000, 3.0, 2)
    assert args.asr_model == "openai/whisper-large-v3-turbo" and args.ppl_model == "meta-llama/Llama-3.2-1B"
    assert args.vocoder_path.endswith("hifigan_lj_mhubert_base_25hz.pt") and not args.benchmarks


@pytest.mark.parametrize("path", TOKENIZE_RECIPES, ids=lambda p: os.path.relpath(p, REPO))
def test_tokenize_recipe_parses(path):
    from slam_recipes.configs import TokenizeArguments

    (args,) = parse_recipe_args((TokenizeArguments,), ["--config", path, "--dataset_name", "x", "--output_dir", "y"])
    assert (args.backend, args.feature_model, args.layer, args.dedup) == (
        "hubert",
        "slprl/mhubert-base-25hz",
        11,
        True,
    )
    assert args.kmeans_path.endswith("L11_km500.bin") and args.allow_pickle_kmeans is False


def test_benchmark_options_in_training_recipes():
    _, _, args = parse("--config", os.path.join(REPO, "recipes/demo/pretrain.yaml"))
    assert len(args.benchmarks) == 4 and args.mean_nll is True
    with pytest.raises(ConfigError, match="benchmarks: the name 'a' is given twice"):
        parse("--config", os.path.join(REPO, "recipes/demo/pretrain.yaml"), "--benchmarks", "a=x", "a=y")
    with pytest.raises(ConfigError, match="max_pairs must be at least 1"):
        parse_dpo("--config", os.path.join(REPO, "recipes/demo/dpo.yaml"), "--max_pairs", "0")


def test_slam_dpo_recipe_is_paper_table5():
    model_args, data_args, args = parse_dpo("--config", os.path.join(REPO, "recipes/slam/dpo.yaml"))
    assert model_args.model_name_or_path == "outputs/slam-pretrain"  # the pretraining recipe's output_dir
    _, _, pretrain = parse("--config", os.path.join(REPO, "recipes/slam/pretrain.yaml"))
    assert pretrain.output_dir == model_args.model_name_or_path
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (4, 16)
    assert (
        args.learning_rate == 5e-5 and args.lr_scheduler_type == "inverse_sqrt" and args.optim == "adamw_torch_fused"
    )
    assert args.max_grad_norm == 0.5 and args.precision.requested == "bf16" and args.beta == 0.1
    assert args.max_length == 1024
    assert args.time_budget_seconds == 1800
    assert data_args.auto_bleu_filter and data_args.auto_bleu_n == 2 and data_args.auto_bleu_threshold == 0.3
    _, _, scaled = parse_dpo("--config", os.path.join(REPO, "recipes/slam_scaled/dpo.yaml"))
    assert scaled.num_train_epochs == 2


def test_slam_recipe_is_paper_table4():
    model_args, data_args, args = parse("--config", os.path.join(REPO, "recipes/slam/pretrain.yaml"))
    assert model_args.model_name_or_path == "Qwen/Qwen2.5-0.5B" and model_args.twist_init
    assert model_args.rope_theta == 10000 and model_args.num_units == 500
    assert data_args.context_length == 1024 and data_args.packing == "padding_free"
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (8, 16)
    assert args.learning_rate == 1e-3 and args.warmup_steps == 0.01
    assert args.lr_scheduler_type == "cosine_with_min_lr"
    assert args.lr_scheduler_kwargs == {"min_lr_rate": pytest.approx(5e-5 / 1e-3)}  # min_lr 5e-5, as a rate
    assert args.max_grad_norm == 0.5 and args.precision.requested == "bf16" and args.optim == "adamw_torch_fused"
    assert args.time_budget_seconds == 23.5 * 3600
    assert model_args.model_config_overrides == {"attention_dropout": 0.0}


def test_scaled_recipe_doubles_the_global_batch_on_two_gpus():
    _, _, slam = parse("--config", os.path.join(REPO, "recipes/slam/pretrain.yaml"))
    _, _, scaled = parse("--config", os.path.join(REPO, "recipes/slam_scaled/pretrain.yaml"))
    per_step = lambda a, gpus: a.per_device_train_batch_size * a.gradient_accumulation_steps * gpus  # noqa: E731
    assert per_step(scaled, 2) == 2 * per_step(slam, 1)
    assert scaled.time_budget_seconds > slam.time_budget_seconds
    assert scaled.learning_rate == slam.learning_rate


MODEL_BLOCK = {"model_name_or_path", "rope_theta", "attn_implementation", "model_config_overrides"}
DERIVED = {  # recipes derived from recipes/slam/pretrain.yaml, and the only keys each may set itself
    "opt-125m": MODEL_BLOCK | {"output_dir"},
    "pythia-410m": MODEL_BLOCK | {"output_dir"},
    "smollm2-360m": MODEL_BLOCK | {"output_dir"},
    "slam_scaled": {"output_dir", "time_budget", "num_train_epochs"},
}


@pytest.mark.parametrize("name", sorted(DERIVED))
def test_derived_recipes_state_only_how_they_differ(name):
    """A base-LM variant is the Slam recipe with another model block: it names recipes/slam/pretrain.yaml as its
    parent and sets nothing else, so a change to the Slam recipe reaches every variant and none can drift."""
    import yaml

    path = os.path.join(REPO, "recipes", name, "pretrain.yaml")
    with open(path) as f:
        own = yaml.safe_load(f)
    assert own.pop("parent") == "../slam/pretrain.yaml"
    assert set(own) <= DERIVED[name], set(own) - DERIVED[name]
    slam = read_recipe(os.path.join(REPO, "recipes", "slam", "pretrain.yaml"))
    merged = read_recipe(path)
    expected = {key: value for key, value in (slam | own).items() if value is not None}  # null: the default
    assert (
        merged == expected
        and [k for k in slam if k in merged] == list(merged)[: len(merged) - len(set(own) - set(slam))]
    )
    model_args, data_args, args = parse("--config", path)
    _, slam_data, slam_args = parse("--config", os.path.join(REPO, "recipes", "slam", "pretrain.yaml"))
    assert model_args.model_name_or_path == merged["model_name_or_path"] and model_args.unit_tokenizer
    assert data_args == slam_data and args.learning_rate == slam_args.learning_rate == 1e-3
    assert model_args.rope_theta == merged.get("rope_theta")


def test_a_recipe_with_a_parent_is_the_parent_with_its_keys_on_top(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "r.yaml").write_text("learning_rate: 0.1\nwarmup_steps: 5\nmodel_name_or_path: a\n")
    child = tmp_path / "child.yaml"
    child.write_text("parent: base/r.yaml\nwarmup_steps: null\nmodel_name_or_path: b\nseed: 3\n")
    assert read_recipe(str(child)) == {
        "learning_rate": 0.1,
        "model_name_or_path": "b",
        "seed": 3,
    }
    model_args, _, args = parse("--config", str(child), "--dataset_name", "d", "--output_dir", str(tmp_path / "o"))
    assert (model_args.model_name_or_path, args.learning_rate, args.seed) == ("b", 0.1, 3)
    assert args.warmup_steps == 0  # null removes the parent's 5: the default
    (tmp_path / "base" / "r.yaml").write_text("lerning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"base/r.yaml: unknown key\(s\) \['lerning_rate'\]"):
        parse("--config", str(child))
    (tmp_path / "base" / "r.yaml").write_text("parent: ../child.yaml\n")
    with pytest.raises(ConfigError, match="leads back to itself"):
        parse("--config", str(child))
    child.write_text("parent: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="nowhere.yaml: no such recipe file"):
        parse("--config", str(child))


def test_model_arguments_are_trls_model_config_plus_this_packages_fields():
    """ModelArguments extends trl.ModelConfig: TRL's fields and defaults, this package's fields on top, LoRA through
    trl.get_peft_config; TRL's quantisation fields, which these recipes do not apply, are refused."""
    import dataclasses

    from trl import ModelConfig

    from slam_recipes.training.arguments import ModelArguments

    ours = {f.name for f in dataclasses.fields(ModelArguments)}
    trls = {f.name for f in dataclasses.fields(ModelConfig)}
    assert issubclass(ModelArguments, ModelConfig) and trls <= ours
    assert ours - trls == {"num_units", "tokenizer_name_or_path", "rope_theta", "model_config_overrides",
                           "unit_tokenizer", "peft_save"}  # fmt: skip
    assert {"twist_init"} == {f.name for f in dataclasses.fields(PretrainModelArguments)} - ours
    model_args, *_ = parse("--config", os.path.join(REPO, "recipes/demo/pretrain.yaml"), "--use_dora", "true")
    assert model_args.use_dora and model_args.lora_target_modules == "all-linear"
    with pytest.raises(ConfigError, match="load_in_8bit / load_in_4bit: quantised base LMs"):
        parse("--config", os.path.join(REPO, "recipes/demo/pretrain.yaml"), "--load_in_4bit", "true")


def test_the_dataset_mixture_form_is_trls_and_checked(tmp_path):
    """`datasets:` takes the entries of TRL's DatasetMixtureConfig; a malformed entry is one line naming it."""
    import dataclasses

    from trl.scripts.utils import DatasetConfig

    from slam_recipes.configs import DATASET_CONFIG_KEYS

    assert set(DATASET_CONFIG_KEYS) == {f.name for f in dataclasses.fields(DatasetConfig)}
    recipe = tmp_path / "mix.yaml"
    recipe.write_text(
        "datasets:\n  - path: data/units/a\n    fraction: 0.8\n  - path: slprl/b\n    name: default\n"
        "    split: train\n    columns: [units]\n    fraction: 0.2\noutput_dir: o\n"
    )
    _, data_args, _ = parse("--config", str(recipe))
    assert data_args.dataset_name is None and [e["path"] for e in data_args.datasets] == ["data/units/a", "slprl/b"]
    for text, message in [
        ("datasets:\n  - path: a\n    fractoin: 1\n", r"datasets\[0\]: unknown key\(s\) \['fractoin'\]"),
        ("datasets:\n  - name: x\n", r"datasets\[0\]: path is required"),
        ("datasets:\n  - path: a\n    fraction: 1\n  - path: b\n", "give a fraction for every source or for none"),
        ("datasets:\n  - path: a\n    fraction: -1\n", r"datasets\[0\]: fraction must be a number ≥ 0"),
        ("datasets:\n  - path: a\n    columns: units\n", r"datasets\[0\]: columns must be a list"),
        ("dataset_name: [a]\ndatasets:\n  - path: b\n", "give the sources as dataset_name or as datasets, not both"),
        ("datasets:\n  - path: a\n    fraction: 1\ndataset_ratios: [1]\n", "dataset_ratios goes with dataset_name"),
    ]:
        recipe.write_text(text + "output_dir: o\n")
        with pytest.raises(ConfigError, match=message):
            parse("--config", str(recipe))
    recipe.write_text("datasets:\n  - path: a\n    fraction: 1\noutput_dir: o\n")
    with pytest.raises(ConfigError, match="fraction is for pretraining mixtures"):
        parse_dpo("--config", str(recipe))


def test_cli_beats_yaml_beats_default():
    demo = os.path.join(REPO, "recipes/demo/pretrain.yaml")
    model_args, data_args, args = parse("--config", demo, "--learning_rate", "0.5", "--packing", "block")
    assert args.learning_rate == 0.5  # CLI
    assert data_args.packing == "block"  # CLI
    assert args.time_budget_seconds == 450 and data_args.context_length == 256  # YAML
    assert args.max_steps == -1  # default: the demo is sized by its time budget
    assert args.adam_beta1 == 0.9 and data_args.dedup is False  # defaults


def test_sources_on_the_command_line_replace_a_recipes_mixture(tmp_path):
    """`--dataset_name` replaces a recipe file's `datasets:` (two forms of the one setting, and a mixture cannot be
    written on a command line), in the parsed arguments and in the recipe as run."""
    from slam_recipes.configs import resolved_recipe

    recipe = tmp_path / "mix.yaml"
    recipe.write_text("datasets:\n  - path: data/units/a\n    fraction: 1\noutput_dir: o\n")
    argv = ["--config", str(recipe), "--dataset_name", "data/units/b", "data/units/c", "--use_cpu", "true"]
    parsed = parse_recipe_args(PRETRAIN, argv)
    assert parsed[1].dataset_name == ["data/units/b", "data/units/c"] and parsed[1].datasets is None
    as_run = resolved_recipe(parsed, argv)
    assert "datasets" not in as_run and as_run["dataset_name"] == ["data/units/b", "data/units/c"]
    assert parse("--config", str(recipe))[1].datasets[0]["path"] == "data/units/a"  # without the flag: the file's


def test_unknown_yaml_key_is_an_error(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model_name_or_path: x\nlerning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"r.yaml: unknown key\(s\) \['lerning_rate'\]"):
        parse("--config", str(path))


def test_unknown_cli_flag_is_an_error(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model_name_or_path: x\n")
    with pytest.raises(ConfigError, match=r"^command line: Some specified arguments are not used by the Hf"):
        parse("--config", str(path), "--lerning_rate", "1")


def test_a_bad_value_is_one_line_naming_where_it_came_from(tmp_path):
    """argparse's own message for a value of the wrong type, without its usage text, and the recipe file or the
    command line that gave the value."""
    path = tmp_path / "r.yaml"
    path.write_text("model_name_or_path: x\nlearning_rate: fast\n")
    with pytest.raises(ConfigError) as caught:
        parse("--config", str(path))
    assert str(caught.value) == f"{path}: argument --learning_rate/--learning-rate: invalid float value: 'fast'"
    with pytest.raises(ConfigError) as caught:
        parse("--config", os.path.join(REPO, "recipes/demo/pretrain.yaml"), "--seed", "forty")
    assert str(caught.value) == "command line: argument --seed: invalid int value: 'forty'"


def test_an_output_dir_that_is_a_file_is_an_error(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("a file the run must not touch\n")
    with pytest.raises(ConfigError, match=f"^output_dir {taken}: is a file, not a folder$"):
        parse("--config", os.path.join(REPO, "recipes/demo/pretrain.yaml"), "--output_dir", str(taken))
    assert taken.read_text() == "a file the run must not touch\n"


def test_dpo_starts_from_the_trained_weights(tmp_path, tiny_unit_lm_dir):
    """Issue 20, part 4: DPO has no `twist_init` (it used to build a random model from the checkpoint's config when
    given `--twist_init false`, and the vocabulary check still passed). Its model arguments load the weights, which
    equal those saved; the flag, on the command line or in the YAML, stops with one line naming the reason."""
    import torch
    from transformers import AutoModelForCausalLM

    from slam_recipes.modeling.unit_lm import build_unit_lm

    model_args = ModelArguments(model_name_or_path=tiny_unit_lm_dir)
    assert not hasattr(model_args, "twist_init") and PretrainModelArguments().twist_init
    loaded = build_unit_lm(tiny_unit_lm_dir, **model_args.build_kwargs()).state_dict()
    saved = AutoModelForCausalLM.from_pretrained(tiny_unit_lm_dir).state_dict()
    assert loaded.keys() == saved.keys() and all(torch.equal(loaded[k], saved[k]) for k in saved)
    out = tmp_path / "dpo"
    dpo = ("recipes/dpo.py", "--config", "recipes/demo/dpo.yaml", "--model_name_or_path", tiny_unit_lm_dir)
    result = run_recipe(*dpo, "--output_dir", str(out), "--twist_init", "false")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-2000:]
    assert "['--twist_init', 'false']" in errors[0] and "twist_init is a pretraining option" in errors[0]
    assert not out.exists()
    recipe = tmp_path / "dpo.yaml"
    recipe.write_text(f"model_name_or_path: {tiny_unit_lm_dir}\ntwist_init: false\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['twist_init'\] \(twist_init is a pretraining option"):
        parse_dpo("--config", str(recipe))


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("time_budget: '25 hours'\n", "time_budget '25 hours' is malformed"),
        ("packing: tight\n", "packing must be one of"),
        ("- a\n- b\n", "must be a YAML mapping"),
        ("a: [\n", "not valid YAML"),
        ("num_units: 70000\n", "num_units must be in"),
        ("per_device_train_batch_size: 0\n", "per_device_train_batch_size must be at least 1, got 0"),
        ("gradient_accumulation_steps: -2\n", "gradient_accumulation_steps must be at least 1, got -2"),
    ],
)
def test_bad_recipe_values(tmp_path, yaml_text, message):
    path = tmp_path / "r.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message):
        parse("--config", str(path))


def test_missing_recipe_file():
    with pytest.raises(ConfigError, match="no such recipe file"):
        parse("--config", "recipes/nope.yaml")


@pytest.mark.parametrize(
    "path", sorted(glob.glob(os.path.join(REPO, "accelerate_configs", "*.yaml"))), ids=os.path.basename
)
def test_accelerate_configs_load(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(path)
    assert config.mixed_precision == "bf16"
    expected = {"a5000_24h.yaml": 1, "a100x2_48h.yaml": 2}
    if os.path.basename(path) in expected:
        assert config.num_processes == expected[os.path.basename(path)]
    if "deepspeed" in path:
        stage = 3 if "zero3" in path else 2
        assert config.deepspeed_config["zero_stage"] == stage
        if stage == 3:  # built sharded, saved whole: the folder loads with plain transformers
            assert config.deepspeed_config["zero3_init_flag"] and config.deepspeed_config["zero3_save_16bit_model"]
    if os.path.basename(path) == "fsdp2.yaml":
        from accelerate.utils import FullyShardedDataParallelPlugin

        # accelerate's own plugin accepts the settings as FSDP2 ones (it refuses FSDP1-only ones under version 2)
        options = {name.removeprefix("fsdp_") if name != "fsdp_version" else name: value
                   for name, value in config.fsdp_config.items()}  # fmt: skip
        options["cpu_offload"] = options.pop("offload_params")
        plugin = FullyShardedDataParallelPlugin(**options)
        assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
        assert plugin.state_dict_type.name == "FULL_STATE_DICT"
