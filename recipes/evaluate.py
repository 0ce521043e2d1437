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

    # an interleaved speech-text model (SIMS): the speech-only benchmarks and cross-modal tSC (S→S, S→T, T→S, T→T),
    # after `python recipes/pretrain.py --config recipes/demo-sims/pretrain.yaml`
    python recipes/evaluate.py --config recipes/demo-sims/eval.yaml

Benchmarks are pair datasets of units; `recipes/convert_benchmark.py` makes them from the published layouts.
An interleaved model (its tokenizer has the units and <speech> / <text>: recipes/pretrain.py with `interleaved`) is
recognised by its tokenizer: its speech-only samples are framed as its speech-only training rows, and
`cross_modal_benchmarks` score each direction (slam_recipes/evaluation/cross_modal.py). Results: a markdown table on
stdout, and likelihood_eval.json / likelihood_eval.md in `output_dir` (default: the model folder; outputs/eval/<name>
for a Hub id). The generative metrics write generative_eval.json / .md there, and
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
    from slam_recipes.configs import cross_modal_result_name, parse_benchmark_specs
    from slam_recipes.errors import ConfigError
    from slam_recipes.evaluation.cross_modal import (
        evaluate_cross_modal,
        load_cross_modal_benchmark,
        speech_benchmarks_for_interleaved,
    )
    from slam_recipes.evaluation.generation import check_vocoder
    from slam_recipes.evaluation.generative import evaluate_generation, load_asr, load_text_lm
    from slam_recipes.evaluation.likelihood import evaluate_benchmark, load_benchmarks, results_markdown, write_results
    from slam_recipes.modeling.interleaved import load_inference_lm, load_model_vocabulary, require_interleaved
    from slam_recipes.precision import default_device

    output_dir = args.output_dir or (
        args.model_name_or_path
        if os.path.isdir(args.model_name_or_path)
        else os.path.join("outputs", "eval", args.model_name_or_path.replace("/", "__"))
    )

    # The model's vocabulary (its config and tokenizer only): a num_units it does not have is reported against it
    interleaved = load_model_vocabulary(args.model_name_or_path, args.num_units, args.model_revision)

    # Data: every benchmark loaded and checked against the vocabulary before the model runs
    benchmarks = load_benchmarks(args.benchmarks, args.num_units, max_pairs=args.max_pairs) if args.benchmarks else {}
    cross_modal = {
        name: load_cross_modal_benchmark(name, path, args.num_units, max_pairs=args.max_pairs)
        for name, path in parse_benchmark_specs(args.cross_modal_benchmarks, "cross_modal_benchmarks").items()
    }
    if cross_modal:
        require_interleaved(interleaved, args.model_name_or_path, args.num_units, "cross_modal_benchmarks")
    if args.prompts and interleaved is not None:
        raise ConfigError("the generative metrics (prompts) score speech-only models; this model is interleaved")
    if args.prompts:  # the generative metrics' models, loaded first so a wrong name costs seconds
        device = default_device(args.device)
        vocoder = load_vocoder(args.vocoder_path, args.vocoder_config, device=device)
        check_vocoder(vocoder, args.num_units, args.vocoder_path)
        scorers = {
            "asr": load_asr(args.asr_model, device=device, bf16_native_only=args.bf16_native_only),
            "text_lm": load_text_lm(args.ppl_model, device=device, bf16_native_only=args.bf16_native_only),
        }

    # Model
    model = load_inference_lm(args.model_name_or_path, args.num_units, interleaved, **args.load_kwargs())
    if interleaved is not None:
        tokenizer, vocab = interleaved
        benchmarks = speech_benchmarks_for_interleaved(benchmarks, tokenizer, vocab)

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
    for name, benchmark in cross_modal.items():
        for direction, r in evaluate_cross_modal(
            model, tokenizer, vocab, benchmark, args.cross_modal_directions, mean_nll=args.mean_nll,
            max_tokens_per_batch=args.benchmark_tokens_per_batch,
        ).items():  # fmt: skip
            results[cross_modal_result_name(name, direction)] = r
            print(f"{name} {r['direction']}: {r['score']:.2f} over {r['num_pairs']} pairs", flush=True)
    metadata = {
        "model": args.model_name_or_path,
        "interleaved": interleaved is not None,
        "revision": args.model_revision,
        "dtype": str(model.dtype).removeprefix("torch."),
        "device": str(model.device),
        "mean_nll": args.mean_nll,
        "scoring": (
            "speech-only: log-likelihood of <S> units <S> over every token after the first <S>"
            if interleaved is None
            else "speech-only: log-likelihood of [BOS] units [EOS] (the text tokenizer's) over every token after the "
            "first; cross-modal: of the ending's tokens only, given BOS, markers and prompt"
        )
        + "; padding excluded; "
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
