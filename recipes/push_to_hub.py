"""Push a trained speech LM folder to the Hugging Face Hub with a refreshed model card: after `recipes/evaluate.py`
has written its results next to the model, the card gets the evaluation table.

Usage:
    python recipes/push_to_hub.py --model_dir outputs/slam-dpo --hub_model_id <you>/slam-dpo

Training recipes push by themselves with `--push_to_hub true --hub_model_id <you>/<name>` (the Trainer's mechanism,
with the same card). Pushed: model, unit tokenizer, README.md (the card), run_summary.json, recipe.yaml,
training.png and the evaluation files; checkpoints are not.
"""

from slam_recipes.errors import run_entry_point


def main() -> None:
    from slam_recipes.configs import PushArguments, parse_recipe_args

    (args,) = parse_recipe_args((PushArguments,))  # before the heavy imports: --help answers at once

    from slam_recipes.training.hub import push_folder

    repo_id, commit = push_folder(
        args.model_dir,
        args.hub_model_id,
        token=args.hub_token,
        private=args.hub_private_repo,
        revision=args.hub_revision,
        commit_message=args.commit_message,
    )
    print(f"Pushed {args.model_dir} to {repo_id}: {getattr(commit, 'commit_url', commit)}")


if __name__ == "__main__":
    run_entry_point(main)
