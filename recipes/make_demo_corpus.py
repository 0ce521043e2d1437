"""Build the offline spoken demo corpus: stories from a small grammar → espeak-ng speech (8 voice / accent / rate /
pitch combinations, two kept for evaluation) → MFCC units (k-means 500 fitted on the training part, repeats
removed), in the formats the pretraining, DPO and evaluation recipes read. See slam_recipes/demo/corpus.py.

The corpus is committed in data/demo, so nothing needs espeak-ng at run time; rebuilding needs the optional extra:
    pip install -e ".[tts]"        # espeak-ng (GPL-3.0-or-later), bundled by the espeakng-loader wheel

Usage:
    python recipes/make_demo_corpus.py --output_dir data/demo --overwrite_output_dir true   # rebuild (≈ 7 min, 2 AVX2 cores)
    python recipes/make_demo_corpus.py --verify data/demo        # rebuild in a temporary folder and compare
    python recipes/make_demo_corpus.py --verify data/demo --only eval/swuggy --max_rows 64 --kmeans_path data/demo/kmeans.safetensors
"""

from slam_recipes.errors import run_entry_point


def main() -> None:
    import json
    import logging
    import os
    import tempfile

    from slam_recipes.configs import DemoCorpusArguments, parse_recipe_args
    from slam_recipes.demo.corpus import (
        DATASETS,
        MANIFEST_FILE,
        CorpusSizes,
        check_build_options,
        compare_corpus,
        write_corpus,
    )
    from slam_recipes.errors import ConfigError, DataError

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    (args,) = parse_recipe_args((DemoCorpusArguments,))
    check_build_options(args.only, args.max_rows, args.kmeans_path)
    names = args.only or list(DATASETS)
    options = {
        "only": names,
        "max_rows": args.max_rows,
        "kmeans_path": args.kmeans_path,
        "num_workers": args.num_workers,
    }
    if not args.verify:
        manifest = write_corpus(args.output_dir, overwrite=args.overwrite_output_dir, seed=args.seed, **options)
        print(json.dumps(manifest["datasets"], indent=2))
        print(f"Demo corpus written to {args.output_dir} in {manifest['build_seconds']} s")
        return

    manifest_path = os.path.join(args.verify, MANIFEST_FILE)
    if not os.path.isfile(manifest_path):
        raise ConfigError(f"{args.verify}: no {MANIFEST_FILE}; not a demo corpus")
    with open(manifest_path) as f:
        reference = json.load(f)
    with tempfile.TemporaryDirectory() as rebuilt:
        manifest = write_corpus(rebuilt, seed=reference["seed"], sizes=CorpusSizes(**reference["sizes"]), **options)
        problems = compare_corpus(args.verify, rebuilt, names, args.max_rows, kmeans=not args.kmeans_path)
    if problems:
        raise DataError(f"{args.verify} is not reproduced by a rebuild: " + "; ".join(problems))
    print(f"{args.verify}: {len(names)} dataset(s) reproduced exactly by a rebuild with seed {reference['seed']}")


if __name__ == "__main__":
    run_entry_point(main)
