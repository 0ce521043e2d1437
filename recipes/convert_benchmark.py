"""Turn a published evaluation benchmark into a pair dataset of units for `recipes/evaluate.py`.

Usage:
    # ZeroSpeech 2021 sWUGGY / sBLIMP (a folder with gold.csv and <filename>.wav)
    python recipes/convert_benchmark.py --layout zr2021 --input_dir zr2021/lexical/dev --units units/swuggy_dev.jsonl --output_dir data/eval/swuggy_dev

    # Spoken / Topic StoryCloze (<idx>_correct.wav and <idx>_incorrect.wav; see --positive_suffix)
    python recipes/convert_benchmark.py --layout storycloze --input_dir spoken_story_cloze/tSC --units units/tsc.jsonl --output_dir data/eval/tsc

    # SALMon (the root with its eight part folders, or one part)
    python recipes/convert_benchmark.py --layout salmon --input_dir salmon --units units/salmon.jsonl --output_dir data/eval/salmon

`--units` holds the units of the benchmark's audio files, one row per file: a file-name column (`file`,
`file_name`, `path`, ...) and `units` (integer lists) or `audio_repr` (`<Un3><Un49>` strings), as the audio → units
tokeniser writes them. Files are matched by path relative to `--input_dir` (or by bare name when unique).
"""

from slam_recipes.errors import run_entry_point


def main() -> None:
    from slam_recipes.configs import ConvertArguments, parse_recipe_args

    (args,) = parse_recipe_args((ConvertArguments,))  # before the heavy imports: --help answers at once

    from slam_recipes.evaluation.layouts import convert_benchmark

    dataset = convert_benchmark(
        args.layout,
        args.input_dir,
        args.units,
        args.output_dir,
        num_units=args.num_units,
        units_column=args.units_column,
        file_column=args.file_column,
        dedup=args.dedup,
        overwrite=args.overwrite_output_dir,
        **args.layout_options(),
    )
    print(f"{len(dataset)} pairs from {args.input_dir} saved to {args.output_dir} (columns: {dataset.column_names})")


if __name__ == "__main__":
    run_entry_point(main)
