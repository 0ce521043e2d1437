"""The Hugging Face Hub: the push target checked before any training time is spent, and the model card.

Pushing itself is the Trainer's (`push_to_hub: true`, `hub_model_id`, `hub_strategy`, ...); every Hub call here goes
through transformers' shared `hf_api()` client, as the Trainer's do. The card is built from what the run leaves in its
output folder (`run_summary.json`, and `likelihood_eval.json` / `generative_eval.json` once evaluated), so
`recipes/push_to_hub.py` can refresh it after evaluation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from slam_recipes.configs import PAPER_SAMPLING
from slam_recipes.errors import ConfigError, first_line
from slam_recipes.files import atomic_write
from slam_recipes.training.budget import format_seconds
from slam_recipes.training.records import RECIPE_FILE, SUMMARY_FILE, precision_text
from slam_recipes.units import BOS_ID, NUM_SPECIAL, PAD_ID

CARD_TAG = "slam-recipes"  # marks a repo as this package's: a later push may update it
CARD_TAGS = [CARD_TAG, "speech-language-model", "textless", "audio"]
CARD_FILE = "README.md"


def hub_client():
    """transformers' shared `HfApi` (the one the Trainer pushes with)."""
    from transformers.utils.hub import hf_api

    return hf_api()


def _resolve_token(token: str | None) -> str | None:
    from huggingface_hub import get_token

    return token or get_token()


def push_repo_id(args) -> str:
    """The repo a push goes to, as the Trainer names it: `hub_model_id`, else the output folder's name."""
    return args.hub_model_id or Path(args.output_dir).absolute().name


def check_push_target(
    repo_id: str, token: str | None, revision: str | None = None, allow_existing: bool = False
) -> str:
    """Before any training: there is a token, it writes, the Hub answers, and `repo_id` is new, empty, or a repo this
    package pushed (its card carries the `slam-recipes` tag) unless `allow_existing` (a resumed run). Returns the full
    `namespace/name` id."""
    token = _resolve_token(token)
    if not token:
        raise ConfigError(
            f"push_to_hub to {repo_id!r}: no Hugging Face token; log in with `hf auth login`, set HF_TOKEN, or pass "
            "--hub_token"
        )
    api = hub_client()
    try:
        identity = api.whoami(token=token)
    except Exception as err:  # offline, unreachable, or a token the Hub refuses
        raise ConfigError(
            f"push_to_hub to {repo_id!r}: cannot check the token with the Hub: {first_line(err)}"
        ) from err
    role = identity.get("auth", {}).get("accessToken", {}).get("role")
    if role == "read":
        raise ConfigError(f"push_to_hub to {repo_id!r}: the Hugging Face token is read-only; use a write token")
    if "/" not in repo_id:
        repo_id = f"{identity['name']}/{repo_id}"
    try:
        files = (
            api.list_repo_files(repo_id, token=token, revision=revision)
            if api.repo_exists(repo_id, token=token)
            else []
        )
    except Exception as err:
        raise ConfigError(f"push_to_hub to {repo_id!r}: cannot list the repo on the Hub: {first_line(err)}") from err
    other = sorted(f for f in files if f != ".gitattributes")
    if other and not allow_existing and not _is_our_repo(api, repo_id, files, token, revision):
        raise ConfigError(
            f"push_to_hub: {repo_id} already exists on the Hub with other content ({len(other)} files, e.g. "
            f"{other[0]}); choose another hub_model_id or empty that repo"
        )
    return repo_id


def _is_our_repo(api, repo_id: str, files: list[str], token: str, revision: str | None) -> bool:
    if CARD_FILE not in files:
        return False
    from huggingface_hub import ModelCard

    path = api.hf_hub_download(repo_id, CARD_FILE, token=token, revision=revision)
    return CARD_TAG in (ModelCard.load(path).data.tags or [])


def check_trainer_push(args) -> None:
    """`check_push_target` for a training recipe's arguments (nothing to check without `push_to_hub`)."""
    if args.push_to_hub:
        check_push_target(
            push_repo_id(args), args.hub_token, args.hub_revision, allow_existing=bool(args.resume_from_checkpoint)
        )


def push_folder(
    folder: str,
    repo_name: str | None = None,
    *,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str = "slam-recipes: model, tokenizer and card",
):
    """Push a trained model folder (e.g. once evaluated) with a refreshed card, leaving out what the Trainer's push
    leaves out (checkpoints, `_*`). `repo_name` defaults to the folder's name. Returns (repo id, commit info)."""
    repo_id = check_push_target(repo_name or Path(folder).absolute().name, token, revision)
    write_model_card(folder, repo_id)
    api = hub_client()
    api.create_repo(repo_id, token=token, private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        commit_message=commit_message,
        token=token,
        revision=revision,
        ignore_patterns=["_*", "checkpoint-*"],
    )
    return repo_id, commit


# ---------------------------------------------------------------------------------------------------------------------
# The model card
# ---------------------------------------------------------------------------------------------------------------------
def _read_json(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _is_hub_id(name: str | None) -> bool:
    return bool(name) and not os.path.exists(name) and name.count("/") == 1


def _hms(seconds: float | None) -> str:
    return "—" if seconds is None else format_seconds(seconds)


def _sessions(sessions: int | None) -> str:
    return f" over {sessions} sessions (resumed)" if sessions and sessions > 1 else ""


def _number(value, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def _unit_tokenizer_lines(description: dict | None) -> list[str]:
    if not description:
        return [
            "Not recorded: set `unit_tokenizer` in the recipe, or train on units made by `recipes/tokenize_audio.py`."
        ]
    names = {
        "feature_model": "feature model",
        "layer": "layer",
        "backend": "features",
        "mfcc_frame_rate": "frames per second",
        "kmeans": "k-means",
        "kmeans_path": "k-means",
        "num_units": "units",
        "dedup": "consecutive repeats removed",
        "source": "recorded in",
    }
    return [f"- {names.get(key, key)}: `{value}`" for key, value in description.items() if value is not None]


def _evaluation_lines(output_dir: str, summary: dict) -> list[str]:
    lines: list[str] = []
    likelihood = _read_json(os.path.join(output_dir, "likelihood_eval.json"))
    if likelihood and likelihood.get("results"):
        lines += ["Pairwise likelihood benchmarks (`recipes/evaluate.py`, × 100, chance 50):", ""]
        lines += ["| benchmark | score | pairs |", "|---|---|---|"]
        for name, result in likelihood["results"].items():
            lines.append(f"| {name} | {result['score']:.2f} | {result.get('num_pairs', '—')} |")
        lines.append("")
    generative = _read_json(os.path.join(output_dir, "generative_eval.json"))
    if generative:
        scores = {k: v for k, v in generative.get("results", generative).items() if isinstance(v, (int, float))}
        if scores:
            lines += [
                "Generative metrics (`recipes/evaluate.py` with prompts):",
                "",
                "| metric | value |",
                "|---|---|",
            ]
            lines += [f"| {k} | {_number(v)} |" for k, v in scores.items()]
            lines.append("")
    final_eval = summary.get("training", {}).get("final_eval") or {}
    if final_eval:
        lines += ["At the end of training (evaluation split and in-training benchmarks):", ""]
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {_number(v)} |" for k, v in final_eval.items()]
        lines.append("")
    return lines or [
        "No evaluation yet: run `recipes/evaluate.py`, then `recipes/push_to_hub.py` to update this card."
    ]


def model_card(output_dir: str, repo_id: str | None = None, summary: dict | None = None) -> str:
    """The README.md of a trained model folder, from `summary` or its `run_summary.json` (see
    `records.write_run_report`), with the evaluation results found in the folder."""
    from huggingface_hub import ModelCardData

    summary = summary or _read_json(os.path.join(output_dir, SUMMARY_FILE))
    if summary is None:
        raise ConfigError(f"{output_dir}: no {SUMMARY_FILE}; is this the output folder of a finished training run?")
    model, data, training = summary.get("model", {}), summary.get("data", {}), summary.get("training", {})
    budget, hardware = summary.get("budget") or {}, summary.get("hardware", {})
    base_lm = summary.get("base_lm")
    name = (repo_id or os.path.basename(os.path.abspath(output_dir))).split("/")[-1]
    interleaved = bool(summary.get("recipe", {}).get("interleaved"))
    metadata = ModelCardData(
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=[t for t in CARD_TAGS if not (interleaved and t == "textless")]
        + (["interleaved"] if interleaved else []),
        base_model=base_lm if _is_hub_id(base_lm) else None,
        datasets=[d for d in data.get("datasets", []) if _is_hub_id(d)] or None,
    )
    num_units = model.get("num_units", 500)
    parent = summary.get("parent")
    stage = summary.get("stage", "pretraining")
    lineage = f"{stage} of {parent['model']} ({parent['stage']})" if parent else stage
    if interleaved:
        extended = "its vocabulary extended by the units and the `<speech>` / `<text>` markers"
        init = (
            f"the text LM's weights, {extended}"
            if model.get("twist_init")
            else f"random, from the text LM's architecture, {extended}"
        )
        size = (_read_json(os.path.join(output_dir, "config.json")) or {}).get("vocab_size")
        vocabulary = (
            f"{_number(size) + ': ' if size else ''}the base LM's text tokens, {num_units} units `<Un0>` … "
            f"`<Un{num_units - 1}>` and the markers `<speech>`, `<text>`"
        )
        what = (
            "An interleaved speech–text language model (text, speech units, and utterances whose words switch "
            "between the two, each switch marked) trained with slam-recipes the way SIMS does (Maimon et al., 2025, "
            '"Scaling Analysis of Interleaved Speech-Text Language Models").'
        )
        prompt_lines = [
            'text = (tokenizer.bos_token or "") + "<speech><Un17><Un5>"  # units of your audio, repeats removed',
            'prompt = tokenizer(text, return_tensors="pt", add_special_tokens=False)',
        ]
    else:
        init = (
            "TWIST: the text LM's weights, its vocabulary replaced by the units"
            if model.get("twist_init")
            else "random, from the text LM's architecture"
        )
        vocabulary = f"{num_units + NUM_SPECIAL}: PAD = {PAD_ID}, `<S>` = {BOS_ID} (BOS and EOS), unit k = k + 2"
        what = (
            "A speech language model (a causal LM over discrete speech units) trained with slam-recipes, the way the "
            "*Slamming* paper does (Maimon et al., 2025)."
        )
        prompt_lines = [
            'prompt = tokenizer("<S><Un17><Un5>", return_tensors="pt")  # units of your audio, repeats removed'
        ]
    recipe_text = yaml.safe_dump(summary.get("recipe", {}), sort_keys=False, allow_unicode=True)
    ratios = data.get("ratios")
    mixture = (
        ", ".join(f"{d} ({r:g})" for d, r in zip(data.get("datasets", []), ratios, strict=False))
        if ratios
        else ", ".join(data.get("datasets", [])) or "—"
    )
    budget_line = (
        f"{_hms(budget.get('used_seconds'))} of {_hms(budget.get('budget_seconds'))}"
        + (" (stopped by the budget)" if budget.get("stopped_by_budget") else "")
        if budget
        else "none"
    )
    lines = [
        "---",
        metadata.to_yaml(),
        "---",
        "",
        f"# {name}",
        "",
        f"{what} This checkpoint: {lineage}"
        + (", a checkpoint of a run still in progress." if summary.get("in_progress") else "."),
        "",
        "## Model",
        "",
        "| | |",
        "|---|---|",
        f"| base LM | `{base_lm}` |",
        f"| initialisation | {init if parent is None else 'from ' + parent['model']} |",
        f"| parameters | {_number(model.get('parameters'))} |",
        f"| vocabulary | {vocabulary} |",
        f"| context | {_number(data.get('context_length'))} |",
        "",
        "## Unit tokenizer",
        "",
        *_unit_tokenizer_lines(summary.get("unit_tokenizer")),
        "",
        "## Training data",
        "",
        f"- datasets (mixture): {mixture}",
        *([f"- packing: `{data['packing']}`"] if data.get("packing") else []),
        "",
        "## Training",
        "",
        "| | |",
        "|---|---|",
        f"| steps | {_number(training.get('steps'))} |",
        f"| tokens seen | {_number(training.get('tokens_seen'))} |",
        f"| wall time | {_hms(training.get('wall_time_seconds'))}{_sessions(training.get('sessions'))} |",
        f"| time budget used | {budget_line} |",
        f"| hardware | {hardware.get('num_processes', 1)} × {hardware.get('device', '—')} |",
        f"| precision | {precision_text(hardware)} |",
        f"| tokens/s | {_number(training.get('tokens_per_second'))} |",
        f"| MFU | {_number(training.get('mfu'))} |",
        f"| final train loss | {_number((training.get('final_losses') or {}).get('train'))} |",
        f"| final eval loss | {_number((training.get('final_losses') or {}).get('eval'))} |",
        "",
        "## Evaluation",
        "",
        *_evaluation_lines(output_dir, summary),
        "## Use",
        "",
        "A plain transformers model and tokenizer: no code from slam-recipes is needed.",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'model = AutoModelForCausalLM.from_pretrained("{repo_id or name}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{repo_id or name}")',
        *prompt_lines,
        f"units = model.generate(**prompt, max_new_tokens={PAPER_SAMPLING['max_new_tokens']}, do_sample=True, "
        f"temperature={PAPER_SAMPLING['temperature']}, top_k={PAPER_SAMPLING['top_k']})",
        "print(tokenizer.decode(units[0]))",
        "```",
        "",
        "## Recipe",
        "",
        f"The full recipe of this run (`{RECIPE_FILE}` in this repo; rerun it with "
        f"`recipes/{'dpo' if stage == 'DPO' else 'pretrain'}.py --config {RECIPE_FILE}`):",
        "",
        "```yaml",
        recipe_text.rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def write_model_card(output_dir: str, repo_id: str | None = None, summary: dict | None = None) -> str:
    """Write `<output_dir>/README.md`; returns its path."""
    card = model_card(output_dir, repo_id, summary)
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, CARD_FILE)
    with atomic_write(path, encoding="utf-8") as f:
        f.write(card)
    return path
