"""Every command and path the README quotes must work."""

import os
import re
import shlex
import subprocess
import sys

import pytest
from conftest import REPO

from slam_recipes.configs import DataArguments, EvalArguments, PreferenceDataArguments, parse_recipe_args
from slam_recipes.training.arguments import ModelArguments, PretrainConfig, PretrainModelArguments, SlamDPOConfig

with open(os.path.join(REPO, "README.md")) as f:
    README = f.read()


def test_quick_start_is_exactly_two_commands():
    section = README.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
    assert commands == ["make demo", "make test"]


def test_make_targets_exist():
    with open(os.path.join(REPO, "Makefile")) as f:
        targets = set(re.findall(r"^([a-z][a-z-]*):", f.read(), flags=re.M))
    quoted = set(re.findall(r"\bmake ([a-z][a-z-]*)", README))
    assert quoted and quoted <= targets, quoted - targets


def test_quoted_paths_exist():
    paths = set(re.findall(r"\b((?:recipes|accelerate_configs|slam_recipes|data)/[\w./-]*\w)", README))
    paths |= {"constraints.txt"}
    made_by_a_quoted_command = set(re.findall(r"--output_dir (\S+)", README))
    missing = [p for p in sorted(paths - made_by_a_quoted_command) if not os.path.exists(os.path.join(REPO, p))]
    assert not missing


PRETRAIN_COMMANDS = sorted(set(re.findall(r"recipes/pretrain\.py (--config [^`|\n]+)", README)))
DPO_COMMANDS = sorted(set(re.findall(r"recipes/dpo\.py (--config [^`|\n]+)", README)))
EVAL_COMMANDS = sorted(set(re.findall(r"recipes/evaluate\.py (--config [^`|\n]+)", README)))


CORPUS_COMMANDS = sorted(set(re.findall(r"recipes/make_demo_corpus\.py (--[^`|\n#]+)", README)))
with open(os.path.join(REPO, "docs", "bench.md")) as f:
    BENCH_COMMANDS = sorted(set(re.findall(r"python -m bench\.run (--[^`|\n#]+)", README + f.read())))


def test_quoted_bench_commands_parse():
    from bench.run import BenchArguments

    assert BENCH_COMMANDS
    for command in BENCH_COMMANDS:
        (args,) = parse_recipe_args((BenchArguments,), shlex.split(command))
        assert os.path.isfile(args.throughput_recipe)


@pytest.mark.parametrize("command", CORPUS_COMMANDS)
def test_quoted_demo_corpus_commands_parse(command):
    from slam_recipes.configs import DemoCorpusArguments

    (args,) = parse_recipe_args((DemoCorpusArguments,), shlex.split(command))
    assert args.output_dir and (args.verify is None or os.path.isdir(os.path.join(REPO, args.verify)))


def test_the_readme_quotes_the_recipes():
    assert len(PRETRAIN_COMMANDS) >= 4 and len(DPO_COMMANDS) >= 3 and len(EVAL_COMMANDS) >= 2
    assert len(CORPUS_COMMANDS) >= 2


@pytest.mark.parametrize("command", EVAL_COMMANDS)
def test_quoted_eval_commands_parse(command):
    (args,) = parse_recipe_args((EvalArguments,), shlex.split(command, comments=True))
    assert args.model_name_or_path and (args.benchmarks or args.prompts)


GENERATE_COMMANDS = sorted(set(re.findall(r"recipes/generate\.py ([^`|\n]+)", README)))


@pytest.mark.parametrize("command", GENERATE_COMMANDS)
def test_quoted_generate_commands_parse(command):
    from slam_recipes.configs import GenerateArguments

    (args,) = parse_recipe_args((GenerateArguments,), shlex.split(command, comments=True))
    assert args.model_name_or_path and args.prompts and args.output_dir


@pytest.mark.parametrize("command", DPO_COMMANDS)
def test_quoted_dpo_commands_parse(command):
    argv = shlex.split(command.strip())
    model_args, data_args, _ = parse_recipe_args(
        (ModelArguments, PreferenceDataArguments, SlamDPOConfig), [*argv, "--use_cpu", "true"]
    )
    assert model_args.model_name_or_path and data_args.dataset_name


@pytest.mark.parametrize("command", PRETRAIN_COMMANDS)
def test_quoted_pretrain_commands_parse(command):
    argv = shlex.split(command.strip())
    model_args, data_args, training_args = parse_recipe_args(
        (PretrainModelArguments, DataArguments, PretrainConfig), [*argv, "--use_cpu", "true"]
    )
    assert model_args.model_name_or_path and data_args.dataset_name


def test_quoted_accelerate_configs_exist():
    for path in re.findall(r"--config_file (\S+)", README):
        assert os.path.isfile(os.path.join(REPO, path)), path


def test_help_answers():
    result = subprocess.run(
        [sys.executable, "recipes/pretrain.py", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0 and "--time_budget" in result.stdout and "--dataset_name" in result.stdout
