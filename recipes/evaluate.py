"""Evaluate a speech LM on pairwise likelihood benchmarks: sWUGGY, sBLIMP, Spoken/Topic StoryCloze, SALMon.

Usage:
    # the paper's Table 2 metrics (bf16 on a GPU), results written next to the model
    python recipes/evaluate.py --config recipes/slam/eval.yaml --model_name_or_path outputs/slam-dpo

    # CPU, seconds, on the demo benchmarks after `make pretrain`
    python recipes/evaluate.py --config recipes/demo/eval.yaml

    # one benchmark, summed instead of mean log-likelihood
    python recipes/evaluate.py --model_name_or_path slprl/slam --benchmarks tsc=data/eval/tsc --mean_nll false

    # the generative metrics (Table 3): GenPPL and auto-BLEU of continuations of 3 s sStoryCloze prompts
    python recipes/evaluate.py --config recipes/slam/eval_generative.yaml --model_name_or_path outputs/slam-dpo

Benchmarks are pair datasets of units; `recipes/convert_benchmark.py` makes them from the published layouts.
Results: a markdown table on stdout, and likelihood_eval.json / likelihood_eval.md in `output_dir` (default: the
model folder; outputs/eval/<name> for a Hub id). The generative metrics write generative_eval.json / .md there, and
the continuations (units, audio, transcripts) with an index.html for listening in <output_dir>/generative_eval/.
"""

from slam_recipes.errors import run_entry_point


def main() -> None:
    import dataclasses
    import os
    import time

    from slam_recipes.configs import EvalArguments, parse_recipe_args

    (args,) = parse_recipe_args((EvalArguments,))  # before the heavy imports: --help and bad input answer at once

    import torch
    import transformers

    from slam_recipes.audio.vocoder import load_vocoder
    from slam_recipes.evaluation.generation import check_vocoder
    from slam_recipes.evaluation.generative import evaluate_generation, load_asr, load_text_lm
    from slam_recipes.evaluation.likelihood import evaluate_benchmark, load_benchmarks, results_markdown, write_results
    from slam_recipes.modeling.unit_lm import load_speech_lm

    output_dir = args.output_dir or (
        args.model_name_or_path
        if os.path.isdir(args.model_name_or_path)
        else os.path.join("outputs", "eval", args.model_name_or_path.replace("/", "__"))
    )

    # Data: every benchmark loaded and checked against the vocabulary before the model runs
    benchmarks = load_benchmarks(args.benchmarks, args.num_units, max_pairs=args.max_pairs) if args.benchmarks else {}
    if args.prompts:  # the generative metrics' models, loaded first so a wrong name costs seconds
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        vocoder = load_vocoder(args.vocoder_path, args.vocoder_config, device=device)
        check_vocoder(vocoder, args.num_units, args.vocoder_path)
        scorers = {
            "asr": load_asr(args.asr_model, device=device, bf16_native_only=args.bf16_native_only),
            "text_lm": load_text_lm(args.ppl_model, device=device, bf16_native_only=args.bf16_native_only),
        }

    # Model
    model = load_speech_lm(args.model_name_or_path, args.num_units, **args.load_kwargs())

    # Evaluation
    results = {}
    for name, benchmark in benchmarks.items():
        results[name] = evaluate_benchmark(
            model, benchmark, mean_nll=args.mean_nll, max_tokens_per_batch=args.benchmark_tokens_per_batch
        )
        r = results[name]
        print(
            f"{name}: {r['score']:.2f} over {r['num_pairs']} pairs ({r['likelihood']} log-likelihood, "
            f"{r['pairs_per_second']} pairs/s)",
            flush=True,
        )
    metadata = {
        "model": args.model_name_or_path,
        "revision": args.model_revision,
        "dtype": str(model.dtype).removeprefix("torch."),
        "device": str(model.device),
        "mean_nll": args.mean_nll,
        "scoring": "log-likelihood of <S> units <S> over every token after the first <S>, padding excluded; "
        + ("mean per token" if args.mean_nll else "summed"),
        "pair_score": "1 if positive > negative, 0.5 on a tie, else 0; reported x100",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "config": dataclasses.asdict(args),
    }
    if results:
        json_path, _ = write_results(output_dir, results, metadata)
        print()
        print(results_markdown(results), end="")
        print(f"\nResults written to {json_path}")
    if args.prompts:
        evaluate_generation(model, vocoder, scorers["asr"], scorers["text_lm"], args, output_dir, metadata)


if __name__ == "__main__":
    run_entry_point(main)
