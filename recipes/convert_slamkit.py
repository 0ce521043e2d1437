"""Convert a slamkit checkpoint (the Slamming authors' code, github.com/slp-rl/slamkit) into this package's format.

Usage:
    # the released checkpoints, from the Hub
    python recipes/convert_slamkit.py --model_name_or_path slprl/slam --output_dir checkpoints/slam
    python recipes/convert_slamkit.py --model_name_or_path slprl/slam_scaled --output_dir checkpoints/slam_scaled

    # a folder written by slamkit's cli/train.py (e.g. one checkpoint-<step> folder)
    python recipes/convert_slamkit.py --model_name_or_path ../outputs/baseline/checkpoint-17625 --output_dir checkpoints/mine

The result is a plain transformers causal LM (the base LM's own class, same dtype, bit-for-bit the same logits) plus
the unit tokenizer, loadable with `AutoModelForCausalLM.from_pretrained` / `AutoTokenizer.from_pretrained` and usable
as `--model_name_or_path` of recipes/dpo.py, evaluate.py and generate.py.
"""

from slam_recipes.errors import run_entry_point


def main() -> None:
    from slam_recipes.configs import parse_recipe_args
    from slam_recipes.modeling.slamkit import SlamkitConvertArguments, convert_slamkit_checkpoint

    (args,) = parse_recipe_args((SlamkitConvertArguments,))
    summary = convert_slamkit_checkpoint(
        args.model_name_or_path,
        args.output_dir,
        revision=args.revision,
        dtype=args.dtype,
        num_units=args.num_units,
        overwrite=args.overwrite_output_dir,
    )
    out = summary["output_dir"]
    print(
        f"Converted {summary['source']}: a {summary['model_type']} causal LM with {summary['num_parameters']:,} "
        f"parameters over {summary['num_units']} units ({summary['dtype']}), saved with its unit tokenizer to {out}. "
        f"Load it with:\n"
        f'    model = AutoModelForCausalLM.from_pretrained("{out}")\n'
        f'    tokenizer = AutoTokenizer.from_pretrained("{out}")'
    )


if __name__ == "__main__":
    run_entry_point(main)
