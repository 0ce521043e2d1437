"""Continue spoken prompts with a speech LM: units out, and audio with a unit vocoder.

Usage:
    # the paper's sampling (temperature 0.8, top-k 25, 150 units, repetition penalty 1.1) on 3 s unit prompts
    python recipes/generate.py --model_name_or_path outputs/slam-dpo --prompts data/eval/ssc --output_dir outputs/generate

    # audio prompts (tokenised with mHuBERT-25Hz L11 + k-means 500) and the paper's vocoder
    python recipes/generate.py --model_name_or_path slprl/slam --prompts prompts/ --kmeans_path km500.safetensors --vocoder_path https://dl.fbaipublicfiles.com/textless_nlp/twist/speech_tokenizer/hifigan_lj_mhubert_base_25hz.pt --output_dir outputs/generate

    # CPU, seconds, after `make pretrain`: the demo model continues the demo tSC story starts
    python recipes/generate.py --model_name_or_path outputs/demo-pretrain --prompts data/demo/eval/tsc.parquet --num_prompts 8 --output_dir outputs/demo-generate

    # an interleaved (SIMS) model, across modalities: the demo tSC story starts spoken, continued in text (S2T), and
    # written, continued in units (T2S)
    python recipes/generate.py --model_name_or_path outputs/demo-sims/pretrain --prompts data/demo/eval/tsc_cross.parquet --prompts_column prompt --prompt_seconds null --cross_modal_direction S2T --num_prompts 8 --output_dir outputs/demo-sims-generate
    python recipes/generate.py --model_name_or_path outputs/demo-sims/pretrain --prompts data/demo/eval/tsc_cross.parquet --prompts_column prompt_text --cross_modal_direction T2S --num_prompts 8 --output_dir outputs/demo-sims-generate-t2s

Output: <output_dir>/generations.jsonl (id, prompt and continuation units, stopped_at_eos, and source_id, the row's
own id when the file-safe id differs from it; load it with
`datasets.load_dataset("json", ...)`), and with a vocoder audio/<id>.wav (prompt + continuation),
audio/<id>_prompt.wav and index.html for listening. Across modalities each record also names its direction, and a
text prompt or continuation is a string; only unit continuations are vocoded.
"""

from slam_recipes.errors import run_entry_point


def main() -> None:
    import json
    import logging
    import os
    import time

    from slam_recipes.configs import GenerateArguments, parse_recipe_args

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    (args,) = parse_recipe_args((GenerateArguments,))  # before the heavy imports: --help and bad input answer at once

    from slam_recipes.audio.vocoder import load_vocoder
    from slam_recipes.evaluation.cross_modal import check_prompt_modality, continue_across_modalities
    from slam_recipes.evaluation.generation import (
        GENERATIONS_FILE,
        check_generations_folder,
        check_vocoder,
        continue_prompts,
        remove_stale_outputs,
        write_listening_page,
    )
    from slam_recipes.evaluation.prompts import prompts_from_args
    from slam_recipes.files import atomic_write
    from slam_recipes.modeling.interleaved import load_inference_lm, load_interleaved_tokenizer, require_interleaved
    from slam_recipes.modeling.unit_lm import check_unit_lm
    from slam_recipes.precision import default_device

    interleaved = load_interleaved_tokenizer(args.model_name_or_path, args.num_units, args.model_revision)
    if args.cross_modal_direction:
        require_interleaved(interleaved, args.model_name_or_path, args.num_units, "cross_modal_direction")
    direction = args.cross_modal_direction or "S2S"

    check_generations_folder(args.output_dir, args.overwrite_output_dir)

    # The vocoder first, so a mismatch with the speech LM costs no time
    device = default_device(args.device)
    vocoder = load_vocoder(args.vocoder_path, args.vocoder_config, device=device) if args.vocoder_path else None
    if vocoder is not None:
        check_vocoder(vocoder, args.num_units, args.vocoder_path)
    if interleaved is None:  # a num_units the model does not have is reported against it, not against the prompts
        check_unit_lm(args.model_name_or_path, args.num_units, args.model_revision)

    # Prompts, checked against the direction before the model is loaded
    prompts, how = prompts_from_args(args, device)
    check_prompt_modality(direction if interleaved is not None else None, how)

    # Model
    model = load_inference_lm(args.model_name_or_path, args.num_units, interleaved, **args.load_kwargs())
    print(f"{len(prompts)} prompts from {args.prompts} ({how['kind']}, cut: {how['cut']})", flush=True)

    # Generation (+ audio)
    start = time.perf_counter()
    if interleaved is None:
        records, _ = continue_prompts(model, prompts, args, args.output_dir, vocoder)
    else:
        records = continue_across_modalities(model, *interleaved, prompts, direction, args, args.output_dir, vocoder)
    seconds = time.perf_counter() - start
    new_units = sum(len(r["continuation"]) for r in records)
    settings = {"model": args.model_name_or_path, "prompts": how, **args.sampling(), "seed": args.seed}
    if interleaved is not None:
        settings["cross_modal_direction"] = direction
    with atomic_write(os.path.join(args.output_dir, "generation_config.json")) as f:
        json.dump(settings, f, indent=2)
    audio = any("audio" in r or "prompt_audio" in r for r in records)  # S→T: only the prompt is spoken
    if audio:
        write_listening_page(os.path.join(args.output_dir, "index.html"), records, f"{args.model_name_or_path}")
    remove_stale_outputs(args.output_dir, records, audio)  # an earlier run's audio and page, when overwritten
    unit = "units" if direction.endswith("S") else "characters"
    print(
        f"{len(records)} continuations, {new_units} new {unit} ({new_units / max(seconds, 1e-9):.1f} {unit}/s), "
        f"{sum(r['stopped_at_eos'] for r in records)} stopped at EOS; written to "
        f"{os.path.join(args.output_dir, GENERATIONS_FILE)}" + (" and audio/" if audio else "")
    )


if __name__ == "__main__":
    run_entry_point(main)
